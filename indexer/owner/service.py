"""`IndexerService`: the stores, the model and the loop that keeps them true to the filesystem.

`scan()` reconciles every root once; `watch()` then follows filesystem events (or polls) until `stop` is set:
the batch in flight is finished, everything is flushed, and the stores are closed — Ctrl-C is a clean exit.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from indexer.owner.modelslot import ModelSlot, complete_collection, resolve_model, target_collection
from indexer.scan.decode import IMAGE_EXTENSIONS
from indexer.scan.pipeline import Pipeline
from indexer.scan.reconcile import Reconciled, Reconciler
from indexer.scan.settle import SettleQueue
from indexer.scan.sync import PayloadSync
from indexer.scan.walk import FileFilter
from indexer.settings import IndexerSettings
from indexer.stores.catalog import Catalog
from indexer.stores.factory import open_vector_store
from indexer.stores.vectors import VectorStore

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    scanned_roots: int = 0
    embedded: int = 0
    reused: int = 0
    failed: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped_roots: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, rec: Reconciled) -> None:
        self.deleted += rec.deleted
        self.unchanged += rec.unchanged
        self.skipped_roots += rec.skipped_roots


class IndexerService:
    def __init__(self, settings: IndexerSettings, *, progress: bool = False):
        self.settings = settings
        self.progress = progress
        self.stop = threading.Event()
        self.vocabulary = None  # tag-on-arrival: parsed now so that a bad file fails at start, with line numbers
        self._tagger, self._tagger_text = None, None  # its classifier, built on the first new photo
        if settings.tag_vocabulary:
            from models.tagging import Vocabulary

            self.vocabulary = Vocabulary.load(settings.tag_vocabulary)
        self.catalog = Catalog.for_home(settings.home, settings.db_url)
        self.store: VectorStore = open_vector_store(
            settings.home, settings.qdrant_url, settings.qdrant_api_key, shard_number=settings.shard_number,
            replication_factor=settings.replication_factor,
            write_consistency_factor=settings.write_consistency_factor)
        self.sync = PayloadSync(self.catalog, self.store)
        self.rules = FileFilter(IMAGE_EXTENSIONS, settings.ignore, settings.include_hidden, settings.follow_symlinks)
        self.roots = tuple(settings.roots)
        self.model_name, self.slot = resolve_model(settings, self.catalog)
        self.collection = target_collection(self.catalog, self.model_name, self.slot)
        self.store.ensure_collection(self.collection.name, self.collection.dim)
        self.reconciler = Reconciler(self.catalog, self.sync, self.rules, self.roots)
        self.pipeline = Pipeline(
            self.catalog, self.sync, self.collection.name, self.slot, batch_size=settings.batch_size,
            workers=settings.workers, thumbnails_dir=settings.thumbnails_dir if settings.thumbnails else None,
            thumbnail_size=settings.thumbnail_size, max_megapixels=settings.max_megapixels,
            on_embedded=self._tag_arrivals if self.vocabulary is not None else None)
        self._serving: ModelSlot | None = None
        self._watcher = None  # (observer, handler) while watching
        self.work_lock = threading.Lock()  # one writer at a time: the scan/watch loop and API "index" requests
        self.repaired = self.sync.sweep()  # a crash may have left vectors of deleted contents

    @property
    def watching(self) -> bool:
        """True once `watch()` has its observer scheduled (events from then on are not missed)."""
        return self._watcher is not None

    def serving_slot(self) -> ModelSlot:
        """The model of the collection searches read: while a new model's collection is being built, queries must
        keep using the old model (its text tower reads the old image space)."""
        active = self.catalog.active_collection()
        if active is None or active.model == self.model_name:
            return self.slot
        if self._serving is None or self._serving.name != active.model:
            self._serving = ModelSlot(active.model, self.settings.device, self.settings.home)
        return self._serving

    def add_roots(self, roots: tuple[Path, ...]) -> None:
        """Index more folders (API `/index`); a running watch starts following them too."""
        new = tuple(r for r in roots if r not in self.roots)
        self.roots = self.roots + new
        self.reconciler.roots = self.roots
        if new and self._watcher is not None:
            observer, handler = self._watcher
            for root in new:
                observer.schedule(handler, str(root), recursive=True, follow_symlink=self.rules.follow_symlinks)

    def scan(self, roots: tuple[Path, ...] | None = None) -> RunReport:
        """Reconcile roots (all by default) and process what is new or changed."""
        report, started = RunReport(), time.monotonic()
        for root in roots or self.roots:
            if self.stop.is_set():
                break
            with self.work_lock:
                rec = self.reconciler.folder(root, self.collection.name)
                report.scanned_roots += 1
                self._process(rec, report, f"indexing {root}")
        self._maybe_complete()
        report.seconds = time.monotonic() - started
        return report

    def handle(self, files: list[Path], folders: list[Path]) -> RunReport:
        """Process settled watch events: whole folders are rescanned, single files reconciled."""
        report, started = RunReport(), time.monotonic()
        with self.work_lock:
            for folder in folders:
                rec = self.reconciler.folder(folder, self.collection.name)
                self._process(rec, report, None)
            if files:
                self._process(self.reconciler.paths(files, self.collection.name), report, None)
        self._maybe_complete()
        report.seconds = time.monotonic() - started
        return report

    def _process(self, rec: Reconciled, report: RunReport, label: str | None) -> None:
        """Candidates first, then deletions: a move's new path must find the content's vector still there."""
        if rec.candidates:
            bar = tqdm(total=len(rec.candidates), desc=label, unit="img", disable=not (self.progress and label),
                       dynamic_ncols=True)
            try:
                result = self.pipeline.run(rec.candidates, self.stop, bar)
            finally:
                bar.close()
            report.embedded += result.embedded
            report.reused += result.reused
            report.failed += result.failed
        if not self.stop.is_set():  # a stop mid-run leaves deletions to the next scan: consistent either way
            self.reconciler.finish(rec)
        report.add(rec)

    def _maybe_complete(self) -> None:
        if not self.stop.is_set():
            complete_collection(self.catalog, self.collection)
            self.collection = self.catalog.get_collection(self.collection.name) or self.collection
            self._maybe_optimize()

    def _maybe_optimize(self) -> None:
        """Qdrant Edge never builds its HNSW index by itself: until `optimize`, every query is brute force (22 ms at
        100k vectors, 100 ms at 300k; 1-8 ms with HNSW, measured in bench/capacity.py). Build it after the
        collection grew by `optimize_after` vectors (and 10%), between batches, so imports stay fast."""
        optimize = getattr(self.store, "optimize", None)
        if optimize is None:
            return
        key = f"optimized_points:{self.collection.name}"
        total, last = self.store.count(self.collection.name), int(self.catalog.get_meta(key) or 0)
        if abs(total - last) < max(self.settings.optimize_after, last // 10):
            return
        log.info("building the search index for %d vectors", total)
        optimize(self.collection.name)
        self.catalog.set_meta(key, str(total))

    def _tag_arrivals(self, hashes: list[str], vectors) -> None:
        """Tag-on-arrival: new photos get the vocabulary's tags at once, written as `search.tag --write` does
        (catalog source 'zero-shot', then payloads). A tagging failure is logged; it never stops indexing."""
        try:
            scores = self._arrival_classifier().assign(vectors)
            self.catalog.set_tags_many(dict(zip(hashes, scores, strict=True)), "zero-shot")
            self.sync.refresh(hashes)
        except Exception:
            log.exception("tagging %d new photos failed; indexing goes on", len(hashes))

    def _arrival_classifier(self):
        """Built once per text tower (a promotion rebuilds it); uses the collection's last calibration unless it
        belongs to another vocabulary or tower or the library has more than doubled since, then calibrates anew."""
        from models.tagging import CALIBRATION_META_KEY, TagClassifier, TagPolicy, sample_library

        model = self.slot.active()
        model.refresh()
        if self._tagger is None or self._tagger_text != model.text_version:
            policy = TagPolicy.for_model(self.collection.model)  # the precision bar: nothing below it is written
            self._tagger = TagClassifier.build(model.encode_texts, self.vocabulary).with_policy(policy)
            self._tagger_text = model.text_version
        key, size = CALIBRATION_META_KEY.format(self.collection.name), self.store.count(self.collection.name)
        stored = self.catalog.get_meta(key)
        restored = self._tagger.with_calibration(stored) if stored else None
        if restored is not None and not restored.calibration.stale(size):
            return restored
        points = self.store.scroll(self.collection.name, with_vectors=True)
        calibrated = self._tagger.calibrate(sample_library(p.vector for p in points))
        if calibrated.calibration is not None:
            self.catalog.set_meta(key, calibrated.to_json())
        return calibrated

    def watch(self, on_batch=None) -> None:
        """Follow filesystem events until `stop` is set."""
        from indexer.scan.watch import start_observer

        queue = SettleQueue(self.settings.settle)
        self.queue = queue
        observer, handler = start_observer(self.roots, queue, self.rules, self.settings.poll)
        self._watcher = (observer, handler)
        log.info("watching %s", ", ".join(map(str, self.roots)))
        try:
            while not self.stop.is_set():
                queue.wakeup.wait(queue.next_deadline())
                queue.wakeup.clear()
                files, folders = queue.ready()
                if files or folders:
                    report = self.handle(files, folders)
                    if on_batch is not None:
                        on_batch(report)
        finally:
            self._watcher = None
            observer.stop()
            observer.join(timeout=5)

    def close(self) -> None:
        self.store.close()
        self.catalog.close()
