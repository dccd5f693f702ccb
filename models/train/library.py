"""Caption pairs from the user's own library (`python -m models.train --from-library [FOLDER]`).

The pairs come from whatever application indexes the photos, through the same `loupe.image_vectors` entry point
that serves the index's image vectors (its source's `captions(folder)`): descriptions, titles, keywords and manual
tags people wrote, never an application's own zero-shot tags. Here they are split by image (seeded, so a rerun
holds out the same photos) and written as two ordinary captions files, so training, validation and `--resume` read
them like any other captions file.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

MIN_HELD_OUT = 1  # with two images or more, at least one is held out


def split_by_image(pairs: Sequence[tuple[str, str]], fraction: float,
                   seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held-out): a seeded `fraction` of the images, all their captions with them, is held out."""
    images = sorted({image for image, _ in pairs})
    random.Random(seed).shuffle(images)
    count = round(len(images) * fraction)
    if fraction > 0 and len(images) >= 2:
        count = min(max(count, MIN_HELD_OUT), len(images) - 1)
    held = set(images[:count])
    return [p for p in pairs if p[0] not in held], [p for p in pairs if p[0] in held]


def write_pairs(path: Path, pairs: Sequence[tuple[str, str]]) -> Path:
    """A TSV captions file with a header (`image`, `caption`), as `models.train.captions` reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["image", "caption"])
        writer.writerows(pairs)
    return path


def library_files(home: Path, pairs: Sequence[tuple[str, str]], fraction: float, seed: int,
                  name: str | None = None) -> tuple[Path, Path | None]:
    """Write the split under `<home>/library_captions/<name or timestamp>/`: (train.tsv, heldout.tsv or None)."""
    if not pairs:
        raise ValueError("the library holds no captions people wrote (XMP/IPTC descriptions or keywords, sidecar "
                         "keywords, manual tags); add some, or train on a captions file")
    train, held = split_by_image(pairs, fraction, seed)
    folder = Path(home) / "library_captions" / (name or datetime.now().strftime("%Y%m%d-%H%M%S"))
    return write_pairs(folder / "train.tsv", train), write_pairs(folder / "heldout.tsv", held) if held else None
