"""`IndexerService`: the stores, the model and the loop that keeps them true to the filesystem.

`scan()` reconciles every root once; `watch()` then follows filesystem events (or polls) until `stop` is set:
the batch in flight is finished, everything is flushed, and the stores are closed — Ctrl-C is a clean exit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tqdm import tqdm

from indexer.owner.memory import release_freed_memory
from indexer.owner.modelslot import ModelSlot, complete_collection, resolve_model, target_collection
from indexer.scan import annotations
from indexer.scan.check import Findings, IndexCheck
from indexer.scan.decode import IMAGE_EXTENSIONS
from indexer.scan.pipeline import Pipeline
from indexer.scan.reconcile import Reconciled, Reconciler
from indexer.scan.settle import SettleQueue
from indexer.scan.sync import PayloadSync
from indexer.scan.visual import VisualBackfill, prepare_collection
from indexer.scan.walk import FileFilter
from indexer.settings import IndexerSettings
from indexer.stores.catalog import Catalog
from indexer.stores.catalog_schema import utc_now
from indexer.stores.diskspace import BATCH_WRITE_BYTES, ensure_free
from indexer.stores.factory import open_vector_store
from indexer.stores.roots import remember_roots
from indexer.stores.vectors import VectorFilter, VectorStore

log = logging.getLogger(__name__)

MOVE_WINDOW_S = 60.0  # watch: how far apart the halves of one rename may be seen


@dataclass
class RunReport:
    scanned_roots: int = 0
    embedded: int = 0
    reused: int = 0
    failed: int = 0
    deleted: int = 0
    moved: int = 0  # old paths of renamed/moved photos (not in `deleted`; their new paths are in `reused`)
    unchanged: int = 0
    skipped_roots: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, rec: Reconciled) -> None:
        self.deleted += rec.deleted
        self.moved += rec.moved
        self.unchanged += rec.unchanged
        self.skipped_roots += rec.skipped_roots


class IndexerService:
    @staticmethod
    def _balance_threads(settings: IndexerSettings) -> int:
        """Decode workers for this process; on CPU inference also sets torch's intra-op threads (process-wide) so
        that the pool and the model split the cores (`IndexerSettings.thread_plan`)."""
        import torch  # the pipeline imports it anyway

        device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        workers, torch_threads = settings.thread_plan(cuda=device.startswith("cuda"))
        if torch_threads and torch_threads != torch.get_num_threads():
            torch.set_num_threads(torch_threads)
        log.info("decode workers %d, torch threads %d (device %s)", workers, torch.get_num_threads(), device)
        return workers

    def __init__(self, settings: IndexerSettings, *, progress: bool = False, startup_check: bool = True):
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
        self.workers = self._balance_threads(settings)
        self.collection = target_collection(self.catalog, self.model_name, self.slot)
        has_visual = prepare_collection(self.catalog, self.store, self.collection, self.slot, settings.visual_vectors)
        self.reconciler = Reconciler(self.catalog, self.sync, self.rules, self.roots)
        self.pipeline = Pipeline(
            self.catalog, self.sync, self.collection.name, self.slot, batch_size=settings.batch_size,
            workers=self.workers, thumbnails_dir=settings.thumbnails_dir if settings.thumbnails else None,
            thumbnail_size=settings.thumbnail_size, max_megapixels=settings.max_megapixels,
            on_embedded=self._tag_arrivals if self.vocabulary is not None else None)
        self.pipeline.visual = has_visual
        self.visual_backfill = VisualBackfill(
            self.store, self.collection.name, self.slot, batch_size=settings.batch_size, workers=self.workers,
            max_megapixels=settings.max_megapixels) if has_visual else None
        self._serving: ModelSlot | None = None
        self._watcher = None  # (observer, handler) while watching
        self._events_fed = False  # events come from a supervising parent's watch (`follow_fed_events`), not ours
        self.on_roots_added = None  # called with new roots when something else watches for us
        self.work_lock = threading.Lock()  # one writer at a time: the scan/watch loop and API "index" requests
        self.repaired = self.sync.sweep()  # a crash may have left vectors of deleted contents
        self.sync.backfill_words()  # an index made before payloads carried words gets them, once
        # The cheap self-check (counts; the full check only on a mismatch). A collection still being built lacks
        # vectors by design; its scan fills them in.
        self.startup_findings = (IndexCheck(self.catalog, self.store, self.sync, self.collection.name).quick_check()
                                 if startup_check and self.collection.status == "ready" else None)

    @property
    def watching(self) -> bool:
        """True once `watch()` has its observer scheduled (events from then on are not missed), or while a
        supervising parent feeds its own watch's events (`follow_fed_events`)."""
        return self._watcher is not None or self._events_fed

    def serving_slot(self) -> ModelSlot:
        """The model of the collection searches read: while a new model's collection is being built, queries must
        keep using the old model (its text tower reads the old image space)."""
        active = self.catalog.active_collection()
        if active is None or active.model == self.model_name:
            return self.slot
        if self._serving is None or self._serving.name != active.model:
            self._serving = ModelSlot(active.model, self.settings.device, self.settings.home, self.settings.runtime,
                                      self.settings.precision)
        return self._serving

    def add_roots(self, roots: tuple[Path, ...]) -> None:
        """Index more folders (API `/index`); a running watch starts following them too."""
        new = tuple(r for r in roots if r not in self.roots)
        self.roots = self.roots + new
        self.reconciler.roots = self.roots
        if new and self._watcher is not None:
            _, handler = self._watcher
            handler.roots = self.roots  # its filter and its root guard follow the new ones too
            for root in new:
                handler.guard.schedule(root)
        if new and self.on_roots_added is not None:
            self.on_roots_added(new)

    def scan(self, roots: tuple[Path, ...] | None = None) -> RunReport:
        """Reconcile roots (all by default) and process what is new or changed."""
        report, started, since = RunReport(), time.monotonic(), utc_now()
        for root in roots or self.roots:
            if self.stop.is_set():
                break
            with self.work_lock:
                rec = self.reconciler.folder(root, self.collection.name, since)
                report.scanned_roots += 1
                if str(root) not in rec.skipped_roots:
                    remember_roots(self.catalog, [root])  # the Index page lists what the user added, not leaves
                self._process(rec, report, f"indexing {root}")
        self._backfill_visual()
        self._maybe_complete()
        report.seconds = time.monotonic() - started
        return report

    def check(self, *, repair: bool = False, filesystem: bool = True) -> Findings:
        """Verify catalog ↔ vector store ↔ filesystem; with `repair`, fix the drift and re-embed at once what lost
        its vector (files that are not on disk any more are marked deleted instead)."""
        checker = IndexCheck(self.catalog, self.store, self.sync, self.collection.name)
        with self.work_lock:
            if not repair:
                return checker.verify(filesystem=filesystem)
            found = checker.repair(filesystem=filesystem)
            if found.reembed:
                report = RunReport()
                self._process(Reconciled(candidates=found.reembed), report, "re-embedding")
                found.repaired["reembedded"] = report.embedded + report.reused
        return found

    def handle(self, files: list[Path], folders: list[Path]) -> RunReport:
        """Process settled watch events: whole folders are rescanned, single files reconciled."""
        report, started = RunReport(), time.monotonic()
        # A rename's two halves may settle in different batches (the new path first, the old one's deletion later):
        # a vanished path whose content reappeared this recently was moved, not deleted.
        since = utc_now() - timedelta(seconds=MOVE_WINDOW_S + self.settings.settle)
        sidecars = [f for f in files if annotations.is_sidecar(f)]
        files = [f for f in files if not annotations.is_sidecar(f)]
        with self.work_lock:
            for folder in folders:
                rec = self.reconciler.folder(folder, self.collection.name, since)
                self._process(rec, report, None)
            if sidecars:  # keywords written, changed or removed: the photos' payload words follow, no model call
                photos = [p for s in sidecars for p in annotations.sidecar_photos(s)]
                self.sync.refresh(r.content_hash for r in self.catalog.get_files(photos).values() if r.content_hash)
            if files:
                self._process(self.reconciler.paths(files, self.collection.name, since), report, None)
        self._maybe_complete()
        report.seconds = time.monotonic() - started
        return report

    def _process(self, rec: Reconciled, report: RunReport, label: str | None) -> None:
        """Candidates first, then deletions: a move's new path must find the content's vector still there."""
        if rec.candidates:
            ensure_free(self.settings.home, BATCH_WRITE_BYTES, "indexing new photos")
            bar = tqdm(total=len(rec.candidates), desc=label, unit="img", disable=not (self.progress and label),
                       dynamic_ncols=True)
            try:
                result = self.pipeline.run(rec.candidates, self.stop, bar)
            finally:
                bar.close()
            report.embedded += result.embedded
            report.reused += result.reused
            report.failed += result.failed
            # Files that vanished mid-pipeline are deletions (a rename's new name arrives as its own event or scan
            # entry); one that is back already stays pending and is read again.
            rec.vanished += [p for p in result.vanished if not os.path.lexists(p)]
        if not self.stop.is_set():  # a stop mid-run leaves deletions to the next scan: consistent either way
            self.reconciler.finish(rec)
        report.add(rec)

    def _backfill_visual(self) -> None:
        """Photos indexed before the collection had a visual vector get one (indexer.scan.visual), after the scan."""
        if self.visual_backfill is None or self.stop.is_set():
            return
        with self.work_lock:
            todo = self.store.count(self.collection.name, VectorFilter(has_visual=False))
            if not todo:
                return
            bar = tqdm(total=todo, desc="visual vectors", unit="img", disable=not self.progress, dynamic_ncols=True)
            try:
                self.visual_backfill.run(self.stop, bar.update)
            finally:
                bar.close()

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

    def start_watching(self) -> SettleQueue:
        """Schedule the observer (idempotent). Called before the first scan, so that files arriving while it runs are
        queued and handled right after it under the same settle rules: no start-up gap."""
        if self._watcher is None:
            from indexer.scan.watch import start_observer

            self.queue = SettleQueue(self.settings.settle)
            self._watcher = start_observer(self.roots, self.queue, self.rules, self.settings.poll)
            log.info("watching %s", ", ".join(map(str, self.roots)))
        return self.queue

    def follow_fed_events(self) -> SettleQueue:
        """Events come from elsewhere (a supervising parent's watch, `indexer.watcher.worker`): the queue they are fed
        into, already settled there, so they need only the short close-after-write quiet here."""
        from indexer.scan.settle import CLOSED_QUIET

        self.queue = SettleQueue(CLOSED_QUIET)
        self._events_fed = True
        return self.queue

    def watch(self, on_batch=None, on_quiet=None) -> None:
        """Follow filesystem events until `stop` is set; a batch that fails is logged and retried (`WatchLoop`).
        With `follow_fed_events` first, no observer is started: the fed queue is followed instead."""
        from indexer.owner.watchloop import WatchLoop

        queue = self.queue if self._events_fed else self.start_watching()
        self.watch_loop = WatchLoop(self, queue, on_batch, on_quiet)  # kept: its counters tell how often a batch
        try:  # was retried
            self.watch_loop.run()
        finally:
            if self._watcher is not None:
                observer, _ = self._watcher
                self._watcher = None
                observer.stop()
                observer.join(timeout=2)

    def release_idle_models(self) -> bool:
        """Between batches: drop models idle past their timeouts and return the memory (a lean `--watch` owner)."""
        if not self.work_lock.acquire(blocking=False):
            return False
        try:
            slots = [s for s in (self.slot, self._serving) if s is not None]
            released = [s.release_if_idle(self.settings.image_idle_s, self.settings.text_idle_s) for s in slots]
            if self._tagger is not None and not self.slot.loaded:
                self._tagger = self._tagger_text = None  # it holds the text tower
            if any(released):
                release_freed_memory()
            return any(released)
        finally:
            self.work_lock.release()

    def models_loaded(self) -> bool:
        return any(s.loaded for s in (self.slot, self._serving) if s is not None)

    def model_state(self) -> list[dict]:
        """For `status`: each model slot, loaded or not, and how long it has been idle."""
        return [s.describe() for s in (self.slot, self._serving) if s is not None]

    def close(self) -> None:
        if self._watcher is not None:  # started before a scan that then failed
            self._watcher[0].stop()
            self._watcher = None
        self.store.close()
        self.catalog.close()
