"""Write the per-model reference set that relevance decisions fall back on: `models/data/reference/*.jpg`.

    python -m bench.data.reference [--per-subject 1] [--limit 96] [--out models/data/reference]

Small JPEGs (longest side 256 px, quality 85) of photos of bench.data.photoset's **dev** split only, at most
`--per-subject` per caption so no subject dominates; their vectors are computed once per image tower
(search.engine caches them in the data home) and join the library's scores as the background a query is
standardised on (models.relevance). Held-out
photos are never used. The photos are Wikimedia photos shipped in Debian's gcompris-qt-data (GPL / CC-BY-SA) and
scikit-image / scikit-learn sample images; `SOURCES.tsv` next to them names each one's origin.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[2]
SIDE = 256


def build(out: Path, per_subject: int = 1, limit: int = 96) -> int:
    import random

    from bench.data import photoset

    sides = photoset.split()
    photos, seen = [], Counter()
    dev = [p for p in photoset.read_photoset() if sides[p.key] == "dev"]
    random.Random(0).shuffle(dev)  # fixed seed: a spread of categories, not the first ones in the list
    for photo in dev:
        if seen[photo.caption] < per_subject:
            seen[photo.caption] += 1
            photos.append(photo)
    photos = sorted(photos[:limit], key=lambda p: p.key)
    files = {k: ("", v) for k, v in photoset.load_bytes(photos, download=False).items()}
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    rows = []
    for number, photo in enumerate(photos):
        with Image.open(io.BytesIO(files[photo.key][1])) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
            name = f"ref{number:03d}.jpg"
            image.save(out / name, quality=85, optimize=True)
        rows.append(f"{name}\t{photo.key}\t{photo.caption}\n")
    (out / "SOURCES.tsv").write_text("file\tsource\tcaption\n" + "".join(rows), encoding="utf-8")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data.reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-subject", type=int, default=1)
    parser.add_argument("--limit", type=int, default=96)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "data" / "reference")
    args = parser.parse_args(argv)
    print(f"wrote {build(args.out, args.per_subject, args.limit)} reference photos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
