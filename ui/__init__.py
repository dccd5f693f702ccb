"""Loupe's Streamlit UI: search, tags, index status and tuning in one place (`python -m ui`).

Presentation only: ranking is `search.SearchEngine`'s, indexing the indexer's, tuning `models.train`'s. The UI either
works through the process that owns the data home (its local API) or, when there is none, becomes the owner itself
so that `python -m ui` alone is a complete app and CLI searches meanwhile go through it.
"""
