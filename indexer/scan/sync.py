"""Keep vector payloads true to the catalog: paths, folders and extensions follow the files, tags follow the tags.

The words people gave a photo (`texts` and `words`, indexer.scan.words) are rebuilt with the rest: folder names
below the indexed root and file-name words from the live paths, embedded keywords and captions from the catalog
(recorded when the photo was embedded), those of each path's `.xmp` sidecar (read here, so a moved photo picks up
the sidecar at its new place) and manual tags. A rename or move therefore updates the words with no model call.

The catalog is the source of truth for which paths hold which content; after any change of paths (new, moved,
duplicated, deleted files) the affected contents are *refreshed*: their payload is rebuilt from the catalog in
every live collection, and a content that no path holds any more loses its vector (and its embedding records).
Refreshing is idempotent, so a crash between the catalog and the store is repaired by refreshing again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from indexer.scan import annotations, words
from indexer.stores import fsnames
from indexer.stores.catalog import Catalog
from indexer.stores.records import ContentInfo
from indexer.stores.roots import indexed_roots
from indexer.stores.vectors import VectorPoint, VectorStore, build_payload, point_id

log = logging.getLogger(__name__)
WORDS_META = "payload_words"  # set once every payload carries texts/words (indexes made before them are backfilled)


class PayloadSync:
    def __init__(self, catalog: Catalog, store: VectorStore):
        self.catalog, self.store = catalog, store

    def live_collections(self) -> list[str]:
        return [c.name for c in self.catalog.list_collections() if c.status != "retired"]

    def payloads(self, hashes: Iterable[str]) -> dict[str, dict]:
        """Payload per content that still has live paths (contents without paths are absent)."""
        hashes = sorted(set(hashes))
        paths = self.catalog.paths_for_hashes(hashes)
        contents = self.catalog.contents(hashes)
        tags = self.catalog.tags_for(hashes)
        manual = self.catalog.tags_for(hashes, source="manual")
        embedded = self.catalog.annotations_for(hashes)
        roots = indexed_roots(self.catalog)
        out = {}
        for digest in hashes:
            info = contents.get(digest)
            if digest in paths and info is not None:
                texts = photo_texts(paths[digest], roots, embedded.get(digest, {}), manual.get(digest, {}))
                out[digest] = _payload(info, paths[digest], tags.get(digest, {}), texts)
        return out

    def upsert_vectors(self, collection: str, vectors: dict[str, np.ndarray],
                       visuals: dict[str, np.ndarray] | None = None) -> None:
        """Store contents' vectors (and visual vectors, when given) with payloads built from the catalog."""
        payloads = self.payloads(vectors)
        visuals = visuals or {}
        points = [VectorPoint(point_id(h), v, payloads[h], visuals.get(h)) for h, v in vectors.items() if h in payloads]
        self.store.upsert(collection, points)

    def refresh(self, hashes: Iterable[str]) -> None:
        """Rebuild payloads of these contents everywhere; drop vectors of contents no path holds any more."""
        hashes = sorted(set(hashes) - {None})
        if not hashes:
            return
        delegate = getattr(self.store, "sync_payloads", None)
        if delegate is not None:  # the owner's store seen through its API: the owner rebuilds them (it alone writes)
            delegate(hashes)
            return
        payloads = self.payloads(hashes)
        gone = [h for h in hashes if h not in payloads]
        for collection in self.live_collections():
            stored = set(hashes) - self.catalog.missing_embeddings(hashes, collection)
            for digest in sorted(stored & payloads.keys()):
                self.store.overwrite_payload(collection, point_id(digest), payloads[digest])
            orphans = sorted(stored & set(gone))
            if orphans:
                self.store.delete(collection, [point_id(h) for h in orphans])
                self.catalog.forget_embeddings(orphans, collection)
        if gone:
            log.debug("dropped %d contents that no file holds any more", len(gone))

    def backfill_words(self, chunk: int = 500) -> int:
        """Once per data home: payloads written before they carried words are rebuilt (no model call). Embedded
        keywords of photos indexed before then are not read here (that needs their bytes): they come when a photo is
        embedded again. Returns how many contents were refreshed."""
        if self.catalog.get_meta(WORDS_META):
            return 0
        hashes = sorted(set().union(*(self.catalog.embedded_hashes(c) for c in self.live_collections())))
        for start in range(0, len(hashes), chunk):
            self.refresh(hashes[start:start + chunk])
        self.catalog.set_meta(WORDS_META, "1")
        if hashes:
            log.info("gave %d photos' payloads the words people gave them (folders, file names, sidecars, tags)",
                     len(hashes))
        return len(hashes)

    def sweep(self) -> int:
        """Startup repair after a crash: contents with no live path lose their vectors. Returns how many."""
        orphans = self.catalog.hashes_without_live_paths()
        self.refresh(orphans)
        return len(orphans)


def photo_texts(paths: list[str], roots: list[str], embedded: dict[str, list[str]],
                manual_tags: Iterable[str]) -> dict[str, list[str]]:
    """field → phrases: folder names and file-name words of every path, embedded and sidecar annotations (keyword,
    description, title), and manual tags. Never Loupe's own zero-shot tags: those are guesses, not words people gave."""
    people = annotations.combine([embedded, *(annotations.sidecar(p) for p in paths)])
    texts, roots = [fsnames.to_text(p) for p in paths], [fsnames.to_text(r) for r in roots]  # payloads are Unicode
    return {
        "folder": words.unique(name for p in texts for name in words.folder_names(p, roots)),
        "name": words.unique(w for p in texts for w in words.file_name_words(p)),
        **{kind: people.get(kind, []) for kind in annotations.KINDS},
        "tag": sorted(manual_tags),
    }


def text_tokens(texts: dict[str, list[str]]) -> set[str]:
    return {token for field, values in texts.items() for value in values for token in words.field_tokens(field, value)}


def _payload(info: ContentInfo, paths: list[str], tags: dict[str, float], texts: dict[str, list[str]]) -> dict:
    return build_payload(info.hash, paths, info.taken_at.timestamp(), info.width, info.height, tags=tags,
                         camera=info.camera, texts=texts, words=text_tokens(texts))
