"""Files → vectors: read once, hash, reuse known contents, decode ahead of the model, embed in batches, store.

Each file is read exactly once; its bytes are hashed and, only when the content has no vector in the target
collection yet, decoded and preprocessed — all in a thread pool that runs ahead of the model (Pillow and the JPEG
decoder release the GIL). The main thread only batches, runs the locked tower and writes. At most
`2 × batch_size + workers` files are in flight, so memory is bounded whatever the library size.

Write order per batch (crash safety): content metadata + hashes → vectors upserted → embeddings recorded → files
marked indexed. A crash anywhere leaves files 'pending' that are simply redone; point ids derive from the content
hash, so a redo overwrites rather than duplicates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from indexer.scan import annotations
from indexer.scan.decode import DecodeError, decode_image
from indexer.scan.hashing import content_hash
from indexer.scan.sync import PayloadSync
from indexer.scan.thumbnails import make_thumbnail, thumbnail_path
from indexer.stores.catalog import Catalog
from indexer.stores.records import UNREADABLE, ContentInfo

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One file after the worker: either known content, a decoded image ready for the model, or a failure."""

    path: str
    hash: str | None = None
    pixels: torch.Tensor | None = None  # (3, H, W) preprocessed, None when no model call is needed
    content: ContentInfo | None = None
    annotations: dict[str, list[str]] = field(default_factory=dict)  # embedded keywords/captions (XMP, IPTC)
    error: str | None = None
    vanished: bool = False  # moved or deleted while in flight: the reconciler records it, nothing is marked failed


@dataclass
class BatchReport:
    embedded: int = 0  # files whose content went through the model
    reused: int = 0  # files whose content already had a vector (moves, renames, duplicates)
    failed: int = 0
    vanished: list[str] = field(default_factory=list)  # gone mid-pipeline: to be reconciled as deletions


