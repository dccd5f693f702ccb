"""The vector store: one interface, two backends, and the payload convention both share.

Backends
* `EdgeVectorStore` (indexer.stores.vectors_edge): Qdrant Edge, Qdrant's engine in-process, one shard per
  collection under `<home>/vectors/<collection>/`. The default: no server, 4.9 ms queries at 50k x 768.
* `ServerVectorStore` (indexer.stores.vectors_server): a Qdrant server or cluster through qdrant-client (sharding and
  replication), or qdrant-client's local mode, which tests use in the server's place.
`indexer.stores.factory.open_vector_store` picks one. A congruence test runs the same operations on both and
compares the answers.

Vectors are unit-norm (the image tower normalises in exactly one place) and compared by cosine; `upsert` refuses
anything else, because a vector of the wrong norm would silently skew every ranking it takes part in.

Two vectors per point (Qdrant named vectors): the text-aligned one under Qdrant's default name "" (what text search
reads; collections made before there was a second vector hold only this one), and optionally a *visual* one under
`VISUAL` (models.visual: the image tower's pooled backbone features plus coarse thumbnails), which tells a re-encode
from a different photo of the same kind of thing where a text-aligned space (offline-lite's class distribution)
cannot. A collection declares the visual
vector when it is created (`ensure_collection(..., visual_dim=)`) or gains it later with `add_visual`, which copies
the collection into the two-vector layout (Qdrant cannot add a vector to an existing collection: Edge refuses the
config, measured). Points may lack the visual vector (`VectorFilter(has_visual=False)` finds them) until the indexer
backfills it with `set_visual`; queries `using=VISUAL` only see points that have one.

Point ids are UUIDs derived from the content hash (`point_id`), so a photo has one point however many paths it has,
and re-indexing a photo overwrites its point instead of duplicating it.

Payload convention (`build_payload` writes it; `VectorFilter` reads it):
    content_hash: str           hex hash of the bytes
    paths:   [str]              live absolute paths of those bytes
    folders: [str]              every ancestor folder of every path, so "in folder X, recursively" is one keyword match
    taken_at: float             unix seconds (EXIF date, else mtime)
    ext:     [str]              lowercase extensions of the paths, without dots
    tags:    [str]              tag names (zero-shot and manual)
    camera:  str | None         'Make Model'
    width, height: int          pixels, after EXIF orientation
    texts:   {field: [str]}     words people gave the photo, by where they come from (indexer.scan.sync):
                                folder, name, keyword, description, title, tag (manual tags only)
    words:   [str]              the normalised tokens of `texts` (indexer.scan.words), each once: lexical search
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from indexer.stores import fsnames

log = logging.getLogger(__name__)

UNIT_NORM_TOLERANCE = 1e-3
SEMANTIC, VISUAL = "", "visual"  # Qdrant vector names: "" is Qdrant's default (unnamed) vector
UPGRADE_SUFFIX = ".upgrade"  # `add_visual` copies a collection through `<name>.upgrade`
# Payload fields that get an index, with their type ('keyword' or 'float'): what VectorFilter can filter on.
INDEXED_FIELDS: dict[str, str] = {
    "content_hash": "keyword",
    "folders": "keyword",
    "ext": "keyword",
    "tags": "keyword",
    "camera": "keyword",
    "taken_at": "float",
    "words": "keyword",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class VectorStoreError(RuntimeError):
    """Base class of the vector store's own errors."""


class StoreLockedError(VectorStoreError):
    """Another process has the embedded store open (Qdrant Edge and local mode admit one process at a time)."""


class VectorStoreUnavailableError(VectorStoreError):
    """The Qdrant server cannot be reached."""


