"""Fit the near-duplicate fold threshold on real photo variants; report it on held-out photos nothing was fitted on.

    python -m bench.dedupe_fit [--model offline-lite] [--dir PHOTOSET_DIR] [--refresh]

Data: bench.data.photoset's near-duplicate families (an original photo + a 25-50% resize, a JPEG q40-70 re-encode,
a 4-10% crop and a burst-like shot: small shift/rotation + brightness) and its distinct same-class pairs (same
caption, or same category), each on the fixed-seed dev / heldout side of the photo set. Every photo is decoded and
embedded exactly as the indexer does (indexer.scan.decode, `encode_images(..., with_visual=True)`), and folded with
search.dedupe.collapse, the function search uses.

Spaces compared, each with its own constants fitted on dev:
* text-aligned: the vector search reads (offline-lite: sqrt of the 1000-class distribution), one cosine threshold;
* dhash: a 256-bit difference hash (a perceptual hash) of the decoded image, one threshold;
* visual, features only: the image tower's pooled pre-logit features, one cosine threshold;
* visual, fold rule: the visual vector stored beside the text-aligned one (models.visual: those features plus two
  coarse thumbnails) under search.dedupe.FoldRule, the rule search folds with.

The fit: no distinct same-class pair of the dev side folded, as many dev families folded as that allows, and of the
constants that do so the middle, for margin on both sides (`fit_threshold`, `fit_rule`). The table prints dev and
held-out side by side. Three pairs of the photo set's same-caption list are one photograph shipped twice by GCompris
(the Colosseum, the Brandenburg Gate, the Great Pyramid: checked by eye); they are near-duplicates, not distinct
photos, and are left out of the distinct pairs (`SAME_PICTURE`).
Vectors are cached in bench/out/ per image tower (`--refresh` recomputes them).
"""

from __future__ import annotations

import argparse
import csv
import json
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


# One photograph at two sizes inside GCompris (monuments/ and wonders/ or egypt/ or germany/), listed by the photo
# set as distinct same-caption photos: keys of bench/data/photoset.tsv, checked by eye.
SAME_PICTURE = [
    ("gcompris:gcompris/src/activities/categorization/resource/images/monuments/colosseum.webp",
     "gcompris:gcompris/src/activities/explore_monuments/resource/wonders/colosseum.webp"),
    ("gcompris:gcompris/src/activities/categorization/resource/images/monuments/brandenburgGate.webp",
     "gcompris:gcompris/src/activities/explore_monuments/resource/germany/brandenburgGate.webp"),
    ("gcompris:gcompris/src/activities/categorization/resource/images/monuments/greatPyramid.webp",
     "gcompris:gcompris/src/activities/explore_monuments/resource/egypt/greatPyramidOfGiza.webp"),
]


def read_pairs(root: Path) -> list[tuple[str, str, str, str]]:
    """(split, relation, path_a, path_b) of distinct same-class photos (SAME_PICTURE left out)."""
    files = json.loads((root / "manifest.json").read_text())["files"]
    same = {frozenset((files.get(a), files.get(b))) for a, b in SAME_PICTURE}
    with open(root / "same_class_pairs.tsv", encoding="utf-8") as handle:
        rows = [(r["split"], r["relation"], r["path_a"], r["path_b"]) for r in csv.DictReader(handle, delimiter="\t")]
    return [r for r in rows if frozenset(r[2:]) not in same]


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


def load_vectors(bundle, root: Path, paths: list[str], refresh: bool, name: str = "dedupe"
                 ) -> dict[str, dict[str, np.ndarray]]:
    """`embed`, cached in bench/out/<name>-<image tower>.npz (a bench of its own photos passes its own `name`)."""
    cache = CACHE_DIR / f"{name}-{bundle.image_tower_id}.npz"
    if cache.exists() and not refresh:
        stored = np.load(cache)
        keys = list(stored["paths"])
        if set(paths) <= set(keys) and stored["visual"].shape[1] == bundle.model.visual_dim:
            return {space: dict(zip(keys, stored[space], strict=True)) for space in SPACES}
    vectors = embed(bundle, root, paths)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paths=np.array(paths), **{s: np.stack([vectors[s][p] for p in paths]) for s in SPACES})
    return vectors


