"""offline-lite on real photos, dev and held-out side by side: text→image, image→text and broad-query recall.

    python bench/offline_eval.py [--photoset DIR] [--model NAME=PRESET_OR_DIR ...] [--no-v1]

Data: the shared real-photo set (`bench.data.photoset`: camera-style names, a fixed-seed dev/held-out split, a
category per photo), materialised into DIR (default `$LOUPE_PHOTOSET_DIR` or ~/.cache/loupe/photoset; written on
first use). Nothing is fitted here; whatever a row's model fitted (offline-lite's head, its constants) was chosen on
dev or on data without photos, so the held-out column is the one to quote. Debian's `tuxpaint-stamps-*` are never
used.

Rows:
- `class names → class prob`: the zero-training baseline of shared/docs/environment.md (query → nearest ImageNet
  class name by MiniLM cosine → photos ranked by that class's probability, EfficientNet-Lite0 at T=2);
- `offline-lite-v1`: the first generation (1000-class image space, shipped head);
- `offline-lite-v2`: image space 2 (classes + features, WordNet concept head, shipped head, the text side's hub
  correction `HUB_STRENGTH_2`, chosen on dev by bench/hub_fit.py), photos center-cropped;
- `offline-lite`: image space 3, the same towers with the whole photo squashed into the input square (the
  preprocessing chosen on dev: models/offline_lite.py's docstring), hub correction `HUB_STRENGTH`;
- each `--model NAME=X`: any preset or saved model directory (e.g. a tuned version, or the recipe's `init`).

`--ceiling` asks how much of the broad-query gap the text side could close at all, per category that some WordNet
concept of offline-lite's hierarchy names (the query's last word is one of its lemmas): R-precision of the model's
own query; of the *oracle* query (all its concept mass on that concept, every sense of the word pooled, through the
head's own geometry: `ConceptSpace.from_concepts`); and of ranking by the photos' probability mass on the concept's
member classes (what no single cosine against the stored vectors computes). Oracle and mass see the labels' concept
choice, so they are ceilings, not results.

Columns per split: T→I R@1/5/10 (a caption's own photo among the top K; photos sharing the exact caption do not
count against each other), I→T R@5 (a photo's own caption among the top 5 of the split's distinct captions), and
broad-query R-precision: for each category with ≥ 4 photos in the split, the query "a/an <category>" (or the
category's own phrase), the share of that category's photos among the top |category| results, averaged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402

SPLITS = ("dev", "heldout")
MIN_CATEGORY = 4
# The phrase a user would type for a category (default: "a <category>", "an" before a vowel).
QUERY_FOR = {"renewable energy": "renewable energy", "space": "outer space", "body part": "a body part",
             "underwater": "underwater", "people": "people", "landscape": "a landscape", "food": "food",
             "kitchenware": "kitchenware", "school supplies": "school supplies", "texture": "a texture"}


def read_split(folder: Path, split: str) -> tuple[list[Path], list[str], list[str]]:
    """(paths, captions, categories) of one split of a materialised photoset."""
    categories = {}
    for line in (folder / "captions.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        path, _caption, category = line.split("\t")[:3]
        categories[path] = category
    paths, captions, cats = [], [], []
    for line in (folder / f"{split}.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            path, caption = line.split("\t", 1)
            paths.append(folder / path)
            captions.append(caption.strip())
            cats.append(categories.get(path, ""))
    return paths, captions, cats


def load_rgb(path: Path) -> Image.Image:
    image = Image.open(path)
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, "white")
        background.alpha_composite(image)
        image = background
    return image.convert("RGB")


def t2i_recall(scores: np.ndarray, captions: list[str], ks=(1, 5, 10)) -> dict[int, float]:
    """scores (N captions, N photos): caption i's photo is photo i."""
    n = len(scores)
    own = scores[np.arange(n), np.arange(n)][:, None]
    beats = (scores > own) | ((scores == own) & ~np.eye(n, dtype=bool))
    same_caption = np.array([[a == b for b in captions] for a in captions])
    rank = (beats & ~same_caption).sum(1)
    return {k: float((rank < k).mean() * 100) for k in ks}


def i2t_recall(text_vectors: np.ndarray, image_vectors: np.ndarray, captions: list[str], k: int = 5) -> float:
    """Each photo ranks the split's distinct captions; a hit when its own caption is among the top k."""
    distinct = list(dict.fromkeys(captions))
    index = {c: i for i, c in enumerate(distinct)}
    first = [captions.index(c) for c in distinct]
    scores = image_vectors @ text_vectors[first].T  # (photos, distinct captions)
    own = scores[np.arange(len(captions)), [index[c] for c in captions]][:, None]
    rank = (scores > own).sum(1)
    return float((rank < k).mean() * 100)