class UnknownCollectionError(VectorStoreError, KeyError):
    """The collection does not exist (call `ensure_collection` first)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class VectorPoint:
    """A point to store, or one read back (`vector` is None when read without vectors)."""

    id: str
    vector: np.ndarray | None  # (D,) float32, unit norm: the text-aligned vector
    payload: dict[str, Any] = field(default_factory=dict)
    visual: np.ndarray | None = None  # (V,) float32, unit norm: the visual vector, when the point has one


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity, higher is closer
    payload: dict[str, Any]


@dataclass(frozen=True)
class VectorFilter:
    """Conditions on the payload; all given conditions must hold. Each backend translates it in one place."""

    folder: str | None = None  # in this folder or below it (absolute path)
    taken_from: float | None = None  # unix seconds, inclusive
    taken_to: float | None = None  # unix seconds, exclusive: [2023-01-01, 2024-01-01) is "2023"
    tags_all: tuple[str, ...] = ()  # has every one of these tags
    tags_any: tuple[str, ...] = ()  # has at least one of these tags
    exts: tuple[str, ...] = ()  # any of these extensions (lowercase, no dot)
    cameras: tuple[str, ...] = ()  # any of these 'Make Model' strings
    words_any: tuple[str, ...] = ()  # holds at least one of these tokens (payload `words`)
    exclude_hashes: tuple[str, ...] = ()  # never these contents (e.g. the query image itself)
    exclude_ids: tuple[str, ...] = ()  # never these point ids
    has_visual: bool | None = None  # True: only points with a visual vector; False: only points without one

    def conditions(self) -> tuple[list[Condition], list[Condition]]:
        """(must, must_not) in backend-neutral form; each backend maps `Condition`s to its own types."""
        must: list[Condition] = []
        if self.folder is not None:
            must.append(Condition("value", "folders", normalize_folder(self.folder)))
        if self.taken_from is not None or self.taken_to is not None:
            must.append(Condition("range", "taken_at", (self.taken_from, self.taken_to)))
        must += [Condition("value", "tags", tag) for tag in self.tags_all]
        for key, values in (("tags", self.tags_any), ("ext", self.exts), ("camera", self.cameras),
                            ("words", self.words_any)):
            if values:
                normal = [v.lower().lstrip(".") for v in values] if key == "ext" else list(values)
                must.append(Condition("any", key, normal))
        must_not: list[Condition] = []
        if self.exclude_hashes:
            must_not.append(Condition("any", "content_hash", list(self.exclude_hashes)))
        if self.exclude_ids:
            must_not.append(Condition("ids", "", list(self.exclude_ids)))
        if self.has_visual is not None:
            (must if self.has_visual else must_not).append(Condition("has_vector", VISUAL, True))
        return must, must_not


@dataclass(frozen=True)
class Condition:
    """One payload condition. kind: 'value' (key equals / contains value), 'any' (any of a list),
    'range' (value = (gte, lt), either may be None), 'ids' (point id in a list; key unused),
    'has_vector' (the point has the named vector `key`; value unused)."""

    kind: Literal["value", "any", "range", "ids", "has_vector"]
    key: str
    value: Any


@runtime_checkable
class VectorStore(Protocol):
    """What the indexer writes and search reads. Collections hold unit vectors compared by cosine similarity."""

    def ensure_collection(self, name: str, dim: int, visual_dim: int | None = None) -> None:
        """Create the collection (with payload indexes) unless it exists; a different `dim` is a ValueError.

        `visual_dim` declares the visual vector on a new collection; an existing collection without one is left as
        it is (`add_visual` upgrades it), one with a visual vector of another size is a ValueError."""

    def vector_dims(self, name: str) -> dict[str, int]:
        """Size of each vector the collection declares: {SEMANTIC: D} or {SEMANTIC: D, VISUAL: V}."""

    def add_visual(self, name: str, visual_dim: int) -> None:
        """Give an existing collection the visual vector, keeping every point, vector and payload (a copy through
        `<name>.upgrade`; resumable: calling it again after a crash finishes the job). No-op when it has one."""

    def set_visual(self, name: str, vectors: dict[str, np.ndarray]) -> None:
        """Store visual vectors of existing points (id → unit vector), leaving their other vector and payload."""

    def drop_collection(self, name: str) -> None: ...

    def collections(self) -> list[str]: ...

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points. Raises ValueError, storing nothing, if any vector is not unit-norm."""

    def set_payload(self, name: str, ids: str | Sequence[str], payload: dict[str, Any]) -> None:
        """Merge `payload` into the points' payloads (the points must exist)."""

    def overwrite_payload(self, name: str, ids: str | Sequence[str], payload: dict[str, Any]) -> None:
        """Replace the points' payloads with `payload`."""

    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Delete points; unknown ids are ignored."""

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[VectorPoint]:
        """The points that exist, in the order asked."""

    def query(
        self,
        name: str,
        vector: np.ndarray,
        limit: int = 10,
        offset: int = 0,
        filter: VectorFilter | None = None,
        score_threshold: float | None = None,
        using: str = SEMANTIC,
    ) -> list[Hit]:
        """Nearest points by cosine similarity, best first; `score_threshold` drops hits scoring below it.
        `using=VISUAL` ranks by the visual vector (points without one are not returned)."""

    def count(self, name: str, filter: VectorFilter | None = None) -> int: ...

    def scroll(
        self, name: str, filter: VectorFilter | None = None, with_vectors: bool = False, batch: int = 256
    ) -> Iterator[VectorPoint]:
        """Every (matching) point, in id order, fetched `batch` at a time."""

    def close(self) -> None: ...


def point_id(content_hash: str) -> str:
    """The point id of a content hash: its first 128 bits as a UUID (a hex SHA-256 is already uniformly random).

    Readable back to the hash's prefix, and stable across processes and backends. A non-hex key (never produced by
    indexer.scan.hashing) falls back to uuid5 of the key.
    """
    head = content_hash[:32].lower()
    if len(head) == 32 and all(c in "0123456789abcdef" for c in head):
        return str(uuid.UUID(hex=head))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"loupe:{content_hash}"))


def normalize_folder(folder: str) -> str:
    """As payloads hold folders: normalised, in the text form (an fs-form folder with odd bytes still matches)."""
    return fsnames.as_text(os.path.normpath(folder))


def ancestor_folders(paths: Iterable[str]) -> list[str]:
    """Every folder above every path ('/a/b/c.jpg' → '/', '/a', '/a/b'), sorted, each once."""
    out: set[str] = set()
    for path in paths:
        out.update(str(parent) for parent in Path(path).parents)
    return sorted(out)


def build_payload(
    content_hash: str,
    paths: Sequence[str],
    taken_at: float,
    width: int,
    height: int,
    tags: Iterable[str] = (),
    camera: str | None = None,
    texts: Mapping[str, Sequence[str]] | None = None,
    words: Iterable[str] = (),
) -> dict[str, Any]:
    """The payload of one content, per the convention in this module's docstring. Paths in the fs form are stored
    in the text form (`indexer.stores.fsnames`): payloads must be valid Unicode."""
    paths = [fsnames.to_text(p) for p in paths]
    return {
        "content_hash": content_hash,
        "paths": sorted(paths),
        "folders": ancestor_folders(paths),
        "taken_at": float(taken_at),
        "ext": sorted({os.path.splitext(p)[1].lstrip(".").lower() for p in paths} - {""}),
        "tags": sorted(set(tags)),
        "camera": camera,
        "width": int(width),
        "height": int(height),
        "texts": {field: list(values) for field, values in sorted((texts or {}).items()) if values},
        "words": sorted(set(words)),
    }


def check_collection_name(name: str) -> str:
    """Collection names become directory names (Edge) and URL parts (server): keep them plain."""
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"invalid collection name {name!r}: use letters, digits, '_', '-', '.' (max 128)")
    return name


def check_unit_vector(owner: str, raw: Any) -> np.ndarray:
    """`raw` as a float32 unit vector; ValueError naming `owner` when it is not one."""
    vector = np.asarray(raw, dtype=np.float32)
    norm = float(np.linalg.norm(vector)) if vector.ndim == 1 else math.nan
    if not abs(norm - 1.0) < UNIT_NORM_TOLERANCE:  # also catches NaN and wrong shapes
        raise ValueError(
            f"{owner}: vector of shape {vector.shape} has norm {norm:.6f}; the store holds unit "
            "vectors only (normalise in encode_images, the one place embeddings are normalised)"
        )
    return vector


def check_visual_vectors(points: Sequence[VectorPoint]) -> list[np.ndarray | None]:
    """The points' visual vectors as float32 (None where a point has none); ValueError if one is not unit-norm."""
    return [None if p.visual is None else check_unit_vector(f"point {p.id} (visual)", p.visual) for p in points]


