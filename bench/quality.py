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
  the broad query ("an animal"); tiny libraries: for every subject that ≥ 5 captions share as their head noun,
  5 photos of it among 20 queried by the subject: libraries with all 5 flagged good, subject photos flagged, and
  other photos flagged;
- "more like this" P@5: share of the 5 first neighbours of a photo (the engine's default answer to `--like`,
  closest first) that show its subject, over photos whose subject has other photos; and share of those queries with
  ≥ 1 neighbour flagged good;
- dup families folded: of the families (original, 50% resize, JPEG q60, 4% crop, burst) that the original's caption
  brings into its top 20 at all, those shown as one result holding every member; distinct photos folded: pairs of
  different photos (not one family) folded into one result, over all caption queries (one photograph that the photo
  set lists under two names, `bench.dedupe_fit.SAME_PICTURE`, counts as one family);
- tags: precision of the tags given (a tag is right when its name or a synonym is in the photo's caption or it names
  the photo's category; WordNet-aware: also when it names a concept holding the caption's subject, "fish" on "a
  goldfish" — `hierarchy_labels`) and coverage (photos with ≥ 1 tag). The tag policy is fitted on the first labels.
"""

from __future__ import annotations

import argparse
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
LIKE_QUERIES = 80  # "more like this" queries per split (photos whose subject has other photos, in list order)
TARGETS = {
    "T→I R@1": "", "T→I R@5": "", "T→I R@10": "",
    "flag precision (strict)": "≥ 25%", "flag precision (subject)": "", "flag recall (in top 10)": "≥ 45%",
    "nonsense with a good match": "≤ 2/30 (7%)", "skewed library: broad query flagged": "all",
    "tiny libraries: all 5 of 20 flagged": "all", "tiny libraries: subject photos flagged": "all",
    "tiny libraries: other photos flagged": "", "more like this P@5": "", "more like this: neighbour flagged": "yes",
    "dup families folded": "≥ 18/20", "distinct photos folded": "0", "same-class pairs folded": "0",
    "tag precision": "≥ 60%", "tag precision (WordNet-aware)": "≥ 60%", "tag coverage": "≥ 50%",
}
CATEGORY_QUERIES = {"animal": "an animal", "tool": "a tool", "building": "a building"}
CATEGORY_TAGS = {"animal": {"animal", "wildlife"}, "tool": {"tools"}, "building": {"architecture"},
                 "statue": {"statue", "monument"}, "underwater": {"underwater"}, "plant": {"plant"}}
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
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # distinct same-class photos (key, key, relation)

    @property
    def originals(self) -> list[Photo]:
        return [p for p in self.photos if p.family == p.key]


# -- data -------------------------------------------------------------------------------------------------------


def build_splits(work: Path) -> list[Split]:
    """dev and held-out photos on disk (bench.data.photoset, written once under the work folder), with their
    near-duplicate families, same-class pairs and absent-concept queries."""
    from bench.data import photoset

    manifest = photoset.materialize(work / "photoset", download=False)  # a private copy: nobody rewrites it mid-run
    root = Path(manifest["out_dir"])
    files = manifest["files"]  # key (variants: key#variant) → relative path
    photos = {p.key: p for p in photoset.read_photoset()}
    sides = photoset.split(list(photos.values()))
    key_of = {rel: key for key, rel in files.items()}
    splits = []
    for side in photoset.SPLITS:
        split = Split(side, absent=[q.strip() for q in (root / f"nonsense_{side}.txt").read_text().splitlines()
                                    if q.strip()])
        for key, relative in sorted(files.items()):  # one order whether the manifest was just written or read back
            original = key.split("#", 1)[0]
            if original in photos and sides[original] == side:
                source = photos[original]
                split.photos.append(Photo(key, root / relative, source.caption, source.category, original))
        for line in (root / "same_class_pairs.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            fields = line.split("\t")
            if fields[0] == side and fields[2] in key_of and fields[3] in key_of:
                split.pairs.append((key_of[fields[2]], key_of[fields[3]], fields[1]))
        splits.append(split)
    return splits


def category_of(key: str, caption: str) -> str:
    """A photo's category from the photo set's list (tests label tags with it)."""
    from bench.data import photoset

    for photo in photoset.read_photoset():
        if photo.key == key:
            return photo.category
    return "other"


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


def fit_relevance(split: Split, work: Path, model: str, reuse: bool = False) -> Path:
    """models.evaluate calibrate on the dev originals; returns the constants file."""
    from models.evaluate.cli import main as evaluate

    captions = work / "fit" / "dev_captions.tsv"
    captions.parent.mkdir(parents=True, exist_ok=True)
    captions.write_text("".join(f"{p.path}\t{p.caption}\n" for p in split.originals), encoding="utf-8")
    absent = work / "fit" / "dev_absent.txt"
    absent.write_text("\n".join(split.absent) + "\n", encoding="utf-8")
    out = work / "fit" / "relevance.json"
    if out.is_file() and reuse:
        return out
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
        encode, memo = self.backend.encode_texts, {}
        # the same caption is searched several times (flags, folding): encode each prompt list once
        self.backend.encode_texts = lambda texts: memo[tuple(texts)] if tuple(texts) in memo else \
            memo.setdefault(tuple(texts), encode(texts))
        target = constants_path(self.home, self.backend.collection.image_tower_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(constants, target)
        self.engine = SearchEngine(self.backend)
        # the reference photos' vectors depend on the image tower only: embed them once for all the bench's homes
        shared = work / "reference-cache"
        (self.home / "cache").mkdir(parents=True, exist_ok=True)
        for cached in shared.glob("reference-*.npy"):
            if not (self.home / "cache" / cached.name).exists():
                shutil.copyfile(cached, self.home / "cache" / cached.name)
        self.engine.calibrator()
        shared.mkdir(exist_ok=True)
        for cached in (self.home / "cache").glob("reference-*.npy"):
            shutil.copyfile(cached, shared / cached.name)

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
    folded_keys: set[frozenset] = set()
    families_folded, families_seen = 0, 0
    family_members = defaultdict(set)  # keyed by the canonical family: a same-picture twin belongs to it
    for p in lib.by_path.values():
        family_members[_canon(p.family)].add(p.key)
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
            families = {_canon(m.family) for m in members if m is not None}
            if len(families) > 1:
                folded_distinct.update(frozenset(pair) for pair in _pairs(sorted(families)))
            folded_keys.update(frozenset(pair) for pair in _pairs(sorted(m.key for m in members if m)))
        family = _canon(photo.key)
        holders = [r for r in page.results if family in {_canon(m.family) for m in
                   [lib.photo(r)] + [lib.by_path.get(str(Path(d).resolve())) for d in r.duplicates] if m}]
        # a family its caption does not bring up says nothing; a twin's own query is its family's
        if len(family_members[family]) > 1 and holders and family == photo.key:
            families_seen += 1
            families_folded += len(holders) == 1 and _family_size(lib, holders[0], family) == \
                len(family_members[family])
    nonsense = sum(1 for q in split.absent if not lib.search(q, limit=10).no_good_match)
    return {
        "T→I R@1": recall["R@1"], "T→I R@5": recall["R@5"], "T→I R@10": recall["R@10"],
        "flag precision (strict)": _ratio(strict, flagged), "flag precision (subject)": _ratio(subject, flagged),
        "flag recall (in top 10)": _ratio(found, in_top),
        "nonsense with a good match": _ratio(nonsense, len(split.absent)),
        "dup families folded": _ratio(families_folded, families_seen),
        "distinct photos folded": (len(folded_distinct), None),
        "same-class pairs folded": _ratio(sum(frozenset((a, b)) in folded_keys for a, b, _ in split.pairs),
                                          len(split.pairs)),
        "more like this P@5": None, "more like this: neighbour flagged": None,
    } | measure_like(lib, originals)


def measure_like(lib: Library, originals: list[Photo]) -> dict:
    by_caption = defaultdict(list)
    for p in originals:
        by_caption[p.caption].append(p)
    paths = {p.key: path for path, p in lib.by_path.items()}
    queries = [p for p in originals if len(by_caption[p.caption]) > 1][:LIKE_QUERIES]
    if not queries:  # every subject unique: the neighbours to expect are the photo's own category
        queries = [p for p in originals if p.category != "other"][:LIKE_QUERIES]
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
    """Skewed library (bench.data.photoset.skewed_library: animals ≥ 60%) queried "an animal", and tiny libraries
    (photoset.tiny_library: 20 photos, 5 sharing a subject), one per subject that ≥ 5 captions share as their head
    noun, each queried by the subject as a user would type it (photoset.shared_subject: 'wind turbine')."""
    from bench.data import photoset

    mine = {p.key: p for p in split.originals}
    source = [p for p in photoset.read_photoset() if p.key in mine]
    out = {}
    skewed = [mine[p.key] for p in photoset.skewed_library(source, category="animal")]
    lib = Library(f"{split.name}-skewed", skewed, work, model, constants)
    try:
        animals = [p for p in skewed if p.category == "animal"]
        page = lib.search("an animal", limit=len(skewed), collapse_duplicates=False)
        hit = sum(1 for r in page.results if r.relevant and lib.photo(r) and lib.photo(r).category == "animal")
        out["skewed library: broad query flagged"] = _ratio(hit, len(animals))
        wrong = sum(1 for r in page.results if r.relevant and lib.photo(r) and lib.photo(r).category != "animal")
        out["_skewed"] = f"'an animal': {len(animals)} animals of {len(skewed)} photos, {wrong} others flagged"
    finally:
        lib.close()
    # every subject that 5 photos' captions share as their head noun: one word says little (the held-out side's
    # most common one, 'turbine', is no ImageNet concept), so each gets its own 20-photo library
    subjects = photoset.tiny_head_subjects(source)
    built = complete = flagged = others = 0
    notes = []
    for subject in subjects:
        try:
            library, subject_photos = photoset.tiny_library(source, subject=subject, seed=SEED)
        except ValueError as err:  # too few photos outside the subject's categories to fill 20
            notes.append(f"{subject!r} skipped ({err})")
            continue
        built += 1
        query = photoset.shared_subject([p.caption for p in subject_photos], subject)
        lib = Library(f"{split.name}-tiny-{subject}", [mine[p.key] for p in library], work, model, constants)
        try:
            page = lib.search(query, limit=20, collapse_duplicates=False)
            keys = {p.key for p in subject_photos}
            hit = sum(1 for r in page.results if r.relevant and lib.photo(r) and lib.photo(r).key in keys)
            wrong = sum(1 for r in page.results if r.relevant and lib.photo(r) and lib.photo(r).key not in keys)
        finally:
            lib.close()
        complete += hit == len(keys)
        flagged += hit
        others += wrong
        notes.append(f"{query!r} {hit}/{len(keys)}" + (f" (+{wrong} others)" if wrong else ""))
    out["tiny libraries: all 5 of 20 flagged"] = _ratio(complete, built)
    out["tiny libraries: subject photos flagged"] = _ratio(flagged, 5 * built)
    out["tiny libraries: other photos flagged"] = (others, None)
    out["_tiny"] = ", ".join(notes)
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


def hierarchy_labels(names: tuple[str, ...], synonyms: dict[str, tuple[str, ...]], photo: Photo) -> np.ndarray:
    """`tag_labels`, and also right when the tag names a WordNet concept that holds what the caption's subject
    names ("fish" or "animal" on "a goldfish", "insect" on "an ant"): caption words match a tag by spelling only,
    which calls those wrong. Containment is read from offline-lite's concept file (WordNet over ImageNet's classes:
    a concept is the set of classes under it), so it knows only the ImageNet-rooted part of WordNet, and two words
    over the same classes count as one (approximate where a sense reaches a single class)."""
    from bench.data.photoset import subject_phrase

    out = tag_labels(names, synonyms, photo)
    lemmas = _concept_lemmas()
    words = subject_phrase(photo.caption)
    subject = [_stem(" ".join(words[i:j])) for i in range(len(words)) for j in range(i + 1, min(i + 3, len(words)) + 1)]
    held = [members for term in subject for members in lemmas.get(term, ())]
    for i, name in enumerate(names):
        if not out[i] and held:
            covers = [m for t in (name, *synonyms.get(name, ())) for m in lemmas.get(_stem(t), ())]
            out[i] = any(h <= c for h in held for c in covers)
    return out


_LEMMAS: dict[str, list[frozenset]] = {}


def _concept_lemmas() -> dict[str, list[frozenset]]:
    """lemma (stemmed like captions) → the member-class sets of the concepts it names (one per sense)."""
    if not _LEMMAS:
        from models.offline_lite import read_concepts
        from models.recipes.imagenet_text import synonyms

        for concept in read_concepts()["concepts"]:
            for lemma in synonyms(concept["text"]):
                _LEMMAS.setdefault(_stem(lemma), []).append(frozenset(concept["members"]))
    return _LEMMAS


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
    given = right = right_wordnet = tagged = 0
    for (photo, _), tags in zip(photos, assigned, strict=True):
        labels = tag_labels(classifier.names, synonyms, photo)
        wordnet = hierarchy_labels(classifier.names, synonyms, photo)
        given += len(tags)
        right += sum(labels[classifier.names.index(t)] for t in tags)
        right_wordnet += sum(wordnet[classifier.names.index(t)] for t in tags)
        tagged += bool(tags)
    return {"tag precision": _ratio(right, given), "tag precision (WordNet-aware)": _ratio(right_wordnet, given),
            "tag coverage": _ratio(tagged, len(photos))}


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


def _canon(family: str) -> str:
    """The family a photo belongs to, with the photo set's same-picture twins (one photograph listed twice under two
    names, checked by eye: bench.dedupe_fit.SAME_PICTURE) joined to their first name: folding them is right."""
    from bench.dedupe_fit import SAME_PICTURE

    return {b: a for a, b in SAME_PICTURE}.get(family, family)


def _family_size(lib: Library, result, family: str) -> int:
    members = [lib.photo(result)] + [lib.by_path.get(str(Path(d).resolve())) for d in result.duplicates]
    return sum(1 for m in members if m is not None and _canon(m.family) == family)


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
        cells = [_cell(results.get(s, {}).get(name)) for s in ("dev", "heldout")]
        rows.append(f"| {name:38} | {cells[0]:18} | {cells[1]:18} | {target:12} |")
    notes = [f"{s}: skewed {results[s].get('_skewed', '')}, tiny {results[s].get('_tiny', '')}"
             for s in ("dev", "heldout") if s in results]
    return "\n".join(rows + [""] + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="offline-lite", help="preset (or saved-model folder) to measure")
    parser.add_argument("--work", type=Path, help="working folder (kept; default: a temporary one, removed)")
    parser.add_argument("--ship", action="store_true", help="write the dev fits to models/data/{relevance,tagging}")
    parser.add_argument("--skip-tags", action="store_true")
    parser.add_argument("--reuse-fit", action="store_true", help="with --work: keep the relevance fit found there")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="loupe-quality-"))
    try:
        splits = build_splits(work)
        constants = fit_relevance(splits[0], work, args.model, reuse=args.reuse_fit)
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
            (work / "results.json").write_text(json.dumps(results, indent=1, default=list), encoding="utf-8")
            print(f"{split.name} measured: " + json.dumps(results[split.name], default=list), file=sys.stderr)
        if args.ship:
            safe = re.sub(r"[^\w.-]", "_", args.model)
            shutil.copyfile(constants, ROOT / "models" / "data" / "relevance" / f"{safe}.json")
            if policy is not None:
                target = ROOT / "models" / "data" / "tagging" / f"{safe}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(policy.to_json(), encoding="utf-8")
        fitted = json.loads(constants.read_text(encoding="utf-8"))
        print(json.dumps(results, indent=2, default=list) if args.json else render(results, args.model))
        print(f"\nrelevance constants (dev fit): text {fitted['text']}, image {fitted['image']}, "
              f"visual {fitted.get('visual')}")
        if policy is not None:
            print(f"tag policy (dev fit): P ≥ {policy.threshold}, ≤ {policy.max_tags} tags, "
                  f"{len(policy.disabled)} tags disabled")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
