"""Indexer: walks photo folders, decodes each file once, embeds it and records it in the catalog and vector store."""
