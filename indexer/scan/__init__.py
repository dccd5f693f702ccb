"""The indexing pipeline: from files on disk to vectors and catalog rows.

What lives here: `walk` (which files), `settle` (wait until a file stops changing), `watch` (filesystem events),
`reconcile` (disk vs catalog: new, changed, moved, deleted), `hashing` (content identity), `decode` + `exif`
(pixels and metadata), `thumbnails`, `pipeline` (read → hash → decode → embed → store), `sync` (payloads that
follow a file's paths and tags).

May import: `indexer.stores`, `indexer.settings` and `models`. Never the owner (`indexer.owner`) or the CLIs.
"""
