"""Qdrant Edge backend: Qdrant's engine in-process, one shard directory per collection under `<home>/vectors/`.

What qdrant-edge-py 0.9 (`qdrant_edge`) does, learned from its stubs, its docs and by trying (its API is new):
* `EdgeShard.create(path, EdgeConfig)` makes a shard directory (edge_config.json, segments/, wal/) and fails if the
  directory already holds segments; `EdgeShard.load(path)` reopens one with its persisted config.
  `EdgeConfig(vectors=EdgeVectorParams(size, Distance.Cosine))` declares the unnamed default vector ("").
* One open `EdgeShard` per directory, system-wide: a second `load`, even in the same process, raises a plain
  `Exception("Service runtime error: failed to open WAL …: Can't init WAL: Kind(WouldBlock)")`. Its errors are
  plain `Exception`s (ValueError for an unparsable id), so they are told apart by message.
* Writes are `shard.update(UpdateOperation.<op>(...))`: upsert_points, delete_points (unknown ids ignored),
  set_payload (merges; an unknown id raises "No point with id …"), overwrite_payload, create_field_index
  (idempotent). With the WAL on (the default) an update is durable when it returns.
* Point ids are ints or UUID strings (anything else: ValueError); vectors may be numpy float32 arrays; Cosine
  normalises stored vectors itself. Ids come back as `uuid.UUID`.
* `query(QueryRequest(limit, offset, query=Query.Nearest(v), filter, score_threshold, with_payload=True))`:
  with_payload left unset returns *no* payload. `retrieve(ids, with_payload, with_vector)` takes with_vector as a
  required positional (the stub says optional), skips unknown ids and keeps the order asked.
  `scroll(ScrollRequest(offset, limit, filter, ...))` returns (records, next_offset) in id order, None at the end.
* Named vectors: `EdgeConfig(vectors={"": params, "visual": params})` mixes the default vector with a named one;
  a point may carry any subset (`Point(id, {"": v})`), `UpdateOperation.update_vectors([PointVectors(id,
  {"visual": v})])` adds one to an existing point, `Query.Nearest(v, using="visual")` ranks by it and
  `HasVectorCondition("visual")` filters on having it. Records come back with a plain list when a point holds the
  default vector only, a dict otherwise. Loading a shard with a config that adds a vector fails ("config is
  incompatible with existing segments"): a collection gains one only by being copied (`add_visual_by_copy`).
* No background work: nothing is flushed on a timer and segments are optimised (HNSW built, deletions vacuumed)
  only inside `optimize()`. Until then search is exact brute force, which is what makes it agree with qdrant-client.
* After `close()` every call raises "Shard is not initialized"; close twice is fine. Concurrent `update` and
  `query` from several threads worked in our trials.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import qdrant_edge as qe

from indexer.stores.vectors import (
    INDEXED_FIELDS,
    SEMANTIC,
    VISUAL,
    Condition,
    Hit,
    StoreLockedError,
    UnknownCollectionError,
    VectorFilter,
    VectorPoint,
    VectorStoreError,
    add_visual_by_copy,
    as_id_list,
    check_collection_name,
    check_unit_vector,
    check_unit_vectors,
    check_visual_vectors,
    native_filter,
    split_vectors,
    vector_dict,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
CONFIG_FILE = "edge_config.json"
LOCK_FILE = ".lock"
_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "float": qe.PayloadSchemaType.Float}


def _locked_message(path: Path) -> str:
    return (
        f"The vector store {path} is open in another process: another Loupe process owns this data home. "
        "Stop it, or run this command through it (search and the UI do so on their own), or use another --home."
    )


def _edge_call(path: Path, fn: Callable[..., T], *args: Any) -> T:
    """Call into qdrant_edge, turning its message-only exceptions into ours."""
    try:
        return fn(*args)
    except ValueError:
        raise
    except Exception as err:  # qdrant_edge raises bare Exception
        message = str(err)
        if "WouldBlock" in message:
            raise StoreLockedError(_locked_message(path)) from err
        if "No point with id" in message:
            raise KeyError(message) from err
        raise VectorStoreError(f"Qdrant Edge at {path}: {message}") from err


def _condition(cond: Condition) -> Any:
    if cond.kind == "value":
        return qe.FieldCondition(cond.key, match=qe.MatchValue(cond.value))
    if cond.kind == "any":
        return qe.FieldCondition(cond.key, match=qe.MatchAny(cond.value))
    if cond.kind == "range":
        gte, lt = cond.value
        return qe.FieldCondition(cond.key, range=qe.RangeFloat(gte=gte, lt=lt))
    if cond.kind == "has_vector":
        return qe.HasVectorCondition(cond.key)
    return qe.HasIdCondition(set(cond.value))


def edge_filter(flt: VectorFilter | None) -> qe.Filter | None:
    """The one place a VectorFilter becomes a Qdrant Edge filter."""
    return native_filter(flt, _condition, qe.Filter)


def _acquire_lock(root: Path) -> int:
    """Hold `<root>/.lock` while open, so a second process fails at once and clearly (not at its first query)."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLockedError(_locked_message(root)) from None
    return fd


def _point(record: Any) -> VectorPoint:
    semantic, visual = split_vectors(record.vector)
    return VectorPoint(str(record.id), semantic, record.payload or {}, visual)


