"""Flags and output of `python -m models.train`: the parser, flags → `TrainConfig`, human and `--json` reports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from models.train.config import DEFAULT_LR, DEFAULT_MODEL, KEEP_CHOICES, MIN_SELECT_VAL_IMAGES, TrainConfig

if TYPE_CHECKING:
    from models.train.run import TrainResult
    from models.versions import VersionInfo

DESCRIPTION = """\
Tune Loupe's text tower on your own captions, LiT style (Zhai et al., CVPR 2022): the image tower stays locked,
so every photo vector already in your index stays valid and search improves without re-embedding anything.

The captions file has one (image, caption) pair per row, several rows per image allowed:
  CSV/TSV   image,caption          (header optional; paths relative to --images-root or absolute)
  JSONL     {"image": "beach/1.jpg", "caption": "kids building a sandcastle"}
Bad rows (missing file, empty caption, unreadable image, bad encoding or JSON, wrong column count) are reported
with their line numbers and skipped; a file with no usable row exits with status 2.

Image vectors are never recomputed during training: they come from --image-vectors FILE.npz (keys instead of
files allowed, e.g. "class:n01440764"), from the Loupe index when it holds this image tower's vectors, or are
embedded once with the locked tower and cached under the data home.

The result is a new text tower version in <home>/text_towers/<name>; it becomes what search uses once promoted."""

EPILOG = """\
examples:
  python -m models.train captions.csv --images-root ~/Pictures --epochs 5
  python -m models.train --from-library ~/Pictures/Family
  python -m models.train classes.jsonl --image-vectors class_directions.npz --train head --val-fraction 0
  python -m models.train captions.tsv --train lora --lora-rank 8 --name family-v2 --max-epochs-this-run 1
  python -m models.train --resume family-v2
  python -m models.train --list --json
  python -m models.train --promote family-v2
  python -m models.train --rollback --model offline-lite"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_flags(parser.add_argument_group("data"))
    _model_flags(parser.add_argument_group("model and output"))
    _training_flags(parser.add_argument_group("training"))
    _validation_flags(parser.add_argument_group("validation, early stopping, resuming"))
    versions = parser.add_argument_group("versions (no training)").add_mutually_exclusive_group()
    versions.add_argument("--list", action="store_true", help="list tuned text towers (the active ones marked *)")
    versions.add_argument("--promote", metavar="NAME", help="make NAME the active text tower for its image tower")
    parser.add_argument("--force", action="store_true",
                        help="with --promote: promote even a version trained without validation, on too few pairs, "
                             "or that validated worse than its base")
    versions.add_argument("--rollback", action="store_true",
                          help="re-activate the previously promoted version (with --model BASE when several image "
                               "towers have promoted versions)")
    general = parser.add_argument_group("general")
    general.add_argument("--home", metavar="DIR", help="data home (default: $LOUPE_HOME or ~/.loupe)")
    general.add_argument("--json", action="store_true", help="print the result as JSON on stdout (for scripts)")
    general.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    general.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _data_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument("captions", nargs="?", type=Path, help="captions file: .csv, .tsv or .jsonl (else sniffed)")
    group.add_argument("--images-root", type=Path, metavar="DIR", help="folder relative image paths start from "
                       "(default: the captions file's folder)")
    group.add_argument("--from-library", nargs="?", const="", metavar="FOLDER",
                       help="captions people wrote in the indexed library (XMP/IPTC descriptions and keywords, "
                            "sidecar keywords, manual tags; never Loupe's own tags), all of it or FOLDER; a seeded "
                            "--val-fraction of the photos is held out")
    group.add_argument("--image-vectors", type=Path, metavar="FILE.npz",
                       help="precomputed unit vectors: np.savez(FILE, keys=[...], vectors=(N, D)); rows name keys")


def _model_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--model", metavar="BASE",
                       help=f"base: a preset, 'timm:<arch>+hf:<dir>', or a tuned text tower dir to keep "
                            f"tuning (default: {DEFAULT_MODEL})")
    group.add_argument("--name", help="version name (default: <base>-<YYYYmmdd-HHMMSS>)")
    group.add_argument("--device", metavar="DEV",
                       help="cpu, cuda, cuda:1 … (default: CUDA when available; mixed precision on GPU)")


def _training_flags(group: argparse._ArgumentGroup) -> None:
    lrs = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
    group.add_argument("--train", default="head", metavar="WHAT",
                       help="whole | last:N (last N encoder layers + head) | lora (adapters on attention q/v + head) "
                            "| head (default: head)")
    group.add_argument("--lora-rank", type=int, default=8, metavar="R", help="LoRA rank r (default: 8)")
    group.add_argument("--lora-alpha", type=float, default=16.0, metavar="A",
                       help="LoRA alpha; updates scale by alpha/r (16)")
    group.add_argument("--lr", type=float, metavar="LR", help=f"peak learning rate (default by --train: {lrs})")
    group.add_argument("--weight-decay", type=float, default=0.01, metavar="WD",
                       help="AdamW weight decay on matrices (0.01)")
    group.add_argument("--epochs", type=int, default=10, metavar="N", help="epochs (default: 10)")
    group.add_argument("--batch-size", type=int, default=64, metavar="B",
                       help="pairs per contrastive batch; at most one caption per image in a batch (default: 64)")
    group.add_argument("--accum-steps", type=int, default=1, metavar="K",
                       help="micro-batches per optimizer step (default: 1)")
    group.add_argument("--warmup-fraction", type=float, default=0.05, metavar="F",
                       help="share of steps in linear warmup before cosine decay (default: 0.05)")
    group.add_argument("--seed", type=int, default=0, metavar="S",
                       help="seeds init, split, batch order and dropout (default: 0)")
    group.add_argument("--no-text-cache", dest="cache_text", action="store_false",
                       help="head / last:N: rerun the frozen text layers every step instead of once per caption")


