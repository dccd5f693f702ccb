"""Does tuning on a user's own captions help search on photos it never saw? Held-out T→I recall per mode and size.

    python bench/tuning.py [--photoset DIR] [--modes head last:2 lora whole] [--sizes 100 300] [--epochs 10]

The in-house set of `bench.data.photoset` stands in for a user's captions: `inhouse_train.tsv` (dev photos) is what
tuning sees — `--sizes` takes the first N rows of a seeded shuffle — and `heldout.tsv` (photos and captions nothing
here was fitted on) is where the gain is measured. Every run goes through `models.train.train` with the CLI's
defaults for its mode (its own 10% validation split picks the best epoch by T→I recall), on image vectors embedded
once with the locked tower and never again: the bench asserts that the stored vectors are byte-identical after all
runs and that each run's image tower fingerprint is unchanged (LiT: zero photos re-embedded).

Prints a markdown table: held-out T→I R@1/5/10 of the base model, and of each (mode, size) with its change in R@1.

Two protocols (`--protocol`), both on photos nothing was chosen on (the defaults come from bench/tuning_dev.py, dev
photos only):
- `subjects` (default): train on the dev photos' in-house captions, measure on the held-out photos. The photo set
  keeps photos that share a caption on one side, so no held-out subject was ever captioned: this is tuning's reach
  to things the user never described.
- `photos`: a user who captioned some of their photos and searches the others. The held-out photos are split by
  photo into `--folds` seeded folds; each run trains on the `inhouse_heldout.tsv` rows of the other folds (first N of
  a seeded shuffle) and is measured on the fold's `heldout.tsv` captions, each ranked against *all* held-out photos
  (photos with the same caption text not counted against it); figures are the mean over folds.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from bench.offline_eval import encode_images, encode_texts, t2i_recall  # noqa: E402


def read_pairs(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{k}\t{c}\n" for k, c in pairs), encoding="utf-8")
    return path


def heldout_recall(bundle, captions: list[str], images: np.ndarray) -> dict[int, float]:
    bundle.model.eval()
    return t2i_recall(encode_texts(bundle, captions) @ images.T, captions)


def gallery_recall(bundle, captions: list[str], own: list[int], gallery: np.ndarray, gallery_captions: list[str],
                   ks=(1, 5, 10)) -> dict[int, float]:
    """T→I R@K of `captions` (caption i's photo is gallery row own[i]) against the whole gallery; a photo whose
    caption is the same text is not counted against (as t2i_recall); ties count against."""
    bundle.model.eval()
    scores = encode_texts(bundle, captions) @ gallery.T  # (Q, G)
    mine = scores[np.arange(len(own)), own][:, None]
    beats = scores >= mine
    beats[np.arange(len(own)), own] = False
    same = np.array([[c == g for g in gallery_captions] for c in captions])
    rank = (beats & ~same).sum(1)
    return {k: float((rank < k).mean() * 100) for k in ks}


def embed_once(args: argparse.Namespace, folder: Path, pairs: list[tuple[str, str]]):
    """(base bundle, photo keys, (N, D) vectors): the "index", embedded once with the locked tower, never again."""
    torch.manual_seed(args.seed)
    base = models.create(args.model, device="cpu")
    base.model.eval()
    keys = list(dict.fromkeys(k for k, _ in pairs))
    return base, keys, encode_images(base, [folder / k for k in keys])


def tune(args: argparse.Namespace, pairs: Path, npz: Path, mode: str, name: str, home: Path, tower_id: str):
    """One run through `models.train.train` with the CLI's defaults for `mode`, on the stored vectors; (tuned bundle,
    result). Asserts the image tower stayed locked and is the one the vectors came from."""
    from models.train import NpzVectorSource, TrainConfig, train

    config = TrainConfig(captions=pairs, image_vectors=npz, model=args.model, name=name, train=mode,
                         epochs=args.epochs, seed=args.seed, device="cpu")
    bundle = models.create(args.model, device="cpu")
    result = train(config, image_vectors=NpzVectorSource(npz, dim=bundle.dim), bundle=bundle, home=home,
                   progress=False)
    assert result.locked_check["identical"] and result.image_tower_id == tower_id
    return bundle, result


def photo_folds(keys: list[str], folds: int, seed: int) -> dict[str, int]:
    """Photo key → fold, by a seeded shuffle (bench/tuning_dev.py's folds on dev, `--protocol photos` on held-out)."""
    order = keys[:]
    random.Random(seed).shuffle(order)
    return {k: i % folds for i, k in enumerate(order)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photoset", type=Path)
    parser.add_argument("--model", default="offline-lite")
    parser.add_argument("--modes", nargs="+", default=["head", "last:2", "lora", "whole"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 300])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocol", choices=("subjects", "photos"), default="subjects",
                        help="subjects: train on dev photos, measure on held-out ones; photos: k-fold by photo "
                             "within the held-out half (see the module docstring)")
    parser.add_argument("--folds", type=int, default=4, help="--protocol photos: folds by photo (default 4)")
    args = parser.parse_args(argv)
    from bench.data import photoset

    folder = args.photoset or photoset.default_dir()
    if not (folder / "inhouse_train.tsv").is_file():
        photoset.materialize(folder)
    if args.protocol == "photos":
        return by_photo(args, folder)
    inhouse = read_pairs(folder / "inhouse_train.tsv")
    heldout = read_pairs(folder / "heldout.tsv")
    base, keys, stored = embed_once(args, folder, inhouse + heldout)
    snapshot = stored.copy()
    vectors = dict(zip(keys, stored, strict=True))
    heldout_images = np.stack([vectors[k] for k, _ in heldout])
    heldout_captions = [c for _, c in heldout]
    before = heldout_recall(base, heldout_captions, heldout_images)
    tower_id = base.image_tower_id
    rows = [("base (no tuning)", "-", 0, before, None, None)]
    shuffled = inhouse[:]
    random.Random(args.seed).shuffle(shuffled)
    with tempfile.TemporaryDirectory(prefix="loupe-tuning-bench-") as tmp:
        tmp = Path(tmp)
        npz = tmp / "vectors.npz"
        np.savez(npz, keys=np.array(keys), vectors=stored)
        for size in args.sizes:
            pairs = write_pairs(tmp / f"inhouse{size}.tsv", shuffled[:size])
            for mode in args.modes:
                name = f"{mode.replace(':', '')}-{size}"
                bundle, result = tune(args, pairs, npz, mode, name, tmp / "home", tower_id)
                after = heldout_recall(bundle, heldout_captions, heldout_images)
                val = (result.metrics_before or {}).get("t2i_r1"), (result.metrics_after or {}).get("t2i_r1")
                rows.append((mode, str(size), result.best_epoch, after, val, result.train_size["pairs"]))
                print(f"{name}: held-out T→I R@1 {before[1]:.1f} → {after[1]:.1f} (best epoch {result.best_epoch})",
                      file=sys.stderr, flush=True)
    assert np.array_equal(stored, snapshot), "stored image vectors changed"
    print(f"Tuning on the in-house captions (dev photos), measured on the held-out split ({len(heldout)} captions, "
          f"{folder}); image tower {tower_id}, {len(keys)} photos embedded once, 0 re-embedded.\n")
    print("| mode | pairs (train/val split 90/10) | best epoch | own val T→I R@1 before → after | held-out T→I "
          "R@1 / R@5 / R@10 | Δ R@1 |")
    print("|---|---|---|---|---|---|")
    for mode, size, epoch, recall, val, _ in rows:
        val_text = "-" if val is None or val[0] is None else f"{100 * val[0]:.1f} → {100 * val[1]:.1f}"
        delta = recall[1] - before[1]
        print(f"| {mode} | {size} | {epoch} | {val_text} | {recall[1]:.1f} / {recall[5]:.1f} / {recall[10]:.1f} | "
              f"{delta:+.1f} |")


def by_photo(args: argparse.Namespace, folder: Path) -> None:
    """`--protocol photos`: k-fold by photo within the held-out half; pooled over folds."""
    inhouse = read_pairs(folder / "inhouse_heldout.tsv")
    heldout = read_pairs(folder / "heldout.tsv")
    base, keys, stored = embed_once(args, folder, heldout + inhouse)
    snapshot = stored.copy()
    row = {k: i for i, k in enumerate(keys)}
    caption_of = dict(heldout)
    gallery_captions = [caption_of.get(k, "") for k in keys]
    fold_of = photo_folds(list(dict.fromkeys(k for k, _ in inhouse)), args.folds, args.seed)
    tower_id = base.image_tower_id
    results: dict[tuple[str, int], list[dict]] = {}
    base_scores, train_sizes, weights = [], defaultdict(list), []
    with tempfile.TemporaryDirectory(prefix="loupe-tuning-bench-") as tmp:
        tmp = Path(tmp)
        npz = tmp / "vectors.npz"
        np.savez(npz, keys=np.array(keys), vectors=stored)
        for fold in range(args.folds):
            test = [(k, c) for k, c in heldout if fold_of.get(k) == fold]
            captions, own = [c for _, c in test], [row[k] for k, _ in test]
            weights.append(len(test))
            base_scores.append(gallery_recall(base, captions, own, stored, gallery_captions))
            pool = [p for p in inhouse if fold_of[p[0]] != fold]
            random.Random(args.seed + fold).shuffle(pool)
            for size in args.sizes:
                pairs = write_pairs(tmp / f"f{fold}-{size}.tsv", pool[:size])
                train_sizes[size].append(len(pool[:size]))
                for mode in args.modes:
                    bundle, _ = tune(args, pairs, npz, mode, f"{mode.replace(':', '')}-{size}-f{fold}",
                                     tmp / "home", tower_id)
                    after = gallery_recall(bundle, captions, own, stored, gallery_captions)
                    results.setdefault((mode, size), []).append(after)
                    print(f"fold {fold} {mode} {size}: T→I R@1 {base_scores[-1][1]:.1f} → {after[1]:.1f}",
                          file=sys.stderr, flush=True)
    assert np.array_equal(stored, snapshot), "stored image vectors changed"
    # pooled over every test caption (folds weighted by their captions), comparable with the subjects protocol
    mean = lambda rows: {k: float(np.average([r[k] for r in rows], weights=weights)) for k in (1, 5, 10)}  # noqa: E731
    before = mean(base_scores)
    print(f"Tuning on a user's own captions of some photos, measured on their other photos: {args.folds}-fold by "
          f"photo within the held-out half ({sum(weights)} captions of the photos with in-house captions, "
          f"{len(keys)} photos, {folder}); each caption "
          f"ranked against all {len(keys)} photos; image tower {tower_id}, embedded once, 0 re-embedded.\n")
    print("| mode | train pairs (mean per fold; CLI's 90/10 split inside) | T→I R@1 / R@5 / R@10 | Δ R@1 | Δ R@5 |")
    print("|---|---|---|---|---|")
    print(f"| base (no tuning) | - | {before[1]:.1f} / {before[5]:.1f} / {before[10]:.1f} | | |")
    for (mode, size), rows in results.items():
        after = mean(rows)
        print(f"| {mode} | {np.mean(train_sizes[size]):.0f} | {after[1]:.1f} / {after[5]:.1f} / {after[10]:.1f} | "
              f"{after[1] - before[1]:+.1f} | {after[5] - before[5]:+.1f} |")


if __name__ == "__main__":
    main()
