"""`open_vector_store`: the one place that picks a vector-store backend.

It sits above both backends (which import the shared types from `indexer.stores.vectors`), so the types module
never imports a backend and no import circle forms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.stores.vectors import VectorStore


def open_vector_store(
    home: Path,
    url: str | None = None,
    api_key: str | None = None,
    **cluster_opts: Any,
) -> VectorStore:
    """Qdrant Edge under `<home>/vectors` when `url` is None, else the Qdrant server at `url`.

    `cluster_opts` (shard_number, replication_factor, write_consistency_factor, timeout) go to the server's
    collection creation; they are ignored for the embedded store, which is one shard on one machine.
    """
    if url is None:
        from indexer.stores.diskspace import edge_open_bytes, ensure_free
        from indexer.stores.homedir import prepare_home
        from indexer.stores.vectors_edge import EdgeVectorStore

        prepare_home(home)
        ensure_free(home, edge_open_bytes(home / "vectors"), "opening the embedded vector store (its write-ahead log)")

        return EdgeVectorStore(home / "vectors")
    from indexer.stores.vectors_server import ServerVectorStore

    return ServerVectorStore.connect(url, api_key=api_key, **cluster_opts)