def broad_precision(scores: np.ndarray, categories: list[str], queries: list[str]) -> dict[str, float]:
    """R-precision per category query (scores: (queries, photos))."""
    out = {}
    for query, row in zip(queries, scores, strict=True):
        category = query_category[query]
        members = {i for i, c in enumerate(categories) if c == category}
        top = np.argsort(-row, kind="stable")[:len(members)]
        out[category] = 100 * len(members & set(top.tolist())) / len(members)
    return out


query_category: dict[str, str] = {}


def category_queries(categories: list[str]) -> list[str]:
    counts = {c: categories.count(c) for c in set(categories) if c}
    queries = []
    for category in sorted(c for c, n in counts.items() if n >= MIN_CATEGORY):
        query = QUERY_FOR.get(category, f"{'an' if category[0] in 'aeiou' else 'a'} {category}")
        query_category[query] = category
        queries.append(query)
    return queries


@torch.inference_mode()
def encode_images(bundle, paths: list[Path], batch: int = 32) -> np.ndarray:
    out = []
    for i in range(0, len(paths), batch):
        pixels = torch.stack([bundle.preprocess(load_rgb(p)) for p in paths[i:i + batch]])
        out.append(bundle.model.encode_images(pixels).cpu())
    return torch.cat(out).numpy()


@torch.inference_mode()
def encode_texts(bundle, texts: list[str], batch: int = 256) -> np.ndarray:
    return torch.cat([bundle.model.encode_texts(texts[i:i + batch]).cpu() for i in range(0, len(texts), batch)]).numpy()


def class_name_scores(v1_bundle, image_vectors: np.ndarray, texts: list[str]) -> np.ndarray:
    """The zero-training baseline on generation 1's vectors (whose squares are class probabilities)."""
    from models.recipes.imagenet_text import class_descriptions, synonyms
    from models.recipes.offline_lite import pooled_features

    probs = image_vectors.astype(np.float64) ** 2
    queries = pooled_features(v1_bundle.model, texts).numpy()
    names = pooled_features(v1_bundle.model, [synonyms(d)[0] for d in class_descriptions()]).numpy()
    return probs[:, (queries @ names.T).argmax(1)].T


def concept_members(query: str, concepts: list[dict]) -> tuple[list[int], list[int]] | None:
    """(concept indices, their pooled member classes) of the offline-lite `concepts` (`read_concepts`) whose lemma
    is `query`'s last word (or its singular), None when no concept names it."""
    from models.recipes.imagenet_text import synonyms

    word = query.lower().split()[-1]
    for form in (word, word[:-1] if word.endswith("s") else word):
        hits = [k for k, c in enumerate(concepts) if form in (w.lower() for w in synonyms(c["text"]))]
        if hits:
            return hits, sorted({m for k in hits for m in concepts[k]["members"]})
    return None


@torch.inference_mode()
def ceiling(bundle, images: np.ndarray, categories: list[str], queries: list[str], model: dict[str, float]
            ) -> dict[str, tuple]:
    """{category: (photos, model, oracle concept, member mass)} R-precision %, for categories a concept names;
    `model` is the model's own broad-query R-precision per category (`broad_precision`)."""
    from models.offline_lite import CLASS_WEIGHT, CLASSES, read_concepts

    head = bundle.model.text_tower.head[0]
    concepts = read_concepts()["concepts"]
    probs = np.clip(images[:, :CLASSES] / CLASS_WEIGHT, 0, None) ** 2  # the class part is CLASS_WEIGHT·sqrt(p)
    probs /= probs.sum(1, keepdims=True)
    out = {}
    for query in queries:
        found = concept_members(query, concepts)
        if found is None:
            continue
        hits, members = found
        q = torch.zeros(1, head.mix.shape[0])
        q[0, hits] = 1.0 / len(hits)
        oracle = head.from_concepts(q).numpy()[0] @ images.T
        mass = probs[:, members].sum(1)
        category = query_category[query]
        out[category] = (categories.count(category), model[category],
                         broad_precision(oracle[None], categories, [query])[category],
                         broad_precision(mass[None], categories, [query])[category])
    return out


