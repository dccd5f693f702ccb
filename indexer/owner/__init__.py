"""The process that owns a data home, and the service it runs.

What lives here: `ownership` (lock + owner.json + token: one process per data home), `service` (IndexerService:
scan, watch, embed, the model slot), `modelslot` (which model and collection the index uses), `status`, `jobs`
(background work the API starts), `api` (the local JSON API on 127.0.0.1) `client` (how other processes talk
to it) and `vector_source` (the index's vectors as a training source for models.train, through the owner
when one runs).

May import: `indexer.scan`, `indexer.stores`, `indexer.settings` and `models`. Never the CLIs (`indexer.cli*`,
`indexer.run`), search or the UI.
"""
