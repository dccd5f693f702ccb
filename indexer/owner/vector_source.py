"""Image vectors straight from the index, for `python -m models.train` (LiT: the image side is never recomputed).

A captions row names a file; if the catalog knows that file's current bytes (same size and mtime) and the
collection of the tower being tuned holds its content's vector, that vector is used as is. Through the owner's API
when an indexer owns the data home, else by opening the stores for the duration of the call.

`captions(folder)` gives `python -m models.train --from-library` the captions people wrote for their indexed
photos (descriptions, titles, keywords, manual tags: indexer.scan.annotations.person_captions), read from the
catalog and the photos' sidecars; never Loupe's own zero-shot tags.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from indexer.scan import annotations
from indexer.stores.catalog import Catalog
from indexer.stores.vectors import VectorStore, point_id

log = logging.getLogger(__name__)


class IndexVectorSource:
    """`vectors_for(paths)` → {path: unit vector} for indexed, unchanged files of one image tower's collection."""

    def __init__(self, home: Path, collection: str, db_url: str | None = None, qdrant_url: str | None = None):
        self.home, self.collection, self.db_url, self.qdrant_url = home, collection, db_url, qdrant_url
        self.skipped: dict[str, str] = {}

    def vectors_for(self, keys: list[str]) -> dict[str, np.ndarray]:
        with self._stores() as (catalog, store):
            records = catalog.get_files(keys)
            current = {k: r for k, r in records.items() if r.status == "indexed" and r.content_hash and _same(k, r)}
            points = store.retrieve(self.collection, [point_id(r.content_hash) for r in current.values()],
                                    with_vectors=True)
        by_hash = {p.payload.get("content_hash"): p.vector for p in points if p.vector is not None}
        found = {k: np.asarray(by_hash[r.content_hash], np.float32) for k, r in current.items()
                 if r.content_hash in by_hash}
        self.skipped.update({k: "not in the index (or changed since indexing)" for k in keys if k not in found})
        return found

    def captions(self, folder: str | None = None) -> list[tuple[str, str]]:
        """(path, caption) pairs people wrote for the indexed, unchanged photos in `folder` (all roots when None),
        one photo per content (its first path), in path order."""
        catalog = Catalog.for_home(self.home, self.db_url)
        try:
            records = catalog.files_under(os.path.abspath(folder or os.sep), statuses=("indexed",))
            first: dict[str, str] = {}
            for record in records:
                if record.content_hash and _same(record.path, record):
                    first.setdefault(record.content_hash, record.path)
            embedded = catalog.annotations_for(first)
            manual = catalog.tags_for(first, source="manual")
        finally:
            catalog.close()
        pairs = []
        for digest, path in sorted(first.items(), key=lambda item: item[1]):
            found = annotations.combine([embedded.get(digest, {}), annotations.sidecar(path)])
            pairs += [(path, caption) for caption in annotations.person_captions(found, manual.get(digest, {}))]
        return pairs

    @contextlib.contextmanager
    def _stores(self) -> Iterator[tuple[Catalog, VectorStore]]:
        from indexer.owner.client import OwnerClient, RemoteVectorStore

        catalog = Catalog.for_home(self.home, self.db_url)
        client = OwnerClient.find(self.home) if self.qdrant_url is None else None
        try:
            if client is not None:
                yield catalog, RemoteVectorStore(client)
                return
            from indexer.owner.ownership import Ownership
            from indexer.stores.factory import open_vector_store

            owner = Ownership.acquire(self.home, "models.train") if self.qdrant_url is None else None
            store = open_vector_store(self.home, self.qdrant_url)
            try:
                yield catalog, store
            finally:
                store.close()
                if owner is not None:
                    owner.release()
        finally:
            catalog.close()


def _same(path: str, record) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (info.st_size, info.st_mtime_ns) == (record.size, record.mtime_ns)


def open_source(home: Path, image_tower_id: str) -> IndexVectorSource | None:
    """The index's source for this image tower, or None when no collection of that tower exists."""
    db_url, qdrant_url = os.environ.get("LOUPE_DB_URL") or None, os.environ.get("LOUPE_QDRANT_URL") or None
    if not (Path(home) / "catalog.db").exists() and db_url is None:
        return None
    catalog = Catalog.for_home(Path(home), db_url)
    try:
        match = [c for c in catalog.list_collections() if c.image_tower_id == image_tower_id and c.status != "retired"]
    finally:
        catalog.close()
    if not match:
        return None
    log.info("reading image vectors from the index (collection %s)", match[0].name)
    return IndexVectorSource(Path(home), match[0].name, db_url, qdrant_url)
