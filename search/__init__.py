"""Read-only queries over a Loupe index: text → image, image → image, weighted and negative prompts, filters,
calibrated scores, near-duplicate collapse, and zero-shot tagging (`python -m search`, `python -m search.tag`)."""

from search.engine import SearchEngine, SearchResult

__all__ = ["SearchEngine", "SearchResult"]
