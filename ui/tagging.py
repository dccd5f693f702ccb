"""Zero-shot tagging from the UI: `search.tag.FolderTagger` (what `python -m search.tag --write` runs) in a task.

Progress comes from watching the tagger's own calls through thin proxies — prompts encoded (the vocabulary × its
templates) and photos read from the folder's scroll — so the tagger runs unmodified and the page shows a real
percentage, not a spinner.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ui.jobs import Task

PROMPTS_SHARE = 0.4  # of the progress bar: encoding the vocabulary's prompts; the rest is classifying photos


@dataclass(frozen=True)
class TagRequest:
    folder: str  # absolute, indexed
    vocabulary_text: str | None = None  # None: the default vocabulary; else a vocabulary in models/data/tags.txt form
    top_k: int | None = None  # at most this many tags per photo
    threshold: float | None = None  # fixed probability instead of the library calibration


class _CountingStore:
    """The backend's store; points scrolled under a folder filter (the classify pass) are counted."""

    def __init__(self, store, on_point):
        self._store, self._on_point = store, on_point

    def scroll(self, name, filter=None, *args, **kwargs):
        for point in self._store.scroll(name, filter, *args, **kwargs):
            if filter is not None and filter.folder is not None:
                self._on_point()
            yield point

    def __getattr__(self, attr):
        return getattr(self._store, attr)


class _CountingBackend:
    """The backend with `encode_texts` counted (prompts) and its store wrapped in `_CountingStore`."""

    def __init__(self, backend, on_texts, on_point):
        self._backend, self._on_texts = backend, on_texts
        self.store = _CountingStore(backend.store, on_point)

    def encode_texts(self, texts):
        vectors = self._backend.encode_texts(texts)
        self._on_texts(len(texts))
        return vectors

    def __getattr__(self, attr):
        return getattr(self._backend, attr)


def load_vocabulary(text: str | None):
    """The default vocabulary, or one edited on the page (`VocabularyError` names every bad line)."""
    from models.tagging import Vocabulary

    return Vocabulary.load("default") if text is None else Vocabulary.parse(text, "the vocabulary edited in the UI")


def tag_work(services, request: TagRequest):
    """The task body: build and calibrate the classifier, classify the folder, write the tags, summarise."""

    def work(task: Task) -> dict:
        from models.tagging import DEFAULT_TEMPLATES
        from search.tag import FolderTagger

        vocabulary = load_vocabulary(request.vocabulary_text)
        prompts = sum(len(tag.prompts_for(DEFAULT_TEMPLATES)) for tag in vocabulary.tags)
        counts = {"prompts": 0, "photos": 0}
        backend = services.backend()
        total = max(1, backend.store.count(backend.collection.name, _folder_filter(request.folder)))

        def on_texts(n: int) -> None:
            counts["prompts"] += n
            task.update(PROMPTS_SHARE * min(1.0, counts["prompts"] / max(1, prompts)),
                        f"encoding {len(vocabulary.tags)} tags ({counts['prompts']}/{prompts} prompts)")

        def on_point() -> None:
            counts["photos"] += 1
            task.update(PROMPTS_SHARE + (0.95 - PROMPTS_SHARE) * counts["photos"] / total,
                        f"tagging photos ({counts['photos']}/{total})")

        tagger = FolderTagger(_CountingBackend(backend, on_texts, on_point), services.catalog())
        tagger.build(vocabulary, DEFAULT_TEMPLATES)
        photos = tagger.classify(request.folder, request.top_k, request.threshold)
        task.update(0.95, "writing tags…")
        with services.write_lock():
            tagger.write(photos)
        top = Counter(tag for photo in photos for tag in photo.tags).most_common(10)
        tagged = sum(1 for photo in photos if photo.tags)
        task.update(1.0, f"{tagged} of {len(photos)} photos tagged")
        return {"folder": request.folder, "photos": len(photos), "tagged": tagged, "top": top}

    return work


def _folder_filter(folder: str):
    from indexer.stores.vectors import VectorFilter

    return VectorFilter(folder=folder)
