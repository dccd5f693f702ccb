"""Indexer: walks photo folders, decodes each file once, embeds it and records it in the catalog and vector store.

Rooms, top to bottom (each may import only the rooms below it; `tests/test_layers.py` enforces it):

- `cli`, `cli_admin`, `cli_common`, `run`: the `python -m indexer` command lines;
- `owner/`: the process that owns a data home (lock, local API, client) and the IndexerService it runs;
- `scan/`: the pipeline from files on disk to vectors (walk, settle, watch, reconcile, decode, embed, sync);
- `stores/`: the catalog (SQLAlchemy) and the vector store (Qdrant Edge / server);
- `settings`: IndexerSettings, read by every room.
"""
