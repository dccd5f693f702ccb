"""Where the UI's data comes from: the data home's owner (another process) or the UI itself, as the owner.

The embedded vector store admits one process, so the UI never opens it beside a running indexer: it finds the owner
(`OwnerClient.find`) and works through its API. With no owner, the UI becomes one exactly as `python -m indexer
--watch` does (the lock, an `IndexerService`, the local API, the owner file), so a CLI search or a one-off indexer
run started meanwhile goes through the UI instead of failing on a locked store. Both modes offer the same calls —
status, index folders as a job, poll the job, a search backend — so the pages never ask which one they have.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.backend import CollectionRef, NoIndexError
from ui.jobs import TaskBoard, follow_job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """What `python -m ui` was told (the rest comes from the data home and the environment)."""

    home: Path
    watch: tuple[Path, ...] = ()  # folders to index and follow at start (owner mode: handed to the owner)
    model: str | None = None  # model for a new index; None = the index's recorded one (or the default)
    device: str | None = None  # None = CUDA when available


class Services:
    """The calls both modes share; subclasses provide `status`, `index`, `job` and the backend."""

    mode = "?"
    can_watch = False

    def __init__(self, home: Path):
        self.home = home
        self.generation = 0  # bumped when the library changed (a job finished): caches key on it
        self._engine = None
        self._engine_key: tuple | None = None
        self._lock = threading.Lock()
        self.tasks = TaskBoard()

    def backend(self):
        """The search `Backend` (`NoIndexError` while there is no collection)."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        """`indexer.owner.status.status_report`'s dict."""
        raise NotImplementedError

    def index(self, folders: list[str]) -> str:
        """Queue a scan of these folders (added to the roots); returns the job id for `job`."""
        raise NotImplementedError

    def job(self, job_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def catalog(self):
        raise NotImplementedError

    def engine(self):
        """One `SearchEngine` per process, rebuilt when the active text tower or the library changed (its
        calibration samples both)."""
        from models.versions import active_stamp
        from search.engine import SearchEngine

        backend = self.backend()
        key = (active_stamp(self.home), backend.collection.name, self.generation)
        with self._lock:
            if self._engine is None or key != self._engine_key:
                self._engine, self._engine_key = SearchEngine(backend), key
            return self._engine

    def changed(self) -> None:
        """The library changed (new photos, new tags): cached views are rebuilt on next use."""
        self.generation += 1

    def points(self) -> int:
        """Photos in the active collection (0 for a fresh data home)."""
        backend = self.backend()
        return backend.store.count(backend.collection.name)

    @property
    def watching(self) -> bool:
        return bool(self.status().get("watching"))

    def write_lock(self):
        """Held while the UI writes tags: in local mode the UI's own scans and watcher take the same lock."""
        import contextlib

        return contextlib.nullcontext()

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class OwnerServices(Services):
    """Everything through the owner's API: the owner holds the stores, the model and the watcher."""

    mode = "owner"

    def __init__(self, home: Path, client):
        super().__init__(home)
        self.client = client
        self._backend = None
        self._catalog = None

    def backend(self):
        if self._backend is None:
            from search.backend import OwnerBackend

            self._backend = OwnerBackend(self.client, self.home)  # NoIndexError until something is indexed
        return self._backend

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def index(self, folders: list[str]) -> str:
        return self.client.index(folders, add_roots=True)  # the user asked for these folders in the UI

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.job(job_id)

    def catalog(self):
        """The owner's catalog, opened beside it (it admits other writers: SQLite WAL or PostgreSQL) for what the API
        does not offer, such as writing tags. Its location comes from the owner's own status."""
        if self._catalog is None:
            import os

            from indexer.stores.catalog import Catalog

            where = (self.status().get("catalog") or {}).get("where", "")
            url = where if where.startswith("sqlite") else os.environ.get("LOUPE_DB_URL") or None
            self._catalog = Catalog.open(url) if url else Catalog.for_home(self.home)
        return self._catalog

    def describe(self) -> str:
        return f"through process {self.client.pid} ({self.client.url}), which owns the data home"

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None


class ServiceBackend:
    """The search `Backend` over the UI's own `IndexerService`: its store, its serving model, no second copy.

    Model calls share the API's lock: a CLI search through the UI's API and a query typed in the UI may arrive at
    once, and Hugging Face fast tokenizers fail ("Already borrowed") when two threads use one.
    """

    kind = "local"

    def __init__(self, service, model_lock: threading.Lock):
        self.service, self.store, self.home = service, service.store, service.settings.home
        self._model_lock = model_lock

    @property
    def collection(self) -> CollectionRef:
        active = self.service.catalog.active_collection()
        if active is None:
            raise NoIndexError(f"nothing is indexed in {self.home} yet")
        return CollectionRef(active.name, active.model, active.image_tower_id, active.dim)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        active = self.service.serving_slot().active()
        with self._model_lock:
            return active.encode_texts(list(texts)).float().cpu().numpy()  # (N, D)

    def encode_image(self, path: Path | None = None, data: bytes | None = None) -> np.ndarray:
        return self.encode_image_both(path, data)[0]

    def encode_image_both(self, path: Path | None = None,
                          data: bytes | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(text-aligned, visual) vectors, decoded and preprocessed exactly as the indexer does, so an upload lands
        in the stored spaces."""
        from indexer.scan.decode import decode_image

        bundle = self.service.serving_slot()()
        raw = data if data is not None else Path(path).read_bytes()
        decoded = decode_image(raw, min_side=2 * bundle.input_size, name=str(path or "upload"),
                               max_megapixels=self.service.settings.max_megapixels)
        pixels = bundle.preprocess(decoded.image).unsqueeze(0)  # (1, 3, H, W)
        with self._model_lock:
            vectors, visuals = bundle.model.encode_images(pixels, with_visual=True)
        return vectors[0].float().cpu().numpy(), visuals[0].float().cpu().numpy()  # (D,), (V,)

    def close(self) -> None:
        """The service is closed by its owner (`LocalServices`)."""


class LocalServices(Services):
    """The UI owns the data home: lock, `IndexerService`, local API for other processes, optional watcher."""

    mode = "local"
    can_watch = True

    def __init__(self, options: Options):
        from indexer.owner.ownership import Ownership

        super().__init__(options.home)
        self.ownership = Ownership.acquire(options.home, "ui")
        self.service = self.server = None
        self._closed = False
        self._watcher: threading.Thread | None = None
        self.watch_error: str | None = None
        try:
            self._start(options)
        except BaseException:
            self.close()
            raise

    def _start(self, options: Options) -> None:
        from indexer.owner.api import ApiServer, create_app
        from indexer.owner.service import IndexerService
        from indexer.settings import IndexerSettings

        settings = IndexerSettings.from_env(home=options.home, roots=tuple(options.watch), model=options.model,
                                            device=options.device, watch=True)
        self.service = IndexerService(settings)
        app = create_app(self.service, self.ownership.token)
        self.api = app.state.api
        self.server = ApiServer(app, "127.0.0.1", 0)
        self.ownership.publish("127.0.0.1", self.server.start())
        self._backend = ServiceBackend(self.service, self.api.model_lock)
        log.info("the UI owns %s; local API on 127.0.0.1:%d", options.home, self.server.port)

    def backend(self) -> ServiceBackend:
        self._backend.collection  # noqa: B018  (raises NoIndexError when there is no collection at all)
        return self._backend

    def status(self) -> dict[str, Any]:
        from indexer.owner.status import status_report

        service = self.service
        return status_report(service.catalog, service.store, service.settings, roots=service.roots,
                             watching=self.watching)

    def catalog(self):
        return self.service.catalog

    def write_lock(self):
        return self.service.work_lock

    def index(self, folders: list[str]) -> str:
        """The same path as the API's `POST /index`: add to the roots (a running watcher follows them), queue a
        scan on the one job runner, so UI and CLI requests take turns."""
        from indexer.owner.api import IndexBody

        return self.api.index(IndexBody(paths=list(folders)))["job_id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.api.job(job_id)

    @property
    def watching(self) -> bool:
        return self._watcher is not None and self._watcher.is_alive()

    def start_watching(self, folders: list[str] | None = None) -> str | None:
        """Follow filesystem events of every root in a background thread (`IndexerService.watch`), after a catch-up
        scan on the job runner: what changed while nobody was watching is picked up too (the indexer's own order,
        scan then watch; unchanged files cost a stat). `folders` are added to the roots first. Returns the catch-up
        job's id (None: no roots, or already watching)."""
        if self._watcher is not None and self._watcher.is_alive():
            return None
        if folders:
            self.service.add_roots(tuple(Path(f) for f in folders))
        self.service.stop.clear()
        self.watch_error = None
        self._watcher = threading.Thread(target=self._watch, name="loupe-ui-watch", daemon=True)
        self._watcher.start()
        self._wait_for_observer()
        return self.api.jobs.submit(tuple(self.service.roots)).id if self.service.roots else None

    def _wait_for_observer(self, timeout: float = 10.0) -> None:
        """Return once the observer is scheduled, so the catch-up scan and the events leave no gap between them."""
        deadline = time.monotonic() + timeout
        while not self.service.watching and self._watcher.is_alive():
            if time.monotonic() > deadline:
                log.warning("the watcher has not started after %.0f s", timeout)
                return
            time.sleep(0.01)

    def _watch(self) -> None:
        try:
            self.service.watch(on_batch=lambda report: self.changed())
        except Exception as err:  # shown on the Index page; the UI keeps serving searches
            log.exception("the watcher stopped")
            self.watch_error = f"{type(err).__name__}: {err}"

    def stop_watching(self) -> None:
        """Stop the watcher. The service's stop event also ends a scan in progress early (consistently: the rest is
        picked up by the next scan), so it is cleared again once the watcher has finished its batch."""
        if self._watcher is None:
            return
        self.service.stop.set()
        self._watcher.join(timeout=30)
        self._watcher = None
        self.service.stop.clear()

    def describe(self) -> str:
        return f"this UI owns the data home (local API on 127.0.0.1:{self.server.port} for CLI searches)"

    def close(self) -> None:
        """Idempotent: called on cache release and again at process exit."""
        if self._closed:
            return
        self._closed = True
        if self.service is not None:
            self.service.stop.set()
            if self._watcher is not None:
                self._watcher.join(timeout=30)
        if self.server is not None:
            self.server.stop()
        if self.service is not None:
            self.service.close()
        self.ownership.release()


def open_services(options: Options) -> Services:
    """The owner's API when a live owner answers; otherwise become the owner. `--watch` folders are queued."""
    from indexer.owner.client import OwnerClient

    client = OwnerClient.find(options.home)
    services: Services = OwnerServices(options.home, client) if client else LocalServices(options)
    if options.watch:
        folders = ", ".join(str(p) for p in options.watch)
        job = services.start_watching() if services.can_watch else services.index([str(p) for p in options.watch])
        services.tasks.start("index", f"Indexing {folders}", follow_job(services, job),
                             on_done=lambda task: services.changed())
    return services
