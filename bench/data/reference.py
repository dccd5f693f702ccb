"""Write the per-model reference set that relevance decisions fall back on: `models/data/reference/*.jpg`.

    python -m bench.data.reference [--set dev] [--per-subject 2] [--limit 96] [--out models/data/reference]

Small JPEGs (longest side 256 px, quality 85) of photos of the **dev** split only, at most `--per-subject` per
caption so no subject dominates; their vectors are computed once per image tower (search.engine caches them in the
data home) and join the library's scores as the background a query is standardised on (models.relevance). Held-out
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

from bench.data.realphotos import photo_files, read_list

ROOT = Path(__file__).resolve().parents[2]
SIDE = 256


def build(out: Path, set_name: str = "dev", per_subject: int = 2, limit: int = 96) -> int:
    from bench.data.gcompris import GcomprisSource

    photos, seen = [], Counter()
    for photo in read_list(set_name):
        if seen[photo.caption] < per_subject:
            seen[photo.caption] += 1
            photos.append(photo)
    photos = photos[:limit]
    files = photo_files(photos, GcomprisSource.locate(download=False))
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
    parser.add_argument("--set", default="dev", help="photo list to draw from (a dev split; never the held-out one)")
    parser.add_argument("--per-subject", type=int, default=2)
    parser.add_argument("--limit", type=int, default=96)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "data" / "reference")
    args = parser.parse_args(argv)
    if "eval" in args.set or "heldout" in args.set:
        print("error: the reference set is drawn from a dev split only", file=sys.stderr)
        return 2
    print(f"wrote {build(args.out, args.set, args.per_subject, args.limit)} reference photos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