def _validation_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--val", type=Path, metavar="FILE", help="held-out captions file (instead of a split)")
    group.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                       help="share of images held out (split by image, seeded) when no --val (default: 0.1)")
    group.add_argument("--patience", type=int, default=3, metavar="N",
                       help="stop after this many epochs without a better val score; 0 never stops (default: 3)")
    group.add_argument("--keep", choices=KEEP_CHOICES, default="auto",
                       help="which epoch is saved: best (by validation T→I recall), last, or auto: best when the "
                            f"validation split has at least {MIN_SELECT_VAL_IMAGES} images, else last (default)")
    group.add_argument("--resume", nargs="?", const="", metavar="NAME",
                       help="continue an unfinished run from its last epoch checkpoint (default: the latest run)")
    group.add_argument("--max-epochs-this-run", type=int, metavar="N",
                       help="stop after N epochs in this process, resumably (for time-boxed jobs)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        captions=args.captions.expanduser().resolve(),
        images_root=args.images_root.expanduser().resolve() if args.images_root else None,
        image_vectors=args.image_vectors.expanduser().resolve() if args.image_vectors else None,
        val=args.val.expanduser().resolve() if args.val else None,
        val_fraction=args.val_fraction, model=args.model or DEFAULT_MODEL, name=args.name, train=args.train,
        lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, lr=args.lr, weight_decay=args.weight_decay,
        epochs=args.epochs, batch_size=args.batch_size, accum_steps=args.accum_steps,
        warmup_fraction=args.warmup_fraction, patience=args.patience, keep=args.keep, seed=args.seed,
        device=args.device, max_epochs_this_run=args.max_epochs_this_run, cache_text=args.cache_text,
    )


def print_result(result: TrainResult, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2, default=str))
        return
    data = result.data[0]
    print(f"data: {data['rows_used']} rows used ({data['images_used']} images), {data['skipped']} skipped; "
          f"train {result.train_size['pairs']} pairs / {result.train_size['images']} images" +
          (f", val {result.val_size['pairs']} / {result.val_size['images']}" if result.val_size else ", no val"))
    if result.metrics_before and result.metrics_after:
        # the kept epoch is the best by this split only when --keep chose by it (auto: a split of >= 50 photos)
        kept = "last epoch kept" if result.best_epoch == result.epochs_completed else \
            f"epoch {result.best_epoch} kept: best on this"
        for way, label in (("t2i", "T→I"), ("i2t", "I→T")):
            before = "/".join(f"{100 * result.metrics_before[f'{way}_r{k}']:.1f}" for k in (1, 5, 10))
            after = "/".join(f"{100 * result.metrics_after[f'{way}_r{k}']:.1f}" for k in (1, 5, 10))
            chosen = f"   ({kept})" if way == "t2i" else ""
            print(f"val {label} R@1/5/10: {before} → {after}{chosen}")
    check = result.locked_check
    print(f"image tower locked and unchanged: {check['identical']} ({check['image_tower_digest_after']})")
    if result.status == "paused":
        print(f"paused after epoch {result.epochs_completed}; continue with: python -m models.train --resume "
              f"{result.name}")
    else:
        print(f"saved {result.output} (epoch {result.best_epoch} of {result.epochs_completed} kept)")
        print(f"make search use it: python -m models.train --promote {result.name}")


def print_versions(versions: list[VersionInfo], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([v.to_json() for v in versions], indent=2))
        return
    if not versions:
        print("no tuned text towers yet (train one: python -m models.train CAPTIONS)")
        return
    print(f"  {'name':<36} {'base':<14} {'image tower':<30} {'pairs':>6} {'val T→I R@1 before → after':>27}  created")
    for v in versions:
        if v.metrics:
            before = f"{100 * v.metrics_before['t2i_r1']:.1f}" if v.metrics_before else "?"
            r1 = f"{before} → {100 * v.metrics['t2i_r1']:.1f}"
        else:
            r1 = "no validation"
        pairs = str(v.train_pairs) if v.train_pairs is not None else "?"
        flag = "  (!) " + "; ".join(v.promote_problems()) if v.promote_problems() else ""
        print(f"{'*' if v.active else ' '} {v.name:<36} {v.base:<14} {v.image_tower_id:<30} {pairs:>6} {r1:>27}  "
              f"{v.created or ''}{flag}")
