"""Does decoding at the model's resize side change what the model sees? Embeddings of real photos, three decodes.

    python bench/decode_fidelity.py PHOTO_DIR [--model offline-lite] [--limit 60]
    (also `bench/decode.py --photos PHOTO_DIR`)

For every JPEG in PHOTO_DIR (real photos: the wallpapers in Debian's lomiri-wallpapers, mate-backgrounds,
gnome-backgrounds, ukui-wallpapers are multi-megapixel camera JPEGs): the image vector from a full decode through the
tower's reference preprocessing (timm's own transform: the reference), and from each (decode, preprocessing) pair the
indexer had or could have: the draft to 2 × the input size (what it decodes at), the draft to `bundle.decode_side`
(the preprocessing's resize side: rejected, it fails the bar), each through timm's transform and through the
bundle's preprocessing (`CenterCropPreprocess` for timm center-crop towers). Reported: cosine to the reference
(mean, min), top-1 agreement of the vector's largest coordinate (offline-lite's image vector is a class
distribution, so that is its top class), and per-image worker time (decode + preprocess + thumbnail) per row,
measured in the same run (the thumbnail is today's in every row; bench/decode.py --worker compares the stages).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import models  # noqa: E402
from indexer.scan.decode import decode_image  # noqa: E402
from indexer.scan.thumbnails import make_thumbnail  # noqa: E402
from models.building import _as_tuples  # noqa: E402


def jpegs(folder: Path, limit: int) -> list[Path]:
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    return found[:limit]


def fidelity_table(photos: list[Path], model: str) -> str:
    from timm.data import create_transform

    bundle = models.create(model, device="cpu")
    timm_transform = create_transform(**_as_tuples(bundle.model.image_tower.preprocess_config), is_training=False)
    fast = type(bundle.preprocess).__name__
    twice, side = 2 * bundle.input_size, bundle.decode_side
    rows = {  # name: (decode side, preprocess)
        "full decode, timm transform (reference)": (None, timm_transform),
        f"full decode, {fast}": (None, bundle.preprocess),
        f"draft {twice}, timm transform (before)": (twice, timm_transform),
        f"draft {twice}, {fast} (now: the indexer)": (twice, bundle.preprocess),
        f"draft {side} = decode_side, {fast} (rejected)": (side, bundle.preprocess),
    }
    sides = dict(rows)
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in sides}
    worker_ms: dict[str, float] = dict.fromkeys(sides, 0.0)
    sizes: dict[str, list[int]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(photos):
            data = path.read_bytes()
            for name, (side, preprocess) in rows.items():  # interleaved per photo: load hits every row alike
                start = time.process_time()
                decoded = decode_image(data, min_side=side, name=path.name)
                pixels = preprocess(decoded.image)
                make_thumbnail(decoded.image, Path(tmp) / f"{i}-{len(name)}.webp", 320)
                worker_ms[name] += (time.process_time() - start) * 1e3
                sizes[name].append(min(decoded.image.size))
                with torch.inference_mode():
                    vectors[name].append(bundle.model.encode_images(pixels[None])[0].numpy())
    reference = np.stack(vectors["full decode, timm transform (reference)"])
    rows = ["| decode | shorter side decoded (median px) | worker ms/img (CPU) | cos to full: mean | min | "
            "top-1 unchanged |", "|---|---:|---:|---:|---:|---:|"]
    for name in sides:
        got = np.stack(vectors[name])
        cos = (got * reference).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))
        top1 = (got.argmax(1) == reference.argmax(1)).mean()
        rows.append(f"| {name} | {int(np.median(sizes[name]))} | {worker_ms[name] / len(photos):.1f} | "
                    f"{cos.mean():.5f} | {cos.min():.5f} | {100 * top1:.1f}% |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, help="folder of real JPEG photos (searched recursively)")
    parser.add_argument("--model", default="offline-lite")
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    photos = jpegs(args.photos, args.limit)
    if not photos:
        raise SystemExit(f"no JPEGs under {args.photos}")
    print(f"{len(photos)} real JPEGs from {args.photos}, model {args.model}, one thread\n")
    print(fidelity_table(photos, args.model))


if __name__ == "__main__":
    main()
