"""Qdrant server / cluster backend through qdrant-client, for users who outgrow one machine.

`ServerVectorStore.connect(url, api_key, shard_number=…, replication_factor=…, write_consistency_factor=…)` talks
to a server or cluster; the cluster options are passed through when a collection is created. `ServerVectorStore.
local(path)` uses qdrant-client's local mode (pure Python, one process at a time, slow past ~20k points: it warns)
and stands in for the server in tests, which is why local mode skips payload indexes (it has none, and says so).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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
    VectorStoreUnavailableError,
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

UPSERT_BATCH = 256  # points per request: ~2.5 MB of JSON at 768-d, well under the server's 32 MB request limit
_SCHEMA = {"keyword": qm.PayloadSchemaType.KEYWORD, "float": qm.PayloadSchemaType.FLOAT}


def _condition(cond: Condition) -> Any:
    if cond.kind == "value":
        return qm.FieldCondition(key=cond.key, match=qm.MatchValue(value=cond.value))
    if cond.kind == "any":
        return qm.FieldCondition(key=cond.key, match=qm.MatchAny(any=cond.value))
    if cond.kind == "range":
        gte, lt = cond.value
        return qm.FieldCondition(key=cond.key, range=qm.Range(gte=gte, lt=lt))
    if cond.kind == "has_vector":
        return qm.HasVectorCondition(has_vector=cond.key)
    return qm.HasIdCondition(has_id=list(cond.value))


def server_filter(flt: VectorFilter | None) -> qm.Filter | None:
    """The one place a VectorFilter becomes a qdrant-client filter."""
    return native_filter(flt, _condition, qm.Filter)


def _dims(config: Any) -> dict[str, int]:
    """Vector sizes from a collection's vectors config: one VectorParams (default vector only) or a dict by name."""
    if isinstance(config, dict):
        return {name: int(params.size) for name, params in config.items()}
    return {SEMANTIC: int(config.size)}


def _point(record: Any) -> VectorPoint:
    semantic, visual = split_vectors(record.vector)
    return VectorPoint(str(record.id), semantic, record.payload or {}, visual)