class Pipeline:
    """Runs candidates through read → hash → (decode → embed) → store for one collection."""

    def __init__(self, catalog: Catalog, sync: PayloadSync, collection: str, model_provider, *, batch_size: int,
                 workers: int, thumbnails_dir: Path | None, thumbnail_size: int, max_megapixels: float,
                 on_embedded: Callable[[list[str], torch.Tensor], None] | None = None):
        self.catalog, self.sync, self.collection = catalog, sync, collection
        self.model_provider = model_provider  # () -> ModelBundle, loaded lazily: no model for a no-op rescan
        self.batch_size, self.workers = batch_size, workers
        self.thumbnails_dir, self.thumbnail_size, self.max_megapixels = thumbnails_dir, thumbnail_size, max_megapixels
        self.on_embedded = on_embedded  # e.g. tag-on-arrival: (hashes, vectors)
        self.model_calls = 0  # images sent through the model (tests assert moves cost none)
        self.visual = False  # also store the visual vector (the collection declares one; set by the service)
        self._noted: set[str] = set()  # inference labels already recorded with the collection by this pipeline

    def run(self, paths: list[str], stop: threading.Event, progress=None) -> BatchReport:
        report = BatchReport()
        batch: list[Prepared] = []
        for item in self._prepared(paths, stop):
            if progress is not None:
                progress.update(1)
            if item.vanished:
                report.vanished.append(item.path)
            elif item.error is not None:
                self.catalog.mark_failed(item.path, item.error)
                report.failed += 1
            elif item.pixels is None:
                self._attach([item])
                report.reused += 1
            else:
                batch.append(item)
                if len(batch) >= self.batch_size:
                    report.embedded += self._embed(batch)
                    batch = []
        if batch:
            report.embedded += self._embed(batch)  # a stop still finishes what was read: consistent, nothing lost
        return report

    def _prepared(self, paths: list[str], stop: threading.Event) -> Iterator[Prepared]:
        """Results in submission order, keeping a bounded window of work in flight."""
        window = 2 * self.batch_size + self.workers
        with ThreadPoolExecutor(self.workers, thread_name_prefix="loupe-decode") as pool:
            pending: list[Future] = []
            it = iter(paths)
            for path in it:
                if stop.is_set():
                    break
                pending.append(pool.submit(self._prepare, path))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()

    def _prepare(self, path: str) -> Prepared:
        """Never raises: every fault of one file (gone, unreadable, undecodable, odd metadata, a thumbnail that
        cannot be written) is that file's outcome, so one file can never end a scan or the watcher."""
        try:
            return self._prepare_or_raise(path)
        except FileNotFoundError:
            return Prepared(path, vanished=True)  # moved/deleted between the event and now: not a failure
        except OSError as err:
            return Prepared(path, error=f"{UNREADABLE}{err.strerror or err}")
        except Exception as err:  # a bug in a decoder plugin or in metadata parsing must stay one file's problem
            log.warning("unexpected error preparing %r", path, exc_info=True)
            return Prepared(path, error=f"unexpected error: {type(err).__name__}: {err}"[:500])

    def _prepare_or_raise(self, path: str) -> Prepared:
        data = Path(path).read_bytes()
        digest = content_hash(data)
        if self.catalog.has_embedding(digest, self.collection):
            return Prepared(path, hash=digest)
        bundle = self.model_provider()  # loaded on first need only: a rescan of known files never loads it
        try:
            decoded = decode_image(data, min_side=2 * bundle.input_size, name=path, max_megapixels=self.max_megapixels)
        except DecodeError as err:
            return Prepared(path, hash=digest, error=err.reason)
        # A preprocessing that takes arrays shares one export of the pixels with the thumbnail (decode.py: pixels)
        pixels = bundle.preprocess(decoded.pixels if getattr(bundle.preprocess, "accepts_arrays", False)
                                   else decoded.image)
        return Prepared(path, digest, pixels, self._content(path, digest, decoded), annotations.embedded(data))

    def _content(self, path: str, digest: str, decoded) -> ContentInfo:
        meta = decoded.metadata
        taken = meta.taken_at or datetime.fromtimestamp(Path(path).stat().st_mtime, tz=timezone.utc)
        return ContentInfo(digest, decoded.width, decoded.height, taken, meta.camera_make, meta.camera_model,
                           meta.gps_lat, meta.gps_lon, self._thumbnail(digest, decoded))

    def _thumbnail(self, digest: str, decoded) -> str | None:
        """A thumbnail that cannot be written (full disk, odd image mode) costs the thumbnail, not the photo."""
        if self.thumbnails_dir is None:
            return None
        dest = thumbnail_path(self.thumbnails_dir, digest)
        try:
            if not dest.exists():
                make_thumbnail(decoded.pixels, dest, self.thumbnail_size)
        except Exception as err:
            log.warning("no thumbnail for %s: %s", digest[:12], err)
            return None
        return str(dest.relative_to(self.thumbnails_dir))

    def _attach(self, items: list[Prepared]) -> None:
        """Known content at a new path: no model call, only paths change."""
        self.catalog.set_hashes({i.path: i.hash for i in items})
        self.sync.refresh({i.hash for i in items})
        self.catalog.mark_indexed([i.path for i in items], self.collection)

    def _embed(self, batch: list[Prepared]) -> int:
        unique = list({item.hash: item for item in batch}.values())  # duplicates within a batch: one model call
        bundle = self.model_provider()
        pixels = torch.stack([item.pixels for item in unique])
        vectors, visuals = bundle.model.encode_images(pixels, with_visual=True) if self.visual else (
            bundle.model.encode_images(pixels), None)  # (B, D), (B, V): one forward pass either way
        vectors = vectors.cpu()
        self.model_calls += len(unique)
        self.catalog.upsert_contents([item.content for item in unique])
        self.catalog.set_annotations({item.hash: item.annotations for item in unique})
        self.catalog.set_hashes({item.path: item.hash for item in batch})
        by_hash = {item.hash: vec.numpy() for item, vec in zip(unique, vectors, strict=True)}
        visual_by_hash = None if visuals is None else {
            item.hash: vec.numpy() for item, vec in zip(unique, visuals.cpu(), strict=True)}
        self.sync.upsert_vectors(self.collection, by_hash, visual_by_hash)
        label = getattr(bundle.model, "inference", {}).get("image", "torch fp32")
        if label not in self._noted:  # runtime and precision, recorded with the collection (models.runtime)
            self.catalog.note_inference(self.collection, label)
            self._noted.add(label)
        self.catalog.record_embeddings([item.hash for item in unique], self.collection)
        self.catalog.mark_indexed([item.path for item in batch], self.collection)
        if self.on_embedded is not None:
            self.on_embedded([item.hash for item in unique], vectors)
        return len(batch)