def features_only(vector: np.ndarray) -> np.ndarray:
    from models.visual import split

    return split(vector)["features"]


@dataclass
class SideStats:
    families: int
    folded: int  # families whose every variant folds into the original (search.dedupe.collapse)
    kinds: dict[str, tuple[int, int]]  # variant kind -> (folded, total)
    pairs: int
    pairs_folded: int  # distinct same-class pairs folded together
    photos_folded: int  # distinct photos involved in those pairs


def side_stats(families: list[Family], pairs: list[tuple[str, str, str, str]], vector, rule) -> SideStats:
    """`vector(path)` gives what is compared; `rule` is a cosine threshold or a search.dedupe.FoldRule."""
    from search.dedupe import collapse

    folded, kinds = 0, {k: [0, 0] for k in KINDS}
    for family in families:
        order = ["original", *[k for k in KINDS if k in family.members]]
        folded += len(collapse([vector(family.members[v]) for v in order], rule)) == 1
        for kind in order[1:]:
            together = collapse([vector(family.members["original"]), vector(family.members[kind])], rule)
            kinds[kind][0] += len(together) == 1
            kinds[kind][1] += 1
    hit = [(a, b) for _, _, a, b in pairs if len(collapse([vector(a), vector(b)], rule)) == 1]
    photos = {p for pair in hit for p in pair}
    return SideStats(len(families), folded, {k: (f, n) for k, (f, n) in kinds.items()}, len(pairs), len(hit),
                     len(photos))


def midpoint(low: float, high: float) -> float:
    """Between the highest distinct value and the lowest value worth folding; just above `low` if they overlap."""
    return (low + high) / 2 if high > low else low + 1e-3


def fit_threshold(families: list[Family], pairs, vector) -> float:
    """One cosine threshold: above every dev distinct pair, in the middle of the interval that folds the most dev
    families (the lowest variant-to-original similarity of the first family lost above it)."""
    low = max(float(vector(a) @ vector(b)) for _, _, a, b in pairs)
    worst = sorted(min(float(vector(f.members["original"]) @ vector(f.members[k])) for k in KINDS if k in f.members)
                   for f in families)
    return midpoint(low, next((w for w in worst if w > low), low))


def fit_rule(families: list[Family], pairs, vector):
    """search.dedupe.FoldRule on dev: `fine` from the resize/JPEG variants against the distinct pairs (midpoint);
    then (`features`, `layout`) on a grid: no dev distinct pair folded, most dev families folded, and of the best
    cells the one nearest their centre (margin in both directions)."""
    from models.visual import split
    from search.dedupe import FoldRule

    parts = {}

    def part(path: str) -> dict[str, np.ndarray]:
        if path not in parts:
            parts[path] = split(vector(path))
        return parts[path]

    def sim(name: str, a: str, b: str) -> float:
        return float(part(a)[name] @ part(b)[name])

    low = max(sim("fine", a, b) for _, _, a, b in pairs)
    exact = [sim("fine", f.members["original"], f.members[k]) for f in families for k in ("resize", "jpeg")
             if k in f.members]
    fine = midpoint(low, min(e for e in exact if e > low) if any(e > low for e in exact) else low)
    pair_sims = np.array([[sim(n, a, b) for n in ("fine", "features", "layout")] for _, _, a, b in pairs])
    family_sims = [np.array([[sim(n, f.members["original"], f.members[k]) for n in ("fine", "features", "layout")]
                             for k in KINDS if k in f.members]) for f in families]
    grid = np.round(np.arange(0.50, 0.995, 0.01), 2)
    best, cells = -1, []
    for features in grid:
        for layout in grid:
            if _folds(pair_sims, fine, features, layout).any():
                continue
            folded = sum(bool(_folds(f, fine, features, layout).all()) for f in family_sims)  # every variant folds
            if folded > best:
                best, cells = folded, []
            if folded == best:
                cells.append((float(features), float(layout)))
    centre = np.mean(cells, axis=0)
    features, layout = min(cells, key=lambda c: (c[0] - centre[0]) ** 2 + (c[1] - centre[1]) ** 2)
    return FoldRule(round(fine, 3), features, layout)