def vector_dict(semantic: np.ndarray, visual: np.ndarray | None) -> dict[str, list[float]]:
    """A point's vectors in Qdrant's named form."""
    named = {SEMANTIC: semantic.tolist()}
    if visual is not None:
        named[VISUAL] = visual.tolist()
    return named


def split_vectors(raw: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(semantic, visual) from what a backend returns: a plain list for a point with the default vector only, a
    dict of name → vector otherwise (both backends do this), None when read without vectors."""
    if raw is None:
        return None, None
    if isinstance(raw, dict):
        return as_vector(raw.get(SEMANTIC)), as_vector(raw.get(VISUAL))
    return as_vector(raw), None


def copy_points(store: VectorStore, source: str, target: str, batch: int = 256) -> int:
    """Every point of `source` (both vectors, payload) into `target`; returns how many."""
    copied, chunk = 0, []
    for point in store.scroll(source, with_vectors=True, batch=batch):
        chunk.append(point)
        if len(chunk) >= batch:
            store.upsert(target, chunk)
            copied, chunk = copied + len(chunk), []
    if chunk:
        store.upsert(target, chunk)
        copied += len(chunk)
    return copied


def add_visual_by_copy(store: VectorStore, name: str, visual_dim: int) -> None:
    """`add_visual` through the protocol's own operations, in an order a crash cannot lose points by:

    1. while `name` still has the old layout: (re)build `<name>.upgrade` with both vectors and copy every point in;
    2. only then drop `name`, recreate it with both vectors and copy the points back; 3. drop `<name>.upgrade`.
    A crash in 1 leaves `name` intact (1 starts over); a crash in 2 leaves the full copy (2 starts over).
    """
    spare = name + UPGRADE_SUFFIX
    present = set(store.collections())
    if name in present and VISUAL in store.vector_dims(name) and spare not in present:
        if store.vector_dims(name)[VISUAL] != visual_dim:
            raise ValueError(f"collection {name!r} holds {store.vector_dims(name)[VISUAL]}-d visual vectors, "
                             f"not {visual_dim}-d")
        return
    if name in present and VISUAL not in store.vector_dims(name):
        dim = store.vector_dims(name)[SEMANTIC]
        if spare in present:
            store.drop_collection(spare)  # a half-made copy from an interrupted step 1
        store.ensure_collection(spare, dim, visual_dim)
        copied = copy_points(store, name, spare)
        if store.count(spare) != store.count(name):
            raise VectorStoreError(f"copying {name!r} for its visual vector stored {store.count(spare)} of "
                                   f"{store.count(name)} points; {name!r} is unchanged")
        store.drop_collection(name)
        log.info("collection %s: %d points copied aside to gain a visual vector", name, copied)
    elif spare not in present:
        raise UnknownCollectionError(f"no collection {name!r}")
    dim = store.vector_dims(spare)[SEMANTIC]
    if name in set(store.collections()):
        store.drop_collection(name)  # a half-filled new layout from an interrupted step 2
    store.ensure_collection(name, dim, visual_dim)
    copy_points(store, spare, name)
    store.drop_collection(spare)


def check_unit_vectors(points: Sequence[VectorPoint]) -> list[np.ndarray]:
    """The points' vectors as float32; ValueError naming the first point whose vector is not unit-norm."""
    vectors = []
    for point in points:
        if point.vector is None:
            raise ValueError(f"point {point.id} has no vector")
        vectors.append(check_unit_vector(f"point {point.id}", point.vector))
    return vectors


def native_filter(flt: VectorFilter | None, condition: Any, make_filter: Any) -> Any:
    """A backend's filter from a VectorFilter: `condition` maps one `Condition`, `make_filter(must=, must_not=)`
    builds the backend's filter type. None when there is nothing to filter on."""
    if flt is None:
        return None
    must, must_not = flt.conditions()
    if not must and not must_not:
        return None
    return make_filter(must=[condition(c) for c in must] or None, must_not=[condition(c) for c in must_not] or None)


def as_vector(raw: Any) -> np.ndarray | None:
    """A backend's vector (list or array) as float32, None stays None."""
    return None if raw is None else np.asarray(raw, dtype=np.float32)


def as_id_list(ids: str | Sequence[str]) -> list[str]:
    return [ids] if isinstance(ids, str) else [str(i) for i in ids]