class EdgeVectorStore:
    """Collections as Qdrant Edge shards under one root directory (`<home>/vectors`)."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._lock_fd = _acquire_lock(root)
        self._shards: dict[str, qe.EdgeShard] = {}
        self._guard = threading.Lock()  # guards opening and closing shards; shards serialise their own calls

    def _path(self, name: str) -> Path:
        return self.root / check_collection_name(name)

    def _require_open(self) -> None:
        if self._lock_fd < 0:
            raise VectorStoreError(f"the vector store {self.root} is closed")

    def _shard(self, name: str) -> qe.EdgeShard:
        with self._guard:
            self._require_open()
            shard = self._shards.get(name)
            if shard is None:
                path = self._path(name)
                if not (path / CONFIG_FILE).exists():
                    raise UnknownCollectionError(f"no collection {name!r} in {self.root}")
                shard = self._shards[name] = _edge_call(path, qe.EdgeShard.load, str(path))
            return shard

    def _update(self, name: str, operation: Any) -> None:
        _edge_call(self._path(name), self._shard(name).update, operation)

    def ensure_collection(self, name: str, dim: int, visual_dim: int | None = None) -> None:
        path = self._path(name)
        with self._guard:  # check-and-create as one step: two threads may ensure the same new collection
            self._require_open()
            if not (path / CONFIG_FILE).exists():
                params = {SEMANTIC: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
                if visual_dim:
                    params[VISUAL] = qe.EdgeVectorParams(size=visual_dim, distance=qe.Distance.Cosine)
                config = qe.EdgeConfig(vectors=params)
                self._shards[name] = _edge_call(path, qe.EdgeShard.create, str(path), config)
                log.info("created Qdrant Edge collection %s (%d-d, visual %s) at %s", name, dim, visual_dim, path)
        stored = self.vector_dims(name)
        if stored[SEMANTIC] != dim:
            raise ValueError(f"collection {name!r} holds {stored[SEMANTIC]}-d vectors, not {dim}-d")
        if visual_dim and stored.get(VISUAL, visual_dim) != visual_dim:
            raise ValueError(f"collection {name!r} holds {stored[VISUAL]}-d visual vectors, not {visual_dim}-d")
        shard = self._shard(name)
        indexed = shard.info().payload_schema
        for field, kind in INDEXED_FIELDS.items():
            if field not in indexed:
                self._update(name, qe.UpdateOperation.create_field_index(field, _SCHEMA[kind]))

    def drop_collection(self, name: str) -> None:
        path = self._path(name)
        with self._guard:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
        shutil.rmtree(path, ignore_errors=True)

    def collections(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / CONFIG_FILE).exists())

    def vector_dims(self, name: str) -> dict[str, int]:
        path = self._path(name)
        try:
            vectors = json.loads((path / CONFIG_FILE).read_text())["vectors"]
        except FileNotFoundError:
            raise UnknownCollectionError(f"no collection {name!r} in {self.root}") from None
        return {vector_name: int(params["size"]) for vector_name, params in vectors.items()}

    def add_visual(self, name: str, visual_dim: int) -> None:
        add_visual_by_copy(self, name, visual_dim)

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        vectors = check_unit_vectors(points)
        visuals = check_visual_vectors(points)
        edge_points = [
            qe.Point(p.id, v if w is None else vector_dict(v, w), p.payload)
            for p, v, w in zip(points, vectors, visuals, strict=True)
        ]
        if edge_points:
            self._update(name, qe.UpdateOperation.upsert_points(edge_points))

    def set_visual(self, name: str, vectors: dict[str, np.ndarray]) -> None:
        updates = [qe.PointVectors(i, {VISUAL: check_unit_vector(f"point {i} (visual)", v).tolist()})
                   for i, v in vectors.items()]
        if updates:
            self._update(name, qe.UpdateOperation.update_vectors(updates))

    def set_payload(self, name: str, ids: str | Sequence[str], payload: dict[str, Any]) -> None:
        self._update(name, qe.UpdateOperation.set_payload(as_id_list(ids), payload))

    def overwrite_payload(self, name: str, ids: str | Sequence[str], payload: dict[str, Any]) -> None:
        self._update(name, qe.UpdateOperation.overwrite_payload(as_id_list(ids), payload))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self._update(name, qe.UpdateOperation.delete_points(as_id_list(ids)))

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[VectorPoint]:
        records = _edge_call(self._path(name), self._shard(name).retrieve, as_id_list(ids), True, with_vectors)
        return [_point(r) for r in records]

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
        request = qe.QueryRequest(
            limit=limit,
            offset=offset or None,
            query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32), using=using or None),
            filter=edge_filter(filter),
            score_threshold=score_threshold,
            with_payload=True,
        )
        found = _edge_call(self._path(name), self._shard(name).query, request)
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in found]

    def count(self, name: str, filter: VectorFilter | None = None) -> int:
        request = qe.CountRequest(exact=True, filter=edge_filter(filter))
        return _edge_call(self._path(name), self._shard(name).count, request)

    def scroll(
        self, name: str, filter: VectorFilter | None = None, with_vectors: bool = False, batch: int = 256
    ) -> Iterator[VectorPoint]:
        offset: str | uuid.UUID | None = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch, filter=edge_filter(filter), with_payload=True, with_vector=with_vectors
            )
            records, offset = _edge_call(self._path(name), self._shard(name).scroll, request)
            yield from (_point(r) for r in records)
            if offset is None:
                return

    def optimize(self, name: str) -> bool:
        """Merge segments, vacuum deletions and build the HNSW index (Edge never does this by itself).

        Worth calling after a bulk load of tens of thousands of photos; search then becomes approximate (HNSW).
        """
        return _edge_call(self._path(name), self._shard(name).optimize)

    def close(self) -> None:
        with self._guard:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()
            if self._lock_fd >= 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> EdgeVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
