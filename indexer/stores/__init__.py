"""The indexer's stores: the catalog (SQLAlchemy: files, contents, tags, collections) and the vector store (Qdrant).

What lives here: `catalog` (+ `catalog_schema`, `migrations`, `records`), `vectors` (the interface and payload
convention), its two backends `vectors_edge` (Qdrant Edge, embedded) and `vectors_server` (qdrant-client), and the
`factory` that picks one.

May import: `indexer.settings` and `models`. Never the pipeline (`indexer.scan`), the owner or the CLIs: search and
the UI read the stores through here without pulling in the indexer's machinery.
"""
