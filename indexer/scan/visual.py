"""The visual vector of a collection: declared when it is made, added to an older one, backfilled photo by photo.

Every photo indexed from now on gets its visual vector in the same forward pass as its text-aligned one (the
pipeline asks `encode_images(..., with_visual=True)`). A collection made before the visual vector existed gains it on
the next scan, in two steps that never happen silently:

1. `prepare_collection` copies the collection into the two-vector layout (Qdrant cannot add a vector to an existing
   collection). Only stored vectors and payloads are copied: no photo goes through the model for this.
2. `VisualBackfill` then runs the image tower once over every photo that has no visual vector yet (its text-aligned
   vector is left as it is), and says up front how many photos that is and, after the first batch, how long it will
   take at the rate measured on this machine. A stop (Ctrl-C) between batches loses nothing: the next scan finds
   the photos still without one (`VectorFilter(has_visual=False)`) and carries on.

Until a photo has its visual vector it keeps working with the text-aligned one (search, and "more like this" falls
back to it, see search.engine). `IndexerSettings.visual_vectors=False` (`--no-visual-vectors`) skips all of this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from indexer.scan.decode import DecodeError, decode_image
from indexer.scan.hashing import content_hash
from indexer.stores.catalog import Catalog
from indexer.stores.records import CollectionInfo
from indexer.stores.vectors import UPGRADE_SUFFIX, VISUAL, VectorFilter, VectorStore

log = logging.getLogger(__name__)

RATE_SAMPLE = 16  # photos in the first, timed batch whose rate the estimate is based on


def prepare_collection(catalog: Catalog, store: VectorStore, collection: CollectionInfo,
                       model_provider: Callable, enabled: bool = True) -> bool:
    """Ensure the store holds `collection`, with the visual vector when `enabled`; True when it has one.

    A new collection is created with both vectors. An existing one without the visual vector is copied into the
    two-vector layout (announced, with the number of points copied); an interrupted copy is finished. The catalog
    records the visual vector's size (`Catalog.visual_dim`). The model is loaded only when a collection is made or
    upgraded, so a no-op rescan of an up-to-date index still loads none.
    """
    name, dim = collection.name, collection.dim
    present = set(store.collections())
    if not enabled:
        if name not in present and name + UPGRADE_SUFFIX not in present:
            store.ensure_collection(name, dim)
        elif name + UPGRADE_SUFFIX in present:
            store.add_visual(name, model_provider().model.visual_dim)  # finish an interrupted copy: never lose it
        return VISUAL in store.vector_dims(name)
    if name in present and name + UPGRADE_SUFFIX not in present:
        dims = store.vector_dims(name)
        if VISUAL in dims:
            if catalog.visual_dim(name) != dims[VISUAL]:
                catalog.set_visual_dim(name, dims[VISUAL])
            store.ensure_collection(name, dim, dims[VISUAL])  # checks the size, makes any missing payload index
            return True
    visual_dim = model_provider().model.visual_dim
    if name in present or name + UPGRADE_SUFFIX in present:
        points = store.count(name) if name in present else store.count(name + UPGRADE_SUFFIX)
        log.warning("collection %s has no visual vector (used for near-duplicates and \"more like this\"): copying "
                    "its %d vectors into a layout with one; no photo is re-embedded for this step", name, points)
        started = time.monotonic()
        store.add_visual(name, visual_dim)
        log.info("collection %s copied in %.1f s", name, time.monotonic() - started)
    store.ensure_collection(name, dim, visual_dim)
    catalog.set_visual_dim(name, visual_dim)
    return True


@dataclass
class BackfillReport:
    done: int = 0  # photos that got their visual vector
    failed: int = 0  # photos whose file could not be read or decoded (they keep their text-aligned vector)
    left: int = 0  # photos still without one (a stop)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Item:
    point: str
    pixels: torch.Tensor | None


class VisualBackfill:
    """Gives the photos of a collection that lack a visual vector one: read, check, decode, one forward pass."""

    def __init__(self, store: VectorStore, collection: str, model_provider: Callable, *, batch_size: int,
                 workers: int, max_megapixels: float):
        self.store, self.collection, self.model_provider = store, collection, model_provider
        self.batch_size, self.workers, self.max_megapixels = batch_size, workers, max_megapixels

    def missing(self) -> list[tuple[str, str, list[str]]]:
        """(point id, content hash, live paths) of every point without a visual vector."""
        points = self.store.scroll(self.collection, VectorFilter(has_visual=False), with_vectors=False)
        return [(p.id, p.payload.get("content_hash", ""), list(p.payload.get("paths", []))) for p in points]

    def run(self, stop: threading.Event, progress: Callable[[int], None] | None = None) -> BackfillReport:
        report, started = BackfillReport(), time.monotonic()
        todo = self.missing()
        if not todo:
            return report
        log.warning("%d photos need a visual vector (near-duplicates, \"more like this\"): one pass of the image "
                    "tower over each, their text-aligned vectors stay as they are. Search works meanwhile; a stop "
                    "loses nothing (the next scan carries on).", len(todo))
        bundle = self.model_provider()
        first = min(RATE_SAMPLE, self.batch_size)
        chunks = [todo[:first]] + [todo[i:i + self.batch_size] for i in range(first, len(todo), self.batch_size)]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="loupe-visual") as pool:
            for index, chunk in enumerate(chunks):
                if stop.is_set():
                    report.left = sum(len(c) for c in chunks[index:])
                    break
                t0 = time.monotonic()
                items = list(pool.map(lambda entry: self._prepare(bundle, entry), chunk))
                good = [i for i in items if i.pixels is not None]
                report.failed += len(items) - len(good)
                if good:
                    _, visuals = bundle.model.encode_images(torch.stack([i.pixels for i in good]), with_visual=True)
                    self.store.set_visual(self.collection, {
                        i.point: v.numpy() for i, v in zip(good, visuals.float().cpu(), strict=True)})
                report.done += len(good)
                if progress is not None:
                    progress(len(chunk))
                if index == 0 and len(chunks) > 1:
                    rate = len(chunk) / max(time.monotonic() - t0, 1e-6)
                    remaining = len(todo) - len(chunk)
                    log.warning("visual vectors: ~%.0f min for the remaining %d photos at the measured %.1f "
                                "photos/s", max(1.0, remaining / rate / 60), remaining, rate)
        report.seconds = time.monotonic() - started
        log.info("visual vectors: %d added, %d failed, %d left, in %.1f s", report.done, report.failed, report.left,
                 report.seconds)
        return report

    def _prepare(self, bundle, entry: tuple[str, str, list[str]]) -> _Item:
        """The first live path whose bytes still are this content, decoded for the model; none: pixels None."""
        point, digest, paths = entry
        for path in paths:
            try:
                data = Path(path).read_bytes()
                if digest and content_hash(data) != digest:
                    continue  # changed since: the pipeline re-embeds it with both vectors
                decoded = decode_image(data, min_side=2 * bundle.input_size, name=path,
                                       max_megapixels=self.max_megapixels)
                return _Item(point, bundle.preprocess(decoded.image))
            except (OSError, DecodeError) as err:
                log.debug("visual vector of %s: %s", path, err)
        return _Item(point, None)
