"""The watcher's main loop: settled events → `service.handle`, and a batch that fails never ends the watch.

A watcher runs for days without a supervisor, so an unexpected error in one batch (a bug, a transient I/O fault)
is logged with what the batch held, waits a growing back-off, and re-queues the batch's files and folders so that
they are reconciled again. Per-file faults never get here (the pipeline records them per file). Only a stop or a
store that keeps failing (`STORE_FAILURES_FATAL` batches in a row: the catalog or the vector store is broken, and
going on would only pile up work that cannot be written) ends the loop; a full disk does not (it is logged with
the space needed, and the batch is retried until there is room).
"""

from __future__ import annotations

import logging

from indexer.stores.diskspace import is_disk_full
from indexer.stores.vectors import VectorStoreError

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0  # seconds between retries of a failing batch, at most
FIRST_BACKOFF = 0.5
STORE_FAILURES_FATAL = 3  # consecutive batches failing in a store before the watch gives up


def is_store_failure(err: BaseException) -> bool:
    """The catalog or the vector store itself failed (as opposed to a bug or a fault of some file). A full disk is
    not: the watcher waits (backing off, saying where space is needed) until space is freed."""
    from sqlalchemy.exc import DatabaseError

    return isinstance(err, (VectorStoreError, DatabaseError)) and not is_disk_full(err)


class WatchLoop:
    def __init__(self, service, queue, on_batch=None, on_quiet=None):
        """`on_quiet()` is called on each turn that found nothing to do (a worker uses it to ask for sleep)."""
        self.service, self.queue, self.on_batch, self.on_quiet = service, queue, on_batch, on_quiet
        self.failures = 0  # consecutive failed batches
        self.store_failures = 0
        self.recovered = 0  # batches that failed and were re-queued (for tests and the log)

    def run(self) -> None:
        stop, queue = self.service.stop, self.queue
        while not stop.is_set():
            queue.wakeup.wait(queue.next_deadline())
            queue.wakeup.clear()
            if stop.is_set():
                break
            self.service.release_idle_models()  # a lean owner: models idle past their timeouts leave memory
            files, folders = queue.ready()
            if files or folders:
                self._batch(files, folders)
            elif self.on_quiet is not None and not len(queue):
                self.on_quiet()

    def _batch(self, files, folders) -> None:
        try:
            report = self.service.handle(files, folders)
            if self.on_batch is not None:
                self.on_batch(report)
        except Exception as err:
            self._failed(err, files, folders)
        else:
            self.failures = self.store_failures = 0

    def _failed(self, err: Exception, files, folders) -> None:
        self.failures += 1
        self.store_failures = self.store_failures + 1 if is_store_failure(err) else 0
        sample = ", ".join(map(repr, [*map(str, folders[:3]), *map(str, files[:3])]))
        if self.store_failures >= STORE_FAILURES_FATAL:
            log.error("the store failed %d batches in a row; the watch stops: %s", self.store_failures, err)
            raise err
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self.failures - 1))
        log.error("a watch batch of %d files and %d folders failed (%s: %s; e.g. %s); retrying it in %.1f s",
                  len(files), len(folders), type(err).__name__, err, sample, delay, exc_info=err)
        self.recovered += 1
        for folder in folders:
            self.queue.touch_folder(folder)
        for path in files:
            self.queue.touch(path)
        self.service.stop.wait(delay)
