"""Fit the near-duplicate fold threshold on real photo variants; report it on held-out photos nothing was fitted on.

    python -m bench.dedupe_fit [--model offline-lite] [--dir PHOTOSET_DIR] [--refresh]

Data: bench.data.photoset's near-duplicate families (an original photo + a 25-50% resize, a JPEG q40-70 re-encode,
a 4-10% crop and a burst-like shot: small shift/rotation + brightness) and its distinct same-class pairs (same
caption, or same category), each on the fixed-seed dev / heldout side of the photo set. Every photo is decoded and
embedded exactly as the indexer does (indexer.scan.decode, `encode_images(..., with_visual=True)`), and folded with
search.dedupe.collapse, the function search uses.

Spaces compared, each with its own threshold fitted on dev:
* text-aligned: the vector search reads (offline-lite: sqrt of the 1000-class distribution);
* visual: the image tower's pooled pre-logit features, the visual vector stored beside it;
* dhash: a 256-bit difference hash (a perceptual hash) of the decoded image, similarity = share of equal bits.

The fit: the threshold folds no distinct same-class pair of the dev side (strictly above their highest similarity)
and folds as many dev families as that allows; inside the interval of thresholds that fold the same number of dev
families it takes the middle, for margin on both sides. The table prints dev and held-out side by side.
Vectors are cached in bench/out/ per image tower (`--refresh` recomputes them).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPACES = ("text-aligned", "visual", "dhash")
SPLITS = ("dev", "heldout")
KINDS = ("resize", "jpeg", "crop", "burst")
CACHE_DIR = Path(__file__).resolve().parent / "out"
HASH_SIDE = 16  # dhash on a 17x16 grey thumbnail: 256 bits


@dataclass(frozen=True)
class Family:
    name: str
    split: str
    members: dict[str, str]  # variant ('original', 'resize', ...) -> path relative to the photo set


def read_families(root: Path) -> list[Family]:
    grouped: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    with open(root / "dup_families.tsv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            grouped[(row["family"], row["split"])][row["variant"]] = row["path"]
    return [Family(name, split, members) for (name, split), members in sorted(grouped.items())]


def read_pairs(root: Path) -> list[tuple[str, str, str, str]]:
    """(split, relation, path_a, path_b) of distinct same-class photos."""
    with open(root / "same_class_pairs.tsv", encoding="utf-8") as handle:
        return [(r["split"], r["relation"], r["path_a"], r["path_b"]) for r in csv.DictReader(handle, delimiter="\t")]


def dhash(image) -> np.ndarray:
    """256 bits: is each pixel of a 17x16 grey thumbnail brighter than its left neighbour."""
    from PIL import Image

    grey = np.asarray(image.convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.LANCZOS), np.float32)
    return (grey[:, 1:] > grey[:, :-1]).flatten()


def embed(bundle, root: Path, paths: list[str], batch: int = 16) -> dict[str, dict[str, np.ndarray]]:
    """{space: {path: vector}} through the indexer's decode and the model's one forward pass."""
    import torch

    from indexer.scan.decode import decode_image

    out: dict[str, dict[str, np.ndarray]] = {space: {} for space in SPACES}
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        pixels = []
        for path in chunk:
            decoded = decode_image((root / path).read_bytes(), min_side=2 * bundle.input_size, name=path)
            pixels.append(bundle.preprocess(decoded.image))
            out["dhash"][path] = dhash(decoded.image)
        semantic, visual = bundle.model.encode_images(torch.stack(pixels), with_visual=True)
        for path, s, v in zip(chunk, semantic.float().numpy(), visual.float().numpy(), strict=True):
            out["text-aligned"][path], out["visual"][path] = s, v
        print(f"  embedded {min(start + batch, len(paths))}/{len(paths)}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return out


def load_vectors(bundle, root: Path, paths: list[str], refresh: bool) -> dict[str, dict[str, np.ndarray]]:
    cache = CACHE_DIR / f"dedupe-{bundle.image_tower_id}.npz"
    if cache.exists() and not refresh:
        stored = np.load(cache)
        keys = list(stored["paths"])
        if set(paths) <= set(keys):
            return {space: dict(zip(keys, stored[space], strict=True)) for space in SPACES}
    vectors = embed(bundle, root, paths)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paths=np.array(paths), **{s: np.stack([vectors[s][p] for p in paths]) for s in SPACES})
    return vectors


def similarity(space: str, a: np.ndarray, b: np.ndarray) -> float:
    if space == "dhash":
        return float(np.mean(a == b))
    return float(a @ b)


def as_unit(space: str, vector: np.ndarray) -> np.ndarray:
    """A vector whose dot product is the space's similarity: dhash bits as ±1/sqrt(n) (cosine = 1 - 2·hamming)."""
    if space == "dhash":
        return (vector.astype(np.float32) * 2 - 1) / np.sqrt(len(vector))
    return vector


def hash_threshold(t: float) -> float:
    """The cosine of the ±1 encoding at equal-bit share t."""
    return 2 * t - 1