def evaluate(scores_t2i, text_vectors, image_vectors, captions, categories, broad_scores) -> dict:
    r = t2i_recall(scores_t2i, captions)
    row = {"R@1": r[1], "R@5": r[5], "R@10": r[10], "broad": broad_scores}
    row["I→T R@5"] = i2t_recall(text_vectors, image_vectors, captions) if text_vectors is not None else None
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photoset", type=Path, help="materialised photoset folder (default: bench.data.photoset's)")
    parser.add_argument("--model", nargs="*", default=[], metavar="NAME=MODEL",
                        help="more rows: a preset or a saved model directory")
    parser.add_argument("--no-v1", action="store_true", help="skip the generation-1 row (and the baseline)")
    parser.add_argument("--no-v2", action="store_true", help="skip the image-space-2 (center crop) row")
    parser.add_argument("--no-shipped", action="store_true", help="skip the shipped `offline-lite` row")
    parser.add_argument("--per-category", action="store_true", help="also print broad-query R-precision per category")
    parser.add_argument("--ceiling", action="store_true",
                        help="also print, for the shipped offline-lite, the broad-query ceilings (module docstring)")
    args = parser.parse_args(argv)
    from bench.data import photoset

    folder = args.photoset or photoset.default_dir()
    if not (folder / "heldout.tsv").is_file():
        photoset.materialize(folder)
    torch.manual_seed(0)
    rows: list[tuple[str, str]] = ([] if args.no_v1 else [("offline-lite-v1", "offline-lite-v1")])
    rows += [] if args.no_v2 else [("offline-lite-v2", "offline-lite-v2")]
    rows += [] if args.no_shipped else [("offline-lite", "offline-lite")]
    rows += [tuple(spec.split("=", 1)) for spec in args.model]
    data = {s: read_split(folder, s) for s in SPLITS}
    table: dict[str, dict[str, dict]] = {}
    image_cache: dict[str, dict[str, np.ndarray]] = {}
    ceilings: dict[str, dict[str, tuple]] = {}
    for name, model in rows:
        bundle = models.create(model, device="cpu")
        bundle.model.eval()
        for split, (paths, captions, categories) in data.items():
            queries = category_queries(categories)
            tower = bundle.image_tower_id
            if split not in image_cache.setdefault(tower, {}):
                image_cache[tower][split] = encode_images(bundle, paths)
            images = image_cache[tower][split]
            texts = encode_texts(bundle, captions)
            broad = broad_precision(encode_texts(bundle, queries) @ images.T, categories, queries)
            table.setdefault(name, {})[split] = evaluate(texts @ images.T, texts, images, captions, categories, broad)
            if args.ceiling and name == "offline-lite":
                ceilings[split] = ceiling(bundle, images, categories, queries, broad)
            if name == "offline-lite-v1":
                baseline_t2i = class_name_scores(bundle, images, captions)
                baseline_broad = broad_precision(class_name_scores(bundle, images, queries), categories, queries)
                table.setdefault("class names → class prob", {})[split] = evaluate(
                    baseline_t2i, None, images, captions, categories, baseline_broad)
        print(f"{name}: {model} (image tower {bundle.image_tower_id}, {bundle.dim}-d)", file=sys.stderr)
    order = ["class names → class prob"] + [n for n, _ in rows]
    sizes = ", ".join(f"{s} {len(d[0])} photos" for s, d in data.items())
    print(f"offline-lite on the real-photo set ({sizes}; {folder}). T→I R@1 / R@5 / R@10, I→T R@5, broad-query "
          f"R-precision (mean over categories with ≥ {MIN_CATEGORY} photos), %\n")
    print("| model | " + " | ".join(f"{s}: T→I R@1/5/10 | {s}: I→T R@5 | {s}: broad" for s in SPLITS) + " |")
    print("|---|" + "---|---|---|" * len(SPLITS))
    for name in order:
        if name not in table:
            continue
        cells = []
        for split in SPLITS:
            row = table[name][split]
            cells.append(f"{row['R@1']:.1f} / {row['R@5']:.1f} / {row['R@10']:.1f}")
            cells.append("-" if row["I→T R@5"] is None else f"{row['I→T R@5']:.1f}")
            cells.append(f"{np.mean(list(row['broad'].values())):.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.per_category:
        for split in SPLITS:
            print(f"\nbroad queries, {split} (R-precision %):")
            for name in order:
                if name in table:
                    print(f"  {name}: " + ", ".join(f"{c} {v:.0f}" for c, v in table[name][split]["broad"].items()))

    if ceilings:
        print("\nbroad-query ceilings, offline-lite (R-precision %; oracle and mass are ceilings: module docstring)\n")
        print("| category | " + " | ".join(f"{s}: photos | {s}: model | {s}: oracle concept | {s}: member mass"
                                         for s in SPLITS) + " |")
        print("|---|" + "---|---|---|---|" * len(SPLITS))
        for category in sorted(set().union(*(c.keys() for c in ceilings.values()))):
            cells = []
            for split in SPLITS:
                n, *values = ceilings[split].get(category, (0, None, None, None))
                cells += [str(n)] + ["-" if v is None else f"{v:.0f}" for v in values]
            print(f"| {category} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
