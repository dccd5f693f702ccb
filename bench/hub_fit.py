"""Choose offline-lite's image→text hub correction (`models.offline_lite.HUB_STRENGTH`) on dev photos only.

    python bench/hub_fit.py [--photoset DIR] [--grid 0 0.5 0.8 0.9 0.95 1 1.05 1.1]

Why: with the concept head, a few captions whose class distribution is flat ("hub captions") out-score the right
caption on almost every photo, so a photo's ranking of captions (image→text, zero-shot tagging) is poor even when
each caption's ranking of photos (text→image) is fine. `heads.ConceptSpace(hub_strength=α)` removes α × the mean
of a text vector's class part (the data-free all-classes direction every photo shares) and re-normalises.

For each α of the grid this prints dev and held-out side by side (T→I R@1/5/10, I→T R@5, broad-query
R-precision, as bench/offline_eval.py measures them); the choice is the α with the best **dev** I→T R@5 (ties:
the smaller α), and the held-out column is only reported. The correction is applied here to the head's output
with the preset built at `hub_strength=0`, the same arithmetic as the head's (checked against the head itself).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from bench.offline_eval import (  # noqa: E402
    SPLITS,
    broad_precision,
    category_queries,
    encode_images,
    encode_texts,
    i2t_recall,
    read_split,
    t2i_recall,
)

GRID = (0.0, 0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1)


def correct(vectors: np.ndarray, strength: float, classes: int) -> np.ndarray:
    """What `ConceptSpace` does with `hub_strength`: the class part minus strength × its mean, re-normalised."""
    out = vectors.astype(np.float64).copy()
    out[:, :classes] -= strength * out[:, :classes].mean(1, keepdims=True)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def measure(texts, images, captions, queries_vec, categories, queries) -> dict:
    r = t2i_recall(texts @ images.T, captions)
    broad = broad_precision(queries_vec @ images.T, categories, queries)
    return {"t2i": r, "i2t": i2t_recall(texts, images, captions), "broad": float(np.mean(list(broad.values())))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photoset", type=Path)
    parser.add_argument("--grid", nargs="+", type=float, default=list(GRID))
    args = parser.parse_args(argv)
    from bench.data import photoset
    from models.offline_lite import CLASSES, HUB_STRENGTH

    folder = args.photoset or photoset.default_dir()
    if not (folder / "heldout.tsv").is_file():
        photoset.materialize(folder)
    torch.manual_seed(0)
    bundle = models.create("offline-lite", hub_strength=0.0, device="cpu")
    bundle.model.eval()
    data = {}
    for split in SPLITS:
        paths, captions, categories = read_split(folder, split)
        queries = category_queries(categories)
        data[split] = (encode_images(bundle, paths), encode_texts(bundle, captions), captions,
                       encode_texts(bundle, queries), categories, queries)
    check = models.create("offline-lite", hub_strength=HUB_STRENGTH, device="cpu").model.eval()
    with torch.inference_mode():
        head = check.encode_texts(data["dev"][2][:16]).numpy()
    gap = float(np.abs(head - correct(data["dev"][1][:16], HUB_STRENGTH, CLASSES)).max())
    assert gap < 1e-4, f"the head's correction differs from this bench's ({gap})"
    results = {}
    for strength in args.grid:
        results[strength] = {s: measure(correct(texts, strength, CLASSES), images, captions,
                                        correct(qv, strength, CLASSES), categories, queries)
                             for s, (images, texts, captions, qv, categories, queries) in data.items()}
    chosen = max(args.grid, key=lambda a: (results[a]["dev"]["i2t"], -a))
    print(f"offline-lite's hub strength α on {folder} (dev {len(data['dev'][2])}, held-out "
          f"{len(data['heldout'][2])} photos); chosen on dev I→T R@5: α = {chosen} (shipped: {HUB_STRENGTH})\n")
    print("| α | " + " | ".join(f"{s}: T→I R@1/5/10 | {s}: I→T R@5 | {s}: broad" for s in SPLITS) + " |")
    print("|---|" + "---|---|---|" * len(SPLITS))
    for strength in args.grid:
        cells = []
        for split in SPLITS:
            row = results[strength][split]
            cells += [" / ".join(f"{row['t2i'][k]:.1f}" for k in (1, 5, 10)), f"{row['i2t']:.1f}",
                      f"{row['broad']:.1f}"]
        mark = "**" if strength == chosen else ""
        print(f"| {mark}{strength}{mark} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