@dataclass
class SideStats:
    families: int
    folded: int  # families whose every variant folds into the original (search.dedupe.collapse)
    kinds: dict[str, tuple[int, int]]  # variant kind -> (folded, total)
    pairs: int
    pairs_folded: int  # distinct same-class pairs folded together
    photos_folded: int  # distinct photos involved in those pairs
    family_min: list[float]  # per family: lowest similarity of a variant to its original
    pair_sims: list[float]


def side_stats(space: str, vectors: dict[str, np.ndarray], families: list[Family],
               pairs: list[tuple[str, str, str, str]], threshold: float) -> SideStats:
    from search.dedupe import collapse

    cos_threshold = hash_threshold(threshold) if space == "dhash" else threshold
    folded, kinds = 0, {k: [0, 0] for k in KINDS}
    family_min = []
    for family in families:
        order = ["original", *[k for k in KINDS if k in family.members]]
        rows = [as_unit(space, vectors[family.members[v]]) for v in order]
        groups = collapse(rows, cos_threshold)
        folded += len(groups) == 1
        original = vectors[family.members["original"]]
        sims = {v: similarity(space, original, vectors[family.members[v]]) for v in order[1:]}
        family_min.append(min(sims.values()))
        for kind, sim in sims.items():
            kinds[kind][0] += sim >= threshold
            kinds[kind][1] += 1
    pair_sims = [similarity(space, vectors[a], vectors[b]) for _, _, a, b in pairs]
    hit = [(a, b) for (_, _, a, b), s in zip(pairs, pair_sims, strict=True) if s >= threshold]
    photos = {p for pair in hit for p in pair}
    return SideStats(len(families), folded, {k: (f, n) for k, (f, n) in kinds.items()}, len(pairs), len(hit),
                     len(photos), family_min, pair_sims)


def fit_threshold(stats: SideStats) -> float:
    """Above every dev distinct pair; as many dev families as that allows; the middle of that interval."""
    low = max(stats.pair_sims) if stats.pair_sims else 0.0
    keeps = sorted(m for m in stats.family_min if m > low)
    if not keeps:
        return min(1.0, low + 1e-3)
    high = keeps[0]  # above `high` the first family is lost
    return (low + high) / 2


def report(model: str, root: Path, refresh: bool) -> str:
    import models

    bundle = models.create(model)
    families, pairs = read_families(root), read_pairs(root)
    paths = sorted({p for f in families for p in f.members.values()} | {p for *_, a, b in pairs for p in (a, b)})
    vectors = load_vectors(bundle, root, paths, refresh)
    by_split = {s: ([f for f in families if f.split == s], [p for p in pairs if p[0] == s]) for s in SPLITS}
    lines = [f"near-duplicate folding, {model} ({bundle.image_tower_id}); photo set {root}",
             f"families: {len(by_split['dev'][0])} dev / {len(by_split['heldout'][0])} held-out "
             f"(original + {', '.join(KINDS)}); distinct same-class pairs: {len(by_split['dev'][1])} dev / "
             f"{len(by_split['heldout'][1])} held-out", ""]
    header = (f"{'space':13} {'thr':>6}  {'split':8} {'families folded':>16} {'distinct pairs folded':>22} "
              f"{'photos':>7}  " + "  ".join(f"{k:>9}" for k in KINDS) + "   family-min p10  distinct max")
    lines += [header, "-" * len(header)]
    chosen = {}
    for space in SPACES:
        dev_probe = side_stats(space, vectors[space], *by_split["dev"], threshold=2.0)
        threshold = chosen[space] = fit_threshold(dev_probe)
        for split in SPLITS:
            st = side_stats(space, vectors[space], *by_split[split], threshold=threshold)
            kinds = "  ".join(f"{f:>4}/{n:<4}" for f, n in (st.kinds[k] for k in KINDS))
            lines.append(
                f"{space:13} {threshold:6.3f}  {split:8} {st.folded:>7} of {st.families:<6} "
                f"{st.pairs_folded:>10} of {st.pairs:<9} {st.photos_folded:>7}  {kinds}   "
                f"{np.quantile(st.family_min, 0.1):14.3f}  {max(st.pair_sims):12.3f}")
    lines += ["", "thresholds fitted on dev only: above every dev distinct pair, in the middle of the interval that "
              "folds the most dev families.", f"search.dedupe.DEFAULT_THRESHOLD (visual) = {chosen['visual']:.3f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedupe_fit", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="offline-lite")
    parser.add_argument("--dir", type=Path, help="photo set folder (default: bench.data.photoset.default_dir())")
    parser.add_argument("--refresh", action="store_true", help="recompute the cached vectors")
    args = parser.parse_args(argv)
    from bench.data import photoset

    root = (args.dir or photoset.default_dir()).expanduser()
    photoset.materialize(root, download=False)  # reuses an intact copy; writes what is missing
    print(report(args.model, root, args.refresh))
    return 0


if __name__ == "__main__":
    sys.exit(main())