def _folds(sims: np.ndarray, fine: float, features: float, layout: float) -> np.ndarray:
    """FoldRule.matches on precomputed (fine, features, layout) similarities, one row per pair."""
    return (sims[:, 0] >= fine) | ((sims[:, 1] >= features) & (sims[:, 2] >= layout))


def report(model: str, root: Path, refresh: bool) -> str:
    import models

    bundle = models.create(model)
    families, pairs = read_families(root), read_pairs(root)
    paths = sorted({p for f in families for p in f.members.values()} | {p for *_, a, b in pairs for p in (a, b)})
    vectors = load_vectors(bundle, root, paths, refresh)
    by_split = {s: ([f for f in families if f.split == s], [p for p in pairs if p[0] == s]) for s in SPLITS}
    hashes = {p: as_unit_hash(v) for p, v in vectors["dhash"].items()}
    spaces = {  # name -> (vector of a path, fit on dev)
        "text-aligned": (vectors["text-aligned"].__getitem__, fit_threshold),
        "dhash": (hashes.__getitem__, fit_threshold),
        "visual: features only": (lambda p: features_only(vectors["visual"][p]), fit_threshold),
        "visual: fold rule": (vectors["visual"].__getitem__, fit_rule),
    }
    lines = [f"near-duplicate folding, {model} ({bundle.image_tower_id}); photo set {root}",
             f"families: {len(by_split['dev'][0])} dev / {len(by_split['heldout'][0])} held-out "
             f"(original + {', '.join(KINDS)}); distinct same-class pairs: {len(by_split['dev'][1])} dev / "
             f"{len(by_split['heldout'][1])} held-out", ""]
    header = (f"{'space':22} {'split':8} {'families folded':>16} {'distinct pairs folded':>22} {'photos':>7}  "
              + "  ".join(f"{k:>9}" for k in KINDS) + "   fitted on dev")
    lines += [header, "-" * len(header)]
    chosen = {}
    for name, (vector, fit) in spaces.items():
        rule = chosen[name] = fit(*by_split["dev"], vector)
        for split in SPLITS:
            st = side_stats(*by_split[split], vector, rule)
            kinds = "  ".join(f"{f:>4}/{n:<4}" for f, n in (st.kinds[k] for k in KINDS))
            shown = f"{rule:.3f}" if isinstance(rule, float) else str(rule).replace("FoldRule", "")
            lines.append(f"{name:22} {split:8} {st.folded:>7} of {st.families:<6} {st.pairs_folded:>10} of "
                         f"{st.pairs:<9} {st.photos_folded:>7}  {kinds}   {shown if split == 'dev' else ''}")
    lines += ["", "dhash thresholds are cosines of the +-1 bit encoding (1 - 2 x Hamming share).",
              f"search.dedupe.DEFAULT_RULE = {chosen['visual: fold rule']}"]
    return "\n".join(lines)


def as_unit_hash(bits: np.ndarray) -> np.ndarray:
    """dhash bits as a unit vector whose cosine is 1 - 2 x (share of differing bits)."""
    return (bits.astype(np.float32) * 2 - 1) / np.sqrt(len(bits))


def photoset_main(prog: str, doc: str, report_fn, argv: list[str] | None = None) -> int:
    """The command line of the benches that embed photo-set photos (this one, bench.like_fit): `--model`, `--dir`,
    `--refresh`; prints `report_fn(model, root, refresh)`."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    parser.add_argument("--model", default="offline-lite")
    parser.add_argument("--dir", type=Path, help="photo set folder (default: bench.data.photoset.default_dir())")
    parser.add_argument("--refresh", action="store_true", help="recompute the cached vectors")
    args = parser.parse_args(argv)
    from bench.data import photoset

    root = (args.dir or photoset.default_dir()).expanduser()
    photoset.materialize(root, download=False)  # reuses an intact copy; writes what is missing
    print(report_fn(args.model, root, args.refresh))
    return 0


def main(argv: list[str] | None = None) -> int:
    return photoset_main("python -m bench.dedupe_fit", __doc__, report, argv)


if __name__ == "__main__":
    sys.exit(main())
