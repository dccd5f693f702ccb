"""The honest quality table: what a user of a preset gets on photos nobody tuned on, dev and held-out side by side.

    python -m bench.quality [--model offline-lite] [--work DIR] [--ship] [--skip-tags]

Everything runs through the product: each split's photos (plus generated near-duplicate families) are written to a
folder, indexed by the real indexer (`IndexerService`) into a fresh data home, and queried with the real
`SearchEngine` (default answer, default duplicate folding) and the real tagger (`search.tag.FolderTagger`). The
relevance constants are first fitted on the **dev** split with `python -m models.evaluate calibrate` (and the tag
policy with `models.tagging.fit_policy` on the dev photos' tag labels); nothing is fitted on held-out. `--ship`
writes both fits to models/data/relevance/<model>.json and models/data/tagging/<model>.json — that is how the
shipped constants are refitted after a model change.

Data: bench.data.photoset when present (the shared captioned set with categories, near-duplicate families and
absent-concept queries), else bench.data.realphotos (dev_captions.tsv = dev, eval_captions.tsv = held-out) with
families generated here and categories read from the GCompris folders. Rows (issue 11):

- T→I R@1/5/10: each caption's own photo in the engine's top k (search.evaluate.engine_recall);
- flag precision (strict): of the results flagged good for a caption, share that are the captioned photo itself (or
  one of its generated variants); (subject): share that show the caption's subject (same caption);
- flag recall: of the captions whose photo is in the top 10, share where it is flagged good;
- nonsense: absent-concept queries with ≥ 1 good match;
- skewed library: a library where one category is most photos; share of that category's photos flagged good for
  the broad query ("an animal"); tiny library: 5 photos of a subject among 20, share of them flagged good;
- "more like this" P@5: share of the 5 first neighbours of a photo (the engine's default answer to `--like`,
  closest first) that show its subject, over photos whose subject has other photos; and share of those queries with
  ≥ 1 neighbour flagged good;
- dup families folded: families (original, 50% resize, JPEG q60, 4% crop) shown as one result for the original's
  caption; distinct photos folded: pairs of different photos (not one family) folded into one result, over all
  caption queries;
- tags: precision of the tags given (a tag is right when its name or a synonym is in the photo's caption or it names
  the photo's category) and coverage (photos with ≥ 1 tag).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402

log = logging.getLogger("bench.quality")
SEED = 11
FAMILIES = 10  # near-duplicate families generated per split
TARGETS = {
    "T→I R@1": "", "T→I R@5": "", "T→I R@10": "",
    "flag precision (strict)": "≥ 25%", "flag precision (subject)": "", "flag recall (in top 10)": "≥ 45%",
    "nonsense with a good match": "≤ 2/30 (7%)", "skewed library: broad query flagged": "all",
    "tiny library: 5 of 20 flagged": "all", "more like this P@5": "", "more like this: neighbour flagged": "yes",
    "dup families folded": "≥ 18/20", "distinct photos folded": "0", "tag precision": "≥ 60%",
    "tag coverage": "≥ 50%",
}
CATEGORY_QUERIES = {"animal": "an animal", "tool": "a tool", "monument": "a monument", "fish": "a fish"}
CATEGORY_TAGS = {"animal": {"animal", "wildlife"}, "fish": {"fish", "animal", "wildlife"},
                 "tool": {"tools"}, "monument": {"monument", "architecture", "ruins", "statue"}}
ABSENT = (
    "a spreadsheet", "the French revolution", "a QR code", "a tax return form", "a screenshot of a chat",
    "a bar chart", "the theory of relativity", "a musical score", "a crossword puzzle", "qwzx blorf vreep",
    "a wedding dress", "a traffic jam", "a birthday party", "a hospital corridor", "a subway map", "an invoice",
    "a keyboard shortcut", "a passport photo", "a football stadium", "a snowboarder", "a nightclub", "a courtroom",
    "a chess tournament", "a laptop with code on the screen", "the stock market", "a pizza delivery",
    "a yoga class", "a ballet dancer", "a firework display", "a rainy street at night", "a pie chart",
    "a parking ticket", "an email inbox", "a tennis match", "a wedding cake", "a karaoke bar", "a sushi platter",
    "a newborn baby", "a graduation ceremony", "a video game controller", "a bank statement", "a barcode",
    "a weather forecast map", "a power point slide", "an x-ray of a hand", "a heart rate monitor",
    "a crowded beach", "a rock concert", "a protest march", "a ski lift", "a hot air balloon", "a taxi at night",
    "a handwritten letter", "a family dinner", "a selfie in a mirror", "a playground slide", "a traffic light",
    "a vending machine", "a pharmacy shelf", "a cocktail glass",
)


@dataclass
class Photo:
    key: str
    path: Path
    caption: str
    category: str
    family: str  # the original's key for generated variants; own key otherwise


@dataclass
class Split:
    name: str
    photos: list[Photo] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    @property
    def originals(self) -> list[Photo]:
        return [p for p in self.photos if p.family == p.key]


# -- data -------------------------------------------------------------------------------------------------------


def category_of(key: str, caption: str) -> str:
    text = f"{key} {caption}".lower()
    if "fish" in caption.lower():
        return "fish"
    if "animals" in text or "/erase/" in text:
        return "animal"
    if "/tools/" in text:
        return "tool"
    if "explore_monuments" in text:
        return "monument"
    return "other"


def build_splits(work: Path) -> list[Split]:
    """dev and held-out photos on disk, with generated near-duplicate families and absent-concept queries."""
    from bench.data.realphotos import materialize, read_list

    root = work / "photos"
    written = materialize(root, sets=("dev", "eval"), download=False)
    rng = np.random.default_rng(SEED)
    absent = list(ABSENT)
    rng.shuffle(absent)
    splits = []
    for number, (name, list_name) in enumerate((("dev", "dev"), ("heldout", "eval"))):
        split = Split(name, absent=sorted(absent[number::2]))
        for photo in read_list(list_name):
            split.photos.append(Photo(photo.key, written[photo.key], photo.caption,
                                      category_of(photo.key, photo.caption), photo.key))
        chosen = rng.choice(len(split.photos), min(FAMILIES, len(split.photos)), replace=False)
        for index in sorted(chosen):
            split.photos += variants(split.photos[index], work / "variants" / name)
        splits.append(split)
    return splits


def variants(photo: Photo, folder: Path) -> list[Photo]:
    """A 50% resize, a JPEG q60 re-encode and a 4% crop of `photo`: what "the same picture" looks like on disk."""
    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"\W+", "_", photo.key)[-60:]
    with Image.open(photo.path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    width, height = image.size
    made = {
        "half": image.resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.LANCZOS),
        "q60": image,
        "crop": image.crop((int(width * 0.02), int(height * 0.02), int(width * 0.98), int(height * 0.98))),
    }
    out = []
    for kind, picture in made.items():
        path = folder / f"IMG_{abs(hash((stem, kind))) % 10**4:04d}_{kind}_{stem}.jpg"
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=60 if kind == "q60" else 92)
        path.write_bytes(buffer.getvalue())
        out.append(Photo(f"{photo.key}#{kind}", path, photo.caption, photo.category, photo.key))
    return out


# -- indexing and fitting ------------------------------------------------------------------------------------------


def index(folder: Path, home: Path, model: str) -> None:
    from indexer.owner.service import IndexerService
    from indexer.settings import IndexerSettings

    service = IndexerService(IndexerSettings.from_env(home=home, roots=(folder,), model=model, workers=1))
    try:
        report = service.scan()
        log.info("indexed %s: %s", folder, report)
    finally:
        service.close()


def link_library(photos: list[Photo], folder: Path) -> dict[str, Photo]:
    """Hard links (or copies) of `photos` in one folder; {path: photo}."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for number, photo in enumerate(photos):
        target = folder / f"{number:04d}_{photo.path.name}"
        if not target.exists():
            try:
                target.hardlink_to(photo.path)
            except OSError:
                shutil.copyfile(photo.path, target)
        out[str(target.resolve())] = photo
    return out


