"""`python -m search.tag FOLDER`: zero-shot tags for the photos of an indexed folder.

    python -m search.tag ~/Pictures/2023                      each photo's tags (nothing is written)
    python -m search.tag ~/Pictures/2023 --write              store them: catalog + vector payloads, so that
                                                              `python -m search beach --tag dog` filters on them
    python -m search.tag ~/Pictures --summary                 top tags of the folder and of each subfolder
    python -m search.tag ~/Pictures/2023 --xmp                write/merge sidecars `IMG_1.jpg.xmp` (dc:subject)
    python -m search.tag ~/Pictures --vocabulary my-tags.txt --top-k 5 --threshold 0.9 --json

A photo gets only the tags that really apply, not always the top k (models.tagging: a tag must stand out from its
own scores across the library and beat generic background captions, and clear the model's tag policy — a cut on P
fitted for precision on labelled dev photos, at most a handful per photo, tags the model cannot tell apart left
out); `--threshold P` and `--top-k N` can only be stricter than that policy, so neither `--write` nor `--xmp`
ever stores a tag below the bar. `--write` is idempotent and replaces only the zero-shot tags of the folder's
photos (a person's tags stay), so re-running with another vocabulary swaps them. The vocabulary format is documented
at the top of models/data/tags.txt. When an indexer owns the data home, vectors come through its API.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from indexer.stores.vectors import VectorFilter
from models.tagging import (
    CALIBRATION_META_KEY,
    DEFAULT_TEMPLATES,
    MIN_LIBRARY,
    TagClassifier,
    TagPolicy,
    Vocabulary,
    VocabularyError,
    sample_library,
)
from search.backend import Backend
from search.options import OWNER_IGNORES, add_index_options, ignored_by_owner, index_location

if TYPE_CHECKING:  # the catalog pulls in SQLAlchemy (~0.7 s): imported when a run needs it, not for --help
    from indexer.stores.catalog import Catalog

TAG_SOURCE = "zero-shot"
BATCH = 512  # vectors classified (and written) at a time
SUMMARY_TAGS = 5  # tags shown per folder in the summary
PROGRESS_MIN = 200  # show progress bars from this many photos / prompts on


@dataclass(frozen=True)
class PhotoTags:
    content_hash: str
    paths: list[str]  # the photo's paths inside the folder
    tags: dict[str, float]  # tag → probability, most probable first

    def to_json(self) -> dict:
        return {"content_hash": self.content_hash, "paths": self.paths, "tags": self.tags}


class FolderTagger:
    """Classifies, writes and summarises the tags of a folder's photos through one backend (local or owner)."""

    def __init__(self, backend: Backend, catalog: Catalog, classifier: TagClassifier | None = None):
        self.backend, self.catalog, self.classifier = backend, catalog, classifier

    @property
    def collection(self) -> str:
        return self.backend.collection.name

    def build(self, vocabulary: Vocabulary, templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> TagClassifier:
        """Encode the vocabulary's prompts and calibrate on the whole library (not the folder: a folder of cats must
        still be tagged 'cat')."""
        total = sum(len(tag.prompts_for(templates)) for tag in vocabulary.tags)
        with _bar(total, "encoding tag prompts", "prompt") as bar:
            classifier = TagClassifier.build(self.backend.encode_texts, vocabulary, templates, progress=bar.update)
        points = self.backend.store.scroll(self.collection, with_vectors=True)
        policy = TagPolicy.for_model(self.backend.collection.model)
        self.classifier = classifier.calibrate(sample_library(p.vector for p in points)).with_policy(policy)
        return self.classifier

    def count(self, folder: str) -> int:
        return self.backend.store.count(self.collection, VectorFilter(folder=folder))

    def classify(self, folder: str, top_k: int | None = None, threshold: float | None = None) -> list[PhotoTags]:
        """Tags of every indexed photo under `folder`, by path."""
        if self.classifier is None:
            raise RuntimeError("call build() first")
        out: list[PhotoTags] = []
        with _bar(self.count(folder), "tagging", "photo") as bar:
            for batch in self._batches(folder):
                vectors = np.stack([vector for _, _, vector in batch])
                for (digest, paths, _), tags in zip(batch, self.classifier.assign(vectors, top_k, threshold),
                                                    strict=True):
                    out.append(PhotoTags(digest, paths, tags))
                bar.update(len(batch))
        return sorted(out, key=lambda photo: photo.paths[0] if photo.paths else "")

    def _batches(self, folder: str) -> Iterator[list[tuple[str, list[str], np.ndarray]]]:
        batch = []
        for point in self.backend.store.scroll(self.collection, VectorFilter(folder=folder), with_vectors=True):
            paths = [p for p in point.payload.get("paths", []) if _inside(p, folder)]
            batch.append((point.payload["content_hash"], paths, np.asarray(point.vector, np.float32)))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def write(self, photos: list[PhotoTags]) -> None:
        """Replace these photos' zero-shot tags (catalog, then payloads) and keep the calibration for arrivals."""
        from indexer.scan.sync import PayloadSync

        sync = PayloadSync(self.catalog, self.backend.store)
        for start in range(0, len(photos), BATCH):
            chunk = photos[start:start + BATCH]
            self.catalog.set_tags_many({p.content_hash: p.tags for p in chunk}, TAG_SOURCE)
            sync.refresh(p.content_hash for p in chunk)
        if self.classifier is not None and self.classifier.calibration is not None:
            self.catalog.set_meta(CALIBRATION_META_KEY.format(self.collection), self.classifier.to_json())

    def stored(self, folder: str) -> list[PhotoTags]:
        """The tags already in the catalog (zero-shot and manual) of the folder's indexed files."""
        by_hash: dict[str, list[str]] = defaultdict(list)
        for record in self.catalog.files_under(folder, statuses=("indexed",)):
            if record.content_hash:
                by_hash[record.content_hash].append(record.path)
        tags = self.catalog.tags_for(by_hash)
        photos = [PhotoTags(h, paths, dict(sorted(tags.get(h, {}).items(), key=lambda kv: -kv[1])))
                  for h, paths in by_hash.items()]
        return sorted(photos, key=lambda photo: photo.paths[0])


def summarize(photos: list[PhotoTags], folder: str, bar: float = 0.0) -> dict:
    """{'folder', 'photos', 'tagged', 'tags': {tag: photos}, 'subfolders': [...]} for `folder` and each subfolder
    that holds photos; a photo counts once per folder however many copies it has there. Only confident tags count:
    a score under `bar` (the model's tag policy threshold; tags stored by older versions may sit below it) does not
    (a person's own tags score 1)."""
    members: dict[str, set[str]] = defaultdict(set)
    tags_of = {photo.content_hash: {t: p for t, p in photo.tags.items() if p >= bar} for photo in photos}
    for photo in photos:
        for path in photo.paths:
            parent = os.path.dirname(path)
            while _inside(parent, folder) or parent == folder:
                members[parent].add(photo.content_hash)
                if parent == folder:
                    break
                parent = os.path.dirname(parent)

    def node(path: str) -> dict:
        hashes = members[path]
        counts = Counter(tag for h in hashes for tag in tags_of[h])
        children = sorted(p for p in members if os.path.dirname(p) == path and p != path)
        return {"folder": path, "photos": len(hashes), "tagged": sum(1 for h in hashes if tags_of[h]),
                "tags": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                "subfolders": [node(child) for child in children]}

    return node(folder)


def render_summary(tree: dict, depth: int = 0) -> str:
    from indexer.stores.fsnames import display  # odd names print as \\xNN on one line

    name = display(tree["folder"] if depth == 0 else os.path.basename(tree["folder"]))
    top = " · ".join(f"{tag} {n}" for tag, n in list(tree["tags"].items())[:SUMMARY_TAGS]) or "(no tags)"
    photos = f"{tree['photos']} photo{'' if tree['photos'] == 1 else 's'}"
    lines = [f"{'  ' * depth}{name}/  {photos}, {tree['tagged']} tagged  {top}"]
    lines += [render_summary(child, depth + 1) for child in tree["subfolders"]]
    return "\n".join(lines)


def render_photos(photos: list[PhotoTags], folder: str) -> str:
    from indexer.stores.fsnames import display  # odd names print as \\xNN on one line

    rows = [(display(os.path.relpath(photo.paths[0], folder)) if photo.paths else photo.content_hash[:12],
             ", ".join(f"{tag} {p:.2f}" for tag, p in photo.tags.items()) or "-") for photo in photos]
    width = min(max((len(path) for path, _ in rows), default=4), 60)
    return "\n".join([f"{'photo':{width}}  tags"] + [f"{path:{width}}  {tags}" for path, tags in rows])


def write_sidecars(photos: list[PhotoTags], warn: Callable[[str], object]) -> tuple[int, int]:
    """(written, failed): one `<file>.xmp` per path; a photo without tags and without a sidecar gets none."""
    from search.xmp import XmpError, sidecar_path, write_sidecar

    written = failed = 0
    for photo in photos:
        for path in photo.paths:
            if not photo.tags and not sidecar_path(path).exists():
                continue
            try:
                write_sidecar(path, photo.tags)
                written += 1
            except (OSError, XmpError) as err:
                warn(f"warning: {err}")
                failed += 1
    return written, failed


def remove_stale_sidecars(folder: str, warn: Callable[[str], object]) -> list[Path]:
    """Remove the sidecars Loupe created whose photo is gone (after a rename or move, the new path got its own);
    a person's sidecar with Loupe's tags in it is only reported."""
    from search.xmp import stale_sidecars

    own, kept = stale_sidecars(folder)
    removed = []
    for sidecar in own:
        try:
            sidecar.unlink()
            removed.append(sidecar)
        except OSError as err:
            warn(f"warning: cannot remove stale sidecar {sidecar}: {err}")
    for sidecar in kept:
        warn(f"note: {sidecar} belongs to a photo that is gone; it holds more than Loupe's tags, so it was left as is")
    return removed


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _bar(total: int, desc: str, unit: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=total < PROGRESS_MIN or None, leave=False,
                file=sys.stderr, dynamic_ncols=True)


# -- command line ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.tag", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="an indexed folder (its subfolders are included)")
    p.add_argument("--vocabulary", default="default", metavar="FILE", help="tag vocabulary file, or 'default'")
    p.add_argument("--templates", default="photo", metavar="NAME|FILE",
                   help="prompt templates: 'photo' (4 short ones, default), 'clip' (CLIP's 80 ImageNet prompts; "
                        "slow), or a file with one '{}' template a line")
    p.add_argument("--top-k", type=int, metavar="N", help="at most N tags per photo")
    p.add_argument("--threshold", type=float, metavar="P", help="tags with calibrated probability ≥ P (0..1; "
                                                                "default 0.5: higher is stricter)")
    p.add_argument("--write", action="store_true", help="store the tags in the catalog and the vector payloads")
    p.add_argument("--summary", action="store_true", help="top tags of the folder and each subfolder (from stored "
                                                          "tags when there are any)")
    p.add_argument("--xmp", action="store_true",
                   help="write/merge XMP sidecars <file>.xmp (IMG_1.jpg.xmp) with the tags as dc:subject")
    add_index_options(p)
    return p


def load_templates(spec: str) -> tuple[str, ...]:
    from models import templates

    if spec == "photo":
        return DEFAULT_TEMPLATES
    if spec == "clip":
        return templates.LIT_ZEROSHOT_TEMPLATES
    if not Path(spec).expanduser().is_file():
        raise ValueError(f"--templates: no such file {spec!r} (or use 'photo' / 'clip')")
    return tuple(templates.load_templates(Path(spec).expanduser()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.top_k is not None and args.top_k < 1:
            raise ValueError("--top-k must be at least 1")
        if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
            raise ValueError("--threshold is a probability between 0 and 1")
        vocabulary, templates = Vocabulary.load(args.vocabulary), load_templates(args.templates)
    except (VocabularyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from search.backend import NoIndexError, open_backend

    home, options = index_location(args)
    db_url = options["db_url"]
    try:
        backend = open_backend(home, **options)
    except (NoIndexError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    warning = ignored_by_owner(args, backend, [f for f in OWNER_IGNORES if f[0] != "--db-url"])  # tags: own catalog
    if warning:
        print(warning, file=sys.stderr)
    from indexer.stores.catalog import Catalog

    catalog = getattr(backend, "catalog", None)
    own_catalog = catalog is None
    try:
        catalog = catalog or Catalog.for_home(home, db_url)  # the owner's catalog admits other writers
        return _run(args, FolderTagger(backend, catalog), vocabulary, templates)
    finally:
        if own_catalog and catalog is not None:
            catalog.close()
        backend.close()


def _run(args: argparse.Namespace, tagger: FolderTagger, vocabulary: Vocabulary, templates: tuple[str, ...]) -> int:
    folder = str(args.folder.expanduser().resolve())
    if tagger.count(folder) == 0:
        reason = ("no such folder" if not os.path.isdir(folder)
                  else f"nothing there is indexed yet: run `python -m indexer {folder}` first")
        print(f"error: no indexed photos under {folder}: {reason}", file=sys.stderr)
        return 1
    if args.summary and not (args.write or args.xmp):
        stored = tagger.stored(folder)
        if any(photo.tags for photo in stored):  # no model needed: summarise what is stored
            bar = TagPolicy.for_model(tagger.backend.collection.model).threshold
            _print_summary(summarize(stored, folder, bar), args.json)
            return 0
    library = tagger.backend.store.count(tagger.collection)
    if library < MIN_LIBRARY:
        print(f"error: only {library} photos are indexed; tags are calibrated on the library and need at least "
              f"{MIN_LIBRARY} (index more photos first)", file=sys.stderr)
        return 1
    tagger.build(vocabulary, templates)
    photos = tagger.classify(folder, args.top_k, args.threshold)
    if args.write:
        tagger.write(photos)
    sidecars = write_sidecars(photos, lambda m: print(m, file=sys.stderr))[0] if args.xmp else 0
    removed = remove_stale_sidecars(folder, lambda m: print(m, file=sys.stderr)) if args.xmp else []
    if args.summary:
        bar = tagger.classifier.policy.threshold
        _print_summary(summarize(tagger.stored(folder) if args.write else photos, folder, bar), args.json)
    elif args.json:
        print(json.dumps({"folder": folder, "vocabulary": vocabulary.source, "written": args.write,
                          "sidecars": sidecars, "sidecars_removed": [str(p) for p in removed],
                          "photos": [p.to_json() for p in photos]}, indent=2))
    else:
        print(render_photos(photos, folder))
    if not args.json:
        tagged = sum(1 for p in photos if p.tags)
        done = "tags written" if args.write else "nothing written (--write stores the tags)"
        xmp = f", {sidecars} XMP sidecars written" if args.xmp else ""
        xmp += f", {len(removed)} stale ones removed (their photos were renamed, moved or deleted)" if removed else ""
        print(f"{len(photos)} photos, {tagged} tagged; {done}{xmp}", file=sys.stderr)
    return 0


def _print_summary(tree: dict, as_json: bool) -> None:
    print(json.dumps(tree, indent=2) if as_json else render_summary(tree))


if __name__ == "__main__":
    sys.exit(main())
