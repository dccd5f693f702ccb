"""What "more like this" weighs: fit the visual query's part weights on dev photos, report them on held-out ones.

    python -m bench.like_fit [--model offline-lite] [--dir PHOTOSET_DIR] [--refresh]

A "more like this" query ranks the library by the photo's visual vector (models.visual: pooled backbone features and
two coarse colour thumbnails). Near-duplicates need the thumbnails; *neighbours* — other photos of the same subject —
may not: a castle at noon and one at dusk share features, not colours. The engine reweights the query's parts
(`models.visual.like_vector`, `LIKE_WEIGHTS`); this bench picks those weights.

Data: bench.data.photoset's originals (no generated variants), each split alone as the library (`dev.tsv`,
`heldout.tsv`). A query is every photo whose caption another photo of its split shares; its neighbours are the other
photos ranked by the weighted part cosines (the photo itself left out), and precision@5 is the share of the first
five that carry its caption. "dups first": of the photo set's near-duplicate families (bench.dedupe_fit), those
whose variants all rank above every other photo when the original asks for more like it. The grid's best dev P@5 is
chosen (ties: the smaller thumbnail weights); the table
prints dev and held-out side by side, with the text-aligned vector for comparison. Vectors come from the indexer's
decode and the model's one forward pass (bench.dedupe_fit.load_vectors, cached in bench/out/).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402

SPLITS = ("dev", "heldout")
GRID = (0.0, 0.25, 0.5, 1.0)  # thumbnail weights tried (features weigh 1)
K = 5


def read_split(root: Path, side: str) -> list[tuple[str, str]]:
    rows = []
    for line in (root / f"{side}.tsv").read_text(encoding="utf-8").splitlines():
        path, _, caption = line.partition("\t")
        if path and caption:
            rows.append((path, caption.strip()))
    return rows


def precision_at_k(scores: np.ndarray, captions: list[str], k: int = K) -> float:
    """Mean share of each query's k nearest others (row i of `scores`: photo i against every photo) that share its
    caption; queries are the photos whose caption another photo has."""
    counts = defaultdict(int)
    for caption in captions:
        counts[caption] += 1
    labels = np.array(captions, object)
    scores = np.array(scores, np.float32)
    np.fill_diagonal(scores, -np.inf)
    hits = [float(np.mean(labels[np.argsort(-scores[i], kind="stable")[:k]] == captions[i]))
            for i in range(len(captions)) if counts[captions[i]] > 1]
    return float(np.mean(hits)) if hits else float("nan")


def like_scores(visual: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    """(Q, N): each photo as a "more like this" query (models.visual.like_vector, as the engine builds it) against
    the stored visual vectors of all of them."""
    from models.visual import like_vector

    return like_vector(visual, weights) @ visual.T


def families_first(vectors: dict[str, np.ndarray], library: list[str], families, weights: dict[str, float]) -> int:
    """Families (bench.dedupe_fit.read_families) whose every variant ranks above every other photo when the
    original queries the split's library plus its variants: near-duplicates must still come first."""
    from models.visual import like_vector

    first = 0
    for family in families:
        original = family.members["original"]
        variants = set(family.members.values()) - {original}
        pool = [p for p in library if p != original] + sorted(variants)
        scores = np.stack([vectors[p] for p in pool]) @ like_vector(vectors[original], weights)
        first += {pool[i] for i in np.argsort(-scores, kind="stable")[:len(variants)]} == variants
    return first


def fit(visual: np.ndarray, captions: list[str]) -> tuple[dict[str, float], float]:
    best, best_score = None, -1.0
    for layout in GRID:
        for fine in GRID:
            weights = {"features": 1.0, "layout": layout, "fine": fine}
            score = precision_at_k(like_scores(visual, weights), captions)
            if score > best_score + 1e-9:
                best, best_score = weights, score
    return best, best_score


def report(model: str, root: Path, refresh: bool) -> str:
    import models
    from bench.dedupe_fit import load_vectors, read_families
    from models.visual import LIKE_WEIGHTS

    bundle = models.create(model)
    sides = {side: read_split(root, side) for side in SPLITS}
    families = {side: [f for f in read_families(root) if f.split == side] for side in SPLITS}
    paths = sorted({p for rows in sides.values() for p, _ in rows}
                   | {p for fams in families.values() for f in fams for p in f.members.values()})
    vectors = load_vectors(bundle, root, paths, refresh, name="like")
    data = {side: (np.stack([vectors["visual"][p] for p, _ in rows]),
                   np.stack([vectors["text-aligned"][p] for p, _ in rows]), [c for _, c in rows])
            for side, rows in sides.items()}
    chosen, _ = fit(data["dev"][0], data["dev"][2])
    equal = {"features": 1.0, "layout": 1.0, "fine": 1.0}
    features = {"features": 1.0, "layout": 0.0, "fine": 0.0}
    rows = [("visual, equal parts (before)", equal), ("visual, features only", features),
            (f"visual, fitted on dev {_weights(chosen)}", chosen), (f"visual, shipped {_weights(LIKE_WEIGHTS)}",
                                                                    LIKE_WEIGHTS), ("text-aligned vector", None)]
    queries = {side: sum(1 for c in d[2] if d[2].count(c) > 1) for side, d in data.items()}
    lines = [f'"more like this" neighbour precision@{K}, {model} ({bundle.image_tower_id}); photo set {root}',
             f"queries (photos whose caption another photo shares): {queries['dev']} dev / {queries['heldout']} "
             f"held-out; library: the split's {len(data['dev'][2])} / {len(data['heldout'][2])} originals", "",
             f"{'ranking':58} {'dev P@5':>8} {'held-out P@5':>13} {'dev dups first':>15} {'held-out':>9}",
             "-" * 107]
    for name, weights in rows:
        figures = [precision_at_k(like_scores(v, weights) if weights else s @ s.T, c)
                   for v, s, c in (data[side] for side in SPLITS)]
        first = [f"{families_first(vectors['visual'], [p for p, _ in sides[side]], families[side], weights)}/"
                 f"{len(families[side])}" if weights else "" for side in SPLITS]
        lines.append(f"{name:58} {figures[0]:>8.3f} {figures[1]:>13.3f} {first[0]:>15} {first[1]:>9}")
    lines += ["", f"models.visual.LIKE_WEIGHTS = {chosen}"]
    return "\n".join(lines)


def _weights(weights: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:g}" for k, v in weights.items()) + ")"


def main(argv: list[str] | None = None) -> int:
    from bench.dedupe_fit import photoset_main

    return photoset_main("python -m bench.like_fit", __doc__, report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