class ServerVectorStore:
    """Collections on a Qdrant server (or in qdrant-client's local mode)."""

    def __init__(self, client: QdrantClient, where: str, local: bool = False, **cluster_opts: Any):
        """Prefer `connect` or `local`. `cluster_opts`: shard_number, replication_factor, write_consistency_factor."""
        unknown = set(cluster_opts) - {"shard_number", "replication_factor", "write_consistency_factor"}
        if unknown:
            raise TypeError(f"unknown Qdrant cluster options: {sorted(unknown)}")
        self._client, self.where, self._local = client, where, local
        self._cluster_opts = {k: v for k, v in cluster_opts.items() if v is not None}

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, timeout: int = 30, **cluster_opts: Any) -> ServerVectorStore:
        """A server or cluster at `url`; fails at once, naming the URL, when nothing answers there."""
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        store = cls(client, where=url, **cluster_opts)
        with store._errors():
            client.get_collections()
        return store

    @classmethod
    def local(cls, path: Path | None = None) -> ServerVectorStore:
        """qdrant-client's local mode, persisted under `path` (in memory when None)."""
        location = str(path) if path is not None else ":memory:"
        # Local mode guards against threads by default; the indexer's pool and the API's handlers share one store.
        options = {"path": location, "force_disable_check_same_thread": True} if path else {"location": location}
        try:
            client = QdrantClient(**options)
        except RuntimeError as err:
            if "already accessed" not in str(err):
                raise
            raise StoreLockedError(
                f"The vector store {location} is open in another process: another Loupe process owns it."
            ) from err
        return cls(client, where=location, local=True)

    @contextlib.contextmanager
    def _errors(self, name: str | None = None) -> Iterator[None]:
        """Translate qdrant-client's transport and 404 errors into ours."""
        try:
            yield
        except (ResponseHandlingException, httpx.TransportError) as err:
            raise VectorStoreUnavailableError(
                f"Cannot reach the Qdrant server at {self.where}: {err}. Start it, or fix --qdrant-url / "
                "LOUPE_QDRANT_URL (leave it unset to use the embedded store)."
            ) from err
        except UnexpectedResponse as err:
            if err.status_code == 404 and name is not None and "collection" in str(err).lower():
                raise UnknownCollectionError(f"no collection {name!r} on {self.where}") from err
            raise
        except ValueError as err:  # local mode: "Collection x not found"
            if name is not None and str(err) == f"Collection {name} not found":
                raise UnknownCollectionError(f"no collection {name!r} in {self.where}") from err
            raise

    def ensure_collection(self, name: str, dim: int, visual_dim: int | None = None) -> None:
        check_collection_name(name)
        with self._errors(name):
            if not self._client.collection_exists(name):
                params = {SEMANTIC: qm.VectorParams(size=dim, distance=qm.Distance.COSINE)}
                if visual_dim:
                    params[VISUAL] = qm.VectorParams(size=visual_dim, distance=qm.Distance.COSINE)
                with contextlib.suppress(UnexpectedResponse):  # 409: another process created it just now
                    self._client.create_collection(name, vectors_config=params, **self._cluster_opts)
                log.info("created Qdrant collection %s (%d-d, visual %s) on %s", name, dim, visual_dim, self.where)
            info = self._client.get_collection(name)
            stored = _dims(info.config.params.vectors)
            if stored[SEMANTIC] != dim:
                raise ValueError(f"collection {name!r} holds {stored[SEMANTIC]}-d vectors, not {dim}-d")
            if visual_dim and stored.get(VISUAL, visual_dim) != visual_dim:
                raise ValueError(f"collection {name!r} holds {stored[VISUAL]}-d visual vectors, not {visual_dim}-d")
            if self._local:
                return  # local mode has no payload indexes: it filters by scanning, and warns if asked for one
            for field, kind in INDEXED_FIELDS.items():
                if field not in (info.payload_schema or {}):
                    self._client.create_payload_index(name, field, _SCHEMA[kind], wait=True)

    def drop_collection(self, name: str) -> None:
        with self._errors(name):
            self._client.delete_collection(name)

    def collections(self) -> list[str]:
        with self._errors():
            return sorted(c.name for c in self._client.get_collections().collections)

    def vector_dims(self, name: str) -> dict[str, int]:
        with self._errors(name):
            return _dims(self._client.get_collection(name).config.params.vectors)

    def add_visual(self, name: str, visual_dim: int) -> None:
        add_visual_by_copy(self, name, visual_dim)

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        vectors = check_unit_vectors(points)
        visuals = check_visual_vectors(points)
        structs = [
            qm.PointStruct(id=p.id, vector=vector_dict(v, w), payload=p.payload)  # {"": v} suits both layouts
            for p, v, w in zip(points, vectors, visuals, strict=True)
        ]
        with self._errors(name):
            for start in range(0, len(structs), UPSERT_BATCH):
                self._client.upsert(name, points=structs[start : start + UPSERT_BATCH], wait=True)

    def set_visual(self, name: str, vectors: dict[str, np.ndarray]) -> None:
        updates = [qm.PointVectors(id=i, vector={VISUAL: check_unit_vector(f"point {i} (visual)", v).tolist()})
                   for i, v in vectors.items()]
        with self._errors(name):
            for start in range(0, len(updates), UPSERT_BATCH):
                self._client.update_vectors(name, points=updates[start : start + UPSERT_BATCH], wait=True)

    def set_payload(self, name: str, ids: str | Sequence[str], payload: dict[str, Any]) -> None:
        with self._errors(name):
            self._client.set_payload(name, payload=payload, points=as_id_list(ids), wait=True)

    def overwrite_payload(self, name: str, ids: str | Sequence[str], payload: dict[str, Any]) -> None:
        with self._errors(name):
            self._client.overwrite_payload(name, payload=payload, points=as_id_list(ids), wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._errors(name):
            self._client.delete(name, points_selector=qm.PointIdsList(points=as_id_list(ids)), wait=True)

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[VectorPoint]:
        wanted = as_id_list(ids)
        with self._errors(name):
            records = self._client.retrieve(name, wanted, with_payload=True, with_vectors=with_vectors)
        found = {str(r.id): _point(r) for r in records}
        return [found[i] for i in wanted if i in found]

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
        with self._errors(name):
            found = self._client.query_points(
                name,
                query=np.asarray(vector, dtype=np.float32).tolist(),
                using=using or None,
                limit=limit,
                offset=offset or None,
                query_filter=server_filter(filter),
                score_threshold=score_threshold,
                with_payload=True,
            ).points
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in found]

    def count(self, name: str, filter: VectorFilter | None = None) -> int:
        with self._errors(name):
            return self._client.count(name, count_filter=server_filter(filter), exact=True).count

    def scroll(
        self, name: str, filter: VectorFilter | None = None, with_vectors: bool = False, batch: int = 256
    ) -> Iterator[VectorPoint]:
        offset: Any = None
        while True:
            with self._errors(name):
                records, offset = self._client.scroll(
                    name,
                    server_filter(filter),
                    limit=batch,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            yield from (_point(r) for r in records)
            if offset is None:
                return

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServerVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