def fit_relevance(split: Split, work: Path, model: str) -> Path:
    """models.evaluate calibrate on the dev originals; returns the constants file."""
    from models.evaluate.cli import main as evaluate

    captions = work / "fit" / "dev_captions.tsv"
    captions.parent.mkdir(parents=True, exist_ok=True)
    captions.write_text("".join(f"{p.path}\t{p.caption}\n" for p in split.originals), encoding="utf-8")
    absent = work / "fit" / "dev_absent.txt"
    absent.write_text("\n".join(split.absent) + "\n", encoding="utf-8")
    out = work / "fit" / "relevance.json"
    code = evaluate(["calibrate", str(captions), "--images-root", "/", "--absent", str(absent), "--model", model,
                     "--out", str(out), "--workers", "1", "--no-progress"])
    if code:
        raise SystemExit(f"calibrate failed ({code})")
    return out


# -- measuring -----------------------------------------------------------------------------------------------------


class Library:
    """One indexed library (data home) and the engine over it."""

    def __init__(self, name: str, photos: list[Photo], work: Path, model: str, constants: Path):
        from models.relevance import constants_path
        from search.backend import LocalBackend
        from search.engine import SearchEngine

        self.home = work / "homes" / name
        self.by_path = link_library(photos, work / "libraries" / name)
        if not self.home.exists():
            index(work / "libraries" / name, self.home, model)
        self.backend = LocalBackend(self.home)
        target = constants_path(self.home, self.backend.collection.image_tower_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(constants, target)
        self.engine = SearchEngine(self.backend)

    def search(self, text: str | None = None, like: Path | None = None, **options):
        from search.query import build_query

        query = build_query(text, like=[like] if like else [])
        return self.engine.search(query, **options)

    def photo(self, result) -> Photo | None:
        for path in result.paths:
            found = self.photo_for(path)
            if found:
                return found
        return None

    def photo_for(self, path: str) -> Photo | None:
        return self.by_path.get(str(Path(path).resolve()))

    def close(self) -> None:
        self.engine.close()


def measure_search(lib: Library, split: Split) -> dict:
    from search.evaluate import engine_recall

    originals = [p for p in lib.by_path.values() if p.family == p.key]
    paths = {p.key: path for path, p in lib.by_path.items()}
    recall = engine_recall(lib.engine, [Path(paths[p.key]) for p in originals], [p.caption for p in originals],
                           list(range(len(originals))))["text_to_image"]
    flagged = strict = subject = in_top = found = 0
    folded_distinct: set[frozenset] = set()
    families_folded, families_seen = 0, 0
    family_members = defaultdict(set)
    for p in lib.by_path.values():
        family_members[p.family].add(p.key)
    for photo in originals:
        ranked = lib.search(photo.caption, limit=10, min_score=0.0, collapse_duplicates=False).results
        keys = [lib.photo(r).key if lib.photo(r) else "" for r in ranked]
        if photo.key in keys:
            in_top += 1
            found += ranked[keys.index(photo.key)].relevant
        for result in ranked:
            if result.relevant:
                other = lib.photo(result)
                flagged += 1
                strict += other is not None and other.family == photo.key
                subject += other is not None and other.caption == photo.caption
        page = lib.search(photo.caption, limit=20, min_score=0.0)
        for result in page.results:
            members = [lib.photo(r) for r in [result]] + [lib.by_path.get(str(Path(d).resolve())) for d in
                                                          result.duplicates]
            families = {m.family for m in members if m is not None}
            if len(families) > 1:
                folded_distinct.update(frozenset(pair) for pair in _pairs(sorted(families)))
        if len(family_members[photo.key]) > 1:
            families_seen += 1
            holders = [r for r in page.results if photo.key in {m.family for m in
                       [lib.photo(r)] + [lib.by_path.get(str(Path(d).resolve())) for d in r.duplicates] if m}]
            families_folded += len(holders) == 1 and _family_size(lib, holders[0], photo.key) == \
                len(family_members[photo.key])
    nonsense = sum(1 for q in split.absent if not lib.search(q, limit=10).no_good_match)
    return {
        "T→I R@1": recall["R@1"], "T→I R@5": recall["R@5"], "T→I R@10": recall["R@10"],
        "flag precision (strict)": _ratio(strict, flagged), "flag precision (subject)": _ratio(subject, flagged),
        "flag recall (in top 10)": _ratio(found, in_top),
        "nonsense with a good match": _ratio(nonsense, len(split.absent)),
        "dup families folded": _ratio(families_folded, families_seen),
        "distinct photos folded": (len(folded_distinct), None),
        "more like this P@5": None, "more like this: neighbour flagged": None,
    } | measure_like(lib, originals)


def measure_like(lib: Library, originals: list[Photo]) -> dict:
    by_caption = defaultdict(list)
    for p in originals:
        by_caption[p.caption].append(p)
    paths = {p.key: path for path, p in lib.by_path.items()}
    queries = [p for p in originals if len(by_caption[p.caption]) > 1]
    if not queries:  # every subject unique: the neighbours to expect are the photo's own category
        queries = [p for p in originals if p.category != "other"]
        same = lambda a, b: a.category == b.category  # noqa: E731
    else:
        same = lambda a, b: a.caption == b.caption  # noqa: E731
    right = shown = flagged_any = 0
    for photo in queries:
        page = lib.search(like=Path(paths[photo.key]), limit=5, min_score=0.0)
        others = [(lib.photo(r), r) for r in page.results]
        right += sum(1 for other, _ in others if other is not None and other.family != photo.key and same(other, photo))
        shown += len(others)
        flagged_any += any(r.relevant and o is not None and same(o, photo) for o, r in others)
    return {"more like this P@5": _ratio(right, shown), "more like this: neighbour flagged":
            _ratio(flagged_any, len(queries))}


def measure_small_libraries(split: Split, work: Path, model: str, constants: Path) -> dict:
    """Skewed library (the split's largest category is most of it) and tiny library (5 of one subject in 20)."""
    rng = np.random.default_rng(SEED)
    originals = split.originals
    by_category = defaultdict(list)
    for p in originals:
        if p.category != "other":
            by_category[p.category].append(p)
    out = {}
    category = max(by_category, key=lambda c: len(by_category[c]))
    members = by_category[category]
    others = [p for p in originals if p.category != category]
    rest = [others[i] for i in rng.choice(len(others), min(len(others), max(5, len(members) // 3)), replace=False)]
    lib = Library(f"{split.name}-skewed", members + rest, work, model, constants)
    try:
        page = lib.search(CATEGORY_QUERIES.get(category, category), limit=len(members) + len(rest))
        hit = sum(1 for r in page.results if r.relevant and lib.photo(r) and lib.photo(r).category == category)
        out["skewed library: broad query flagged"] = _ratio(hit, len(members))
        out["_skewed"] = f"{CATEGORY_QUERIES.get(category, category)!r}: {len(members)} of {len(members) + len(rest)}"
    finally:
        lib.close()
    subject_groups = defaultdict(list)
    for p in originals:
        subject_groups[p.caption].append(p)
    subject = max(subject_groups, key=lambda c: len(subject_groups[c]))
    if len(subject_groups[subject]) >= 5:
        five, query = subject_groups[subject][:5], subject
    else:  # held-out captions are unique: five photos of one category, queried by the category
        five, query = by_category[category][:5], CATEGORY_QUERIES.get(category, category)
    pool = [p for p in originals if p not in five and p.category != five[0].category]
    fifteen = [pool[i] for i in rng.choice(len(pool), 15, replace=False)]
    lib = Library(f"{split.name}-tiny", five + fifteen, work, model, constants)
    try:
        page = lib.search(query, limit=20)
        keys = {p.key for p in five}
        hit = sum(1 for r in page.results if r.relevant and lib.photo(r) and lib.photo(r).key in keys)
        out["tiny library: 5 of 20 flagged"] = _ratio(hit, 5)
        out["_tiny"] = f"{query!r}"
    finally:
        lib.close()
    return out


def tag_labels(names: tuple[str, ...], synonyms: dict[str, tuple[str, ...]], photo: Photo) -> np.ndarray:
    """(T,) whether each tag is right for the photo: its name or a synonym in the caption, or its category's."""
    words = " " + re.sub(r"[^a-z ]", " ", photo.caption.lower()) + " "
    right = CATEGORY_TAGS.get(photo.category, set())
    out = np.zeros(len(names), bool)
    for i, name in enumerate(names):
        terms = (name, *synonyms.get(name, ()))
        out[i] = name in right or any(f" {_stem(t)} " in f" {' '.join(_stem(w) for w in words.split())} "
                                      for t in terms)
    return out


def _stem(text: str) -> str:
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in text.lower().split())


def tag_run(lib: Library, policy=None):
    """(classifier, photos [(Photo, vector)]) for the library, calibrated on it as `search.tag` does."""
    from models.tagging import Vocabulary
    from search.tag import FolderTagger

    tagger = FolderTagger(lib.backend, lib.backend.catalog)
    vocabulary = Vocabulary.load()
    classifier = tagger.build(vocabulary)
    if policy is not None:
        classifier = classifier.with_policy(policy)
    photos = []
    for point in lib.backend.store.scroll(lib.backend.collection.name, with_vectors=True):
        photo = next((lib.photo_for(p) for p in point.payload.get("paths", []) if lib.photo_for(p)), None)
        if photo is not None and photo.family == photo.key:
            photos.append((photo, np.asarray(point.vector, np.float32)))
    synonyms = {t.name: t.synonyms for t in vocabulary.tags}
    return classifier, photos, synonyms


def measure_tags(lib: Library, policy) -> dict:
    classifier, photos, synonyms = tag_run(lib, policy)
    assigned = classifier.assign(np.stack([v for _, v in photos]))
    given = right = tagged = 0
    for (photo, _), tags in zip(photos, assigned, strict=True):
        labels = tag_labels(classifier.names, synonyms, photo)
        given += len(tags)
        right += sum(labels[classifier.names.index(t)] for t in tags)
        tagged += bool(tags)
    return {"tag precision": _ratio(right, given), "tag coverage": _ratio(tagged, len(photos))}


def fit_tags(lib: Library, model: str):
    from models.tagging import fit_policy

    classifier, photos, synonyms = tag_run(lib)
    vectors = np.stack([v for _, v in photos])
    labels = np.stack([tag_labels(classifier.names, synonyms, p) for p, _ in photos])
    return fit_policy(classifier.probabilities(vectors), labels, classifier.names, model=model,
                      fitted_on=f"bench.quality dev split: {len(photos)} photos")


# -- table ---------------------------------------------------------------------------------------------------------


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(items) for b in items[i + 1:]]


def _family_size(lib: Library, result, family: str) -> int:
    members = [lib.photo(result)] + [lib.by_path.get(str(Path(d).resolve())) for d in result.duplicates]
    return sum(1 for m in members if m is not None and m.family == family)


def _ratio(numerator: int, denominator: int) -> tuple[int, int]:
    return (int(numerator), int(denominator))


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.1%}"
    numerator, denominator = value
    if denominator is None:
        return str(numerator)
    return f"{numerator}/{denominator} ({numerator / denominator:.0%})" if denominator else "n/a"


def render(results: dict[str, dict], model: str) -> str:
    rows = [f"quality · {model} · dev (fitted on) vs held-out (never fitted on)", "",
            f"| {'measure':38} | {'dev':18} | {'held-out':18} | {'target':12} |",
            f"|{'-' * 40}|{'-' * 20}|{'-' * 20}|{'-' * 14}|"]
    for name, target in TARGETS.items():
        cells = [_cell(results[s].get(name)) for s in ("dev", "heldout")]
        rows.append(f"| {name:38} | {cells[0]:18} | {cells[1]:18} | {target:12} |")
    notes = [f"{s}: skewed {results[s].get('_skewed', '')}, tiny {results[s].get('_tiny', '')}"
             for s in ("dev", "heldout")]
    return "\n".join(rows + [""] + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="offline-lite", help="preset (or saved-model folder) to measure")
    parser.add_argument("--work", type=Path, help="working folder (kept; default: a temporary one, removed)")
    parser.add_argument("--ship", action="store_true", help="write the dev fits to models/data/{relevance,tagging}")
    parser.add_argument("--skip-tags", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="loupe-quality-"))
    try:
        splits = build_splits(work)
        constants = fit_relevance(splits[0], work, args.model)
        results, policy = {}, None
        for split in splits:
            lib = Library(split.name, split.photos, work, args.model, constants)
            try:
                results[split.name] = measure_search(lib, split)
                if not args.skip_tags:
                    if policy is None:
                        policy = fit_tags(lib, args.model)  # dev comes first
                    results[split.name] |= measure_tags(lib, policy)
            finally:
                lib.close()
            results[split.name] |= measure_small_libraries(split, work, args.model, constants)
        if args.ship:
            safe = re.sub(r"[^\w.-]", "_", args.model)
            shutil.copyfile(constants, ROOT / "models" / "data" / "relevance" / f"{safe}.json")
            if policy is not None:
                target = ROOT / "models" / "data" / "tagging" / f"{safe}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(policy.to_json(), encoding="utf-8")
        fitted = json.loads(constants.read_text(encoding="utf-8"))
        print(json.dumps(results, indent=2, default=list) if args.json else render(results, args.model))
        print(f"\nrelevance constants (dev fit): text {fitted['text']}, image {fitted['image']}")
        if policy is not None:
            print(f"tag policy (dev fit): P ≥ {policy.threshold}, ≤ {policy.max_tags} tags, "
                  f"{len(policy.disabled)} tags disabled")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
