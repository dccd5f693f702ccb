"""`status_report`: what an index holds and how it is set up, as one JSON-ready dict.

One function serves both `python -m indexer status --json` (no owner: it opens the stores itself) and the owner's
`GET /status`, so the two can never drift apart and a test can compare them key by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from indexer.settings import IndexerSettings
from indexer.stores.catalog import META_DEFAULT_MODEL, Catalog
from indexer.stores.fsnames import to_text  # paths in answers are valid Unicode (JSON)
from indexer.stores.records import CollectionInfo
from indexer.stores.roots import indexed_roots
from indexer.stores.vectors import VectorFilter, VectorStore, VectorStoreError

MAX_FAILURES_LISTED = 50  # a library can hold thousands of broken files; the count is exact, the list a sample


def status_report(
    catalog: Catalog,
    store: VectorStore,
    settings: IndexerSettings,
    *,
    roots: Sequence[Path] | None = None,
    watching: bool = False,
    models: list[dict] | None = None,
) -> dict[str, Any]:
    """Files per status (with failure reasons), model, collections, stores, data home and text tower in use.

    `roots` defaults to the configured ones; a running owner passes its own, which `POST /index` may have grown.
    `indexed_roots` are the folders ever added to this index. A renamed or moved file's old path counts as 'moved',
    not 'deleted'.
    """
    active = catalog.active_collection()
    counts = catalog.counts(active.name if active else None)
    moved = min(catalog.moved_count(), counts["deleted"])
    failures = catalog.failures()
    return {
        "home": str(settings.home),
        "model": catalog.get_meta(META_DEFAULT_MODEL),
        "files": {
            **counts,
            "deleted": counts["deleted"] - moved,  # paths whose photo is gone; a rename's old path is 'moved'
            "moved": moved,
            "failures": [{"path": to_text(path), "reason": reason} for path, reason in failures[:MAX_FAILURES_LISTED]],
        },
        "collection": _collection(active, store, catalog.visual_dim(active.name)) if active else None,
        "collections": [_collection(info, None, catalog.visual_dim(info.name)) for info in catalog.list_collections()],
        "text_version": _text_version(settings.home, active),
        "catalog": {"where": catalog.where},
        "store": store_description(store),
        "roots": [to_text(str(root)) for root in (settings.roots if roots is None else roots)],
        "indexed_roots": [to_text(r) for r in indexed_roots(catalog)],  # every folder ever added (and not forgotten)
        "watching": watching,
        "models_loaded": models,  # a running owner's model slots (None when no owner answers)
    }


def store_description(store: VectorStore) -> dict[str, str]:
    """{'kind': 'edge' | 'server' | 'local' | type name, 'where': path or URL} without importing any backend."""
    root = getattr(store, "root", None)
    if root is not None:
        return {"kind": "edge", "where": str(root)}
    where = getattr(store, "where", None)
    if where is not None:
        return {"kind": "local" if getattr(store, "_local", False) else "server", "where": str(where)}
    return {"kind": type(store).__name__, "where": ""}


def _collection(info: CollectionInfo, store: VectorStore | None, visual_dim: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": info.name,
        "model": info.model,
        "image_tower_id": info.image_tower_id,
        "dim": info.dim,
        "visual_dim": visual_dim,  # the visual vector (near-duplicates, "more like this"); None: not there yet
        "status": info.status,
        "created_at": _iso(info.created_at),
        "completed_at": _iso(info.completed_at),
    }
    if store is not None:
        try:
            out["points"] = store.count(info.name)
            if visual_dim:
                out["points_without_visual"] = store.count(info.name, VectorFilter(has_visual=False))
        except (VectorStoreError, KeyError) as err:  # a store wiped by hand: report it rather than fail the status
            out["points"] = None
            out["store_error"] = str(err)
    return out


def _text_version(home: Path, active: CollectionInfo | None) -> str | None:
    """The promoted text tower for the active image tower (None: the base model's), read from disk.

    That is the tower in use: a long-running owner checks the same file before every text query (models.active).
    Imported lazily because `models` imports torch, which `status` otherwise never needs.
    """
    if active is None:
        return None
    from models import versions

    path = versions.active(home, active.image_tower_id)
    return path.name if path else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
