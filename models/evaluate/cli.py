"""`python -m models.evaluate` / `loupe-evaluate`: reproduce LiT's zero-shot and retrieval numbers on your own data.

    loupe-evaluate zeroshot ~/data/imagenet/val --model lit-b16b-2              # class folders, 81 prompts
    loupe-evaluate zeroshot val_labels.csv --classnames names.txt --model lit-l16l
    loupe-evaluate retrieval ~/data/coco/dataset_coco.json --images-root ~/data/coco --model lit-b16b-2
    loupe-evaluate retrieval my_captions.tsv --model ~/.loupe/text_towers/v3 --json
    loupe-evaluate calibrate dev_captions.tsv --images-root DIR --absent absent.txt --model offline-lite

Unreadable images are skipped and counted (never a crash); `--json` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from models.evaluate.datasets import ClassificationSet, captions_file, class_folders, coco_karpathy
from models.evaluate.datasets import labels_file as read_labels_file
from models.templates import LIT_ZEROSHOT_TEMPLATES, load_templates

# numpy, torch and the encoders are imported by the task that needs them: `--help` and argument errors stay fast.

DEFAULT_MODEL = "lit-b16b-2"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("model and run")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"preset name (models.list_presets()) or a saved-model folder (default {DEFAULT_MODEL})")
    group.add_argument("--weights", help="local LiT .npz (air-gapped machines; skips the download)")
    group.add_argument("--vocab", help="local LiT vocabulary .txt that belongs to --weights")
    group.add_argument("--home", help="data home holding the model cache (default $LOUPE_HOME or ~/.loupe)")
    group.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', …")
    group.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    group.add_argument("--workers", type=int, default=4, help="image decoding threads (default 4)")
    group.add_argument("--limit", type=int, help="evaluate an evenly spaced subset of this many images (quick check)")
    group.add_argument("--json", action="store_true", help="print the result as one JSON object")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")

    parser = argparse.ArgumentParser(prog="loupe-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", required=True)
    zeroshot = tasks.add_parser("zeroshot", parents=[common], help="zero-shot classification: top-1 / top-5",
                                description="Zero-shot top-1/top-5 with LiT's protocol (81 prompts, canonicalised "
                                            "names, first alias, mean of normalised prompt embeddings).")
    zeroshot.add_argument("data", type=Path, help="folder of class subfolders, or a labels file (CSV/TSV/JSONL: "
                                                  "image, label) used with --classnames")
    zeroshot.add_argument("--classnames", type=Path,
                          help="class names: one per line in class order, or 'key<TAB>name' lines. Default for "
                               "folders: WordNet ids (n01440764) → timm's ImageNet names, else the folder names")
    zeroshot.add_argument("--templates", type=Path, help="prompt templates, one per line with '{}' "
                                                         "(default: CLIP's 80 + '{}')")
    zeroshot.add_argument("--images-root", type=Path, help="base for relative paths in a labels file")
    retrieval = tasks.add_parser("retrieval", parents=[common], help="image↔text retrieval: R@1/5/10 both ways",
                                 description="I→T and T→I Recall@1/5/10 over every caption of every image.")
    retrieval.add_argument("data", type=Path, help="COCO Karpathy dataset_coco.json, or a captions file "
                                                   "(CSV/TSV/JSONL: image, caption; several rows per image)")
    retrieval.add_argument("--images-root", type=Path,
                           help="folder the image paths are relative to (COCO: the folder holding val2014/); "
                                "default: the data file's folder")
    retrieval.add_argument("--split", default="test", help="Karpathy split to use (default test: 5k images)")
    calibrate = tasks.add_parser(
        "calibrate", parents=[common], help="fit the relevance thresholds (good / possible match) for a model",
        description="Fit models.relevance's thresholds on a captioned DEV set (never the one you report on): every "
                    "caption is a query, photos with the same caption show the same subject, --absent queries name "
                    "concepts no photo shows. The constants are stored in the data home for the model's image "
                    "tower and used by every search from then on (--out writes them elsewhere, e.g. to ship them).")
    calibrate.add_argument("data", type=Path, help="captions file (CSV/TSV/JSONL: image, caption) or COCO json")
    calibrate.add_argument("--images-root", type=Path, help="folder the image paths are relative to")
    calibrate.add_argument("--split", default="train", help="Karpathy split for a COCO json (default train)")
    calibrate.add_argument("--absent", type=Path, help="absent-concept queries, one a line (recommended: without "
                                                       "them no threshold guards against nonsense)")
    calibrate.add_argument("--out", type=Path, help="write the constants here instead of the data home")
    return parser


def _subset(count: int, limit: int | None) -> list[int]:
    if not limit or limit >= count:
        return list(range(count))
    import numpy as np

    return sorted(set(np.linspace(0, count - 1, limit).round().astype(int).tolist()))


def _create_bundle(args: argparse.Namespace):
    import models
    from models.registry import accepts_option

    options = {k: v for k, v in {"weights": args.weights, "vocab": args.vocab}.items() if v}
    # --home: where a lit-* preset caches its weights; calibrate writes its constants into --home for every preset
    if args.home and accepts_option(args.model, "home"):
        options["home"] = args.home
    try:
        return models.create(args.model, device=args.device, **options)
    except TypeError as err:  # a non-LiT preset does not take weights/vocab
        raise ValueError(f"--weights/--vocab apply to the lit-* presets, not {args.model!r} ({err})") from err


def run_zeroshot(args: argparse.Namespace, bundle) -> dict:
    from models.evaluate.encoding import encode_image_files
    from models.zeroshot import build_zeroshot_classifier, topk_accuracy

    data = (class_folders(args.data, args.classnames) if args.data.is_dir()
            else read_labels_file(args.data, _required(args.classnames, "--classnames"), args.images_root))
    chosen = _subset(len(data.images), args.limit)
    data = ClassificationSet([data.images[i] for i in chosen], [data.labels[i] for i in chosen], data.classnames)
    templates = load_templates(args.templates) if args.templates else list(LIT_ZEROSHOT_TEMPLATES)
    classifier = build_zeroshot_classifier(bundle.model, data.classnames, templates, batch_size=256)  # (C, D)
    encoded = encode_image_files(bundle, data.images, batch_size=args.batch_size, workers=args.workers,
                                 progress=False if args.no_progress else None)
    accuracy = topk_accuracy(encoded.vectors, [data.labels[i] for i in encoded.kept], classifier)
    return {"task": "zeroshot", **_header(args, bundle), "classes": len(data.classnames),
            "templates": len(templates), "images": len(encoded.kept), **_skipped(encoded), **accuracy}


def run_retrieval(args: argparse.Namespace, bundle) -> dict:
    from models.evaluate.encoding import encode_image_files, encode_texts
    from models.retrieval import recall_at_k

    root = args.images_root or args.data.parent
    data = (coco_karpathy(args.data, root, args.split) if args.data.suffix.lower() == ".json"
            else captions_file(args.data, args.images_root))
    chosen = set(_subset(len(data.images), args.limit))
    progress = False if args.no_progress else None
    encoded = encode_image_files(bundle, [p for i, p in enumerate(data.images) if i in chosen],
                                 batch_size=args.batch_size, workers=args.workers, progress=progress)
    original = [i for i in range(len(data.images)) if i in chosen]
    row_of = {original[k]: row for row, k in enumerate(encoded.kept)}  # dataset image index → vector row
    pairs = [(text, row_of[owner]) for text, owner in zip(data.captions, data.caption_image, strict=True)
             if owner in row_of]  # captions of skipped or left-out images leave with them
    texts = encode_texts(bundle.model, [t for t, _ in pairs], batch_size=256, progress=progress, desc="captions")
    recalls = recall_at_k(encoded.vectors, texts, [row for _, row in pairs])
    return {"task": "retrieval", **_header(args, bundle), "images": len(encoded.kept), "captions": len(pairs),
            **_skipped(encoded), **recalls}


MIN_CALIBRATION_PHOTOS = 50  # a fit on fewer decides the thresholds by a handful of scores


def run_calibrate(args: argparse.Namespace, bundle) -> dict:
    """Fit and store the relevance constants (models.relevance.fit) for `bundle` on a captioned dev set."""
    from models.evaluate.encoding import encode_image_files
    from models.home import data_home
    from models.relevance import constants_path, encode_queries, fit, reference_files

    root = args.images_root or args.data.parent
    data = (coco_karpathy(args.data, root, args.split) if args.data.suffix.lower() == ".json"
            else captions_file(args.data, args.images_root))
    chosen = _subset(len(data.images), args.limit)
    progress = False if args.no_progress else None
    encoded = encode_image_files(bundle, [data.images[i] for i in chosen], batch_size=args.batch_size,
                                 workers=args.workers, progress=progress, with_visual=True)
    kept = [chosen[k] for k in encoded.kept]
    if len(kept) < MIN_CALIBRATION_PHOTOS:
        raise ValueError(f"only {len(kept)} readable photos with captions ({len(encoded.failures)} unreadable): "
                         f"thresholds fitted on fewer than {MIN_CALIBRATION_PHOTOS} are noise, so nothing was saved "
                         "and the constants in use stay")
    first = {}  # image → its first caption: the photo's subject
    for caption, owner in zip(data.captions, data.caption_image, strict=True):
        first.setdefault(owner, " ".join(caption.lower().split()))
    labels = [first.get(i, f"<image {i}>") for i in kept]
    queries = sorted(set(labels))
    absent = _absent_queries(args.absent, set(queries))
    model = bundle.model
    vectors = encode_queries(model.encode_texts, queries + absent)
    reference = encode_image_files(bundle, reference_files(), batch_size=args.batch_size, workers=args.workers,
                                   progress=False).vectors.numpy()
    meta = {"model": args.model, "image_tower_id": bundle.image_tower_id,
            "text_tower": str(bundle.metadata.get("version", "")) if bundle.metadata else "",
            "fitted_on": f"{args.data.name}: {len(kept)} photos, {len(queries)} subjects, {len(absent)} absent"}
    constants = fit(encoded.vectors.numpy(), labels, vectors, queries + [None] * len(absent), reference,
                    visual=encoded.visual.float().numpy(), **meta)
    target = args.out or constants_path(data_home(args.home), bundle.image_tower_id)
    constants.save(target)
    return {"task": "calibrate", **_header(args, bundle), "images": len(kept), "subjects": len(queries),
            "absent": len(absent), **_skipped(encoded), "saved": str(target),
            "text": vars(constants.text), "image": vars(constants.image),
            "visual": vars(constants.visual) if constants.visual else None, "report": constants.report}


def _absent_queries(path: Path | None, present: set[str]) -> list[str]:
    if path is None:
        return []
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [q for q in dict.fromkeys(lines) if q and not q.startswith("#") and q.lower() not in present]


def _required(value, flag: str):
    if value is None:
        raise ValueError(f"{flag} is required with a labels file")
    return value


def _header(args: argparse.Namespace, bundle) -> dict:
    return {"model": args.model, "image_tower_id": bundle.image_tower_id, "dataset": str(args.data)}


def _skipped(encoded) -> dict:
    return {"skipped": len(encoded.failures),
            "skipped_examples": [{"path": str(p), "reason": r} for p, r in encoded.failures[:10]]}


def _print_human(result: dict) -> None:
    print(f"{result['task']} · {result['model']} ({result['image_tower_id']}) · {result['dataset']}")
    print(f"images: {result['images']}  skipped (unreadable): {result['skipped']}")
    if result["task"] == "calibrate":
        for kind in ("text", "image", "visual"):
            if not result.get(kind):
                continue
            report = result["report"][kind]
            precision = report["good"]["precision"]  # None when nothing was flagged
            shown = "-" if precision is None else f"{precision:.2f}"
            print(f"{kind} queries: good ≥ {result[kind]['good']:.3f} (dev precision "
                  f"{shown}, recall {report['good']['recall']:.2f}, absent flagged "
                  f"{report['good']['nonsense_flagged']:.2f}) · possible ≥ {result[kind]['possible']:.3f}")
        print(f"saved to {result['saved']}")
        return
    if result["task"] == "zeroshot":
        print(f"classes: {result['classes']}  templates: {result['templates']}")
        print(f"top-1: {100 * result['top1']:.2f}%  top-5: {100 * result['top5']:.2f}%")
        return
    print(f"captions: {result['captions']}")
    for direction, label in (("image_to_text", "I→T"), ("text_to_image", "T→I")):
        print(label + "  " + "  ".join(f"{k}: {100 * v:.2f}" for k, v in result[direction].items()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        bundle = _create_bundle(args)
        run = {"zeroshot": run_zeroshot, "retrieval": run_retrieval, "calibrate": run_calibrate}[args.task]
        result = run(args, bundle)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        print(f"loupe-evaluate: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_human(result)
    return 0
