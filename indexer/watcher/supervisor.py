"""The lean `--watch` owner: a light parent that watches and listens, and a worker process that comes and goes.

An idle owner should hold little memory (issue 14: ≤ 400 MB after 60 s without work), but a process that has imported
torch keeps ~725 MB whatever it releases. So `python -m indexer --watch` runs as two processes:

- this parent, which never imports torch, the stores or the web stack (~40 MB): it holds the data home's lock, runs
  the filesystem watch (events settle here, `SettleQueue`), publishes the API port and forwards every connection to
  the worker (`indexer.watcher.proxy`); `GET /health` it answers itself, and `GET /status` too while no worker runs;
- the worker (`indexer.watcher.worker`): the stores, the model and the API. It is started for the first scan, and
  again whenever a batch of settled events or a request arrives while none runs. Once its models were released for
  idleness it asks to sleep; the parent agrees only when no request is in flight, no request came for the text
  idle time and no event for the image idle time, then stops it with SIGTERM (the worker's usual clean stop).

The watch never stops, so no event is missed while the worker is away: batches wait here and are handed over when it
is up. A worker that dies unexpectedly is started again with a full scan (whatever it held in flight is found
again), after a back-off that grows with each death in a row; the parent gives up only when every start fails
`MAX_FAILED_STARTS` times in a row. The worker inherits the lock's file descriptor, so a parent killed with -9 leaves
the lock held until its worker (which sees the socket close) has closed the stores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from indexer.owner.ownership import Ownership
from indexer.settings import IndexerSettings

log = logging.getLogger("indexer")

START_TIMEOUT_S = 600.0  # a first start may download the default model's weights
FIRST_BACKOFF_S, MAX_BACKOFF_S = 1.0, 60.0  # between restarts of a worker that died
MAX_FAILED_STARTS = 5  # a worker that cannot even start this many times in a row ends the owner
STOP_TIMEOUT_S = 60.0  # a worker finishing its batch after SIGTERM; then it is killed
DEATH_MEMORY_S = 600.0  # deaths this recent lengthen the back-off before the next start


class WorkerUnavailable(RuntimeError):
    """No worker could be started (its error was printed on stderr)."""


class Supervisor:
    """The parent of a `--watch` owner (module docstring). `run()` returns the exit status."""

    def __init__(self, settings: IndexerSettings, ownership: Ownership, *, as_json: bool = False, port: int = 0,
                 progress: bool = False):
        self.settings, self.ownership, self.as_json, self.port = settings, ownership, as_json, port
        self.progress = progress
        self.roots = tuple(settings.roots)
        self.stop = threading.Event()
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._link: socket.socket | None = None
        self._state = "asleep"  # asleep | starting | awake | stopping
        self._worker_port: int | None = None
        self._scan_next = True  # the next worker scans every root first (the first one; one after a death)
        self._pending: tuple[list[Path], list[Path]] = ([], [])  # settled events waiting for a worker
        self._in_flight = 0  # proxied connections open now
        now = time.monotonic()
        self._last_request = self._last_batch = self._started_at = now
        self.asleep_status: dict[str, Any] | None = None  # the worker's last status, answered while it sleeps
        self.wakes = 0  # workers started
        self.failed_starts = 0  # in a row
        self.deaths = 0  # unexpected exits, in all
        self._recent_deaths: list[float] = []  # when, within the last DEATH_MEMORY_S (sets the back-off)
        self.exit_code = 0
        self._observer = self._handler = None

    # -- the main loop --------------------------------------------------------------------------------------------

    def run(self) -> int:
        from indexer.cli_common import install_stop_handlers
        from indexer.watcher.proxy import OwnerProxy

        install_stop_handlers(self.stop)
        queue = self._start_watch()  # before the first scan: what arrives meanwhile is queued, not lost
        proxy = OwnerProxy(self, self.port)
        try:
            self.ownership.publish("127.0.0.1", proxy.start())
            log.info("local API on http://127.0.0.1:%d (token in %s)", proxy.port, self.settings.home / "owner.token")
            self._wake()
            while not self.stop.is_set():
                queue.wakeup.wait(queue.next_deadline())
                queue.wakeup.clear()
                files, folders = queue.ready()
                if files or folders or any(self._pending):
                    self._deliver(files, folders)
        except WorkerUnavailable as err:
            if not self.stop.is_set():  # (a stop during a start is no failure)
                log.error("%s", err)
                self.exit_code = self.exit_code or 1
        except KeyboardInterrupt:  # a second Ctrl-C: abort at once
            self._stop_worker(kill=True)
            raise
        finally:
            self.stop.set()
            proxy.stop()
            self._stop_worker()
            self._observer.stop()
            self._observer.join(timeout=2)
        return self.exit_code

    def _start_watch(self):
        from indexer.scan.decode import IMAGE_EXTENSIONS
        from indexer.scan.settle import SettleQueue
        from indexer.scan.walk import FileFilter
        from indexer.scan.watch import start_observer

        s = self.settings
        queue = SettleQueue(s.settle)
        self._rules = FileFilter(IMAGE_EXTENSIONS, s.ignore, s.include_hidden, s.follow_symlinks)
        self._observer, self._handler = start_observer(self.roots, queue, self._rules, s.poll)
        log.info("watching %s", ", ".join(map(str, self.roots)))
        return queue

    def _watch_more(self, roots: list[Path]) -> None:
        """Roots added through the worker's `POST /index`: watched from now on, and given to every later worker."""
        new = tuple(r for r in roots if r not in self.roots)
        self.roots += new
        self._handler.roots = self.roots
        for root in new:
            self._handler.guard.schedule(root)

    def _deliver(self, files: list[Path], folders: list[Path]) -> None:
        """Hand settled events to the worker, starting one if none runs; kept for the next try if that fails."""
        with self._cond:
            self._pending[0].extend(files)
            self._pending[1].extend(folders)
            self._last_batch = time.monotonic()
        try:
            self.ensure_awake()
        except TimeoutError as err:
            log.warning("%s; the events wait", err)
            return
        with self._cond:
            files, folders = self._pending
            if self._state != "awake" or not self._send(event="changes", files=[str(f) for f in files],
                                                        folders=[str(f) for f in folders]):
                return  # it went away meanwhile: kept for the next worker
            self._pending = ([], [])
            self._last_batch = time.monotonic()

    # -- the worker's life ----------------------------------------------------------------------------------------

    def ensure_awake(self, timeout: float = START_TIMEOUT_S) -> int:
        """The port of a running worker, starting one if none runs (waits while one is starting or stopping)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.stop.is_set():
                    raise WorkerUnavailable("the owner is stopping")
                if self._state == "awake":
                    return self._worker_port
                if self._state == "asleep":
                    self._wake_locked()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no worker answered within {timeout:.0f} s")
                self._cond.wait(min(left, 1.0))

    def _wake(self) -> None:
        with self._cond:
            self._wake_locked()

    def _wake_locked(self) -> None:
        """Start a worker (state `starting`); its `ready` message makes it `awake`."""
        if self.failed_starts >= MAX_FAILED_STARTS:
            raise WorkerUnavailable(f"the worker failed to start {self.failed_starts} times in a row; the owner stops")
        parent_end, child_end = socket.socketpair()
        settings = dataclasses.replace(self.settings, roots=self.roots)
        spec = {"settings": settings.to_json(), "token": self.ownership.token, "fd": child_end.fileno(),
                "scan": self._scan_next, "as_json": self.as_json, "progress": self.progress,
                "verbose": logging.getLogger().isEnabledFor(logging.DEBUG), "home": str(settings.home)}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_repo_root(), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, "-m", "indexer.watcher.worker"], stdin=subprocess.PIPE, env=env,
                                pass_fds=(child_end.fileno(), self.ownership.fd), start_new_session=True)
        child_end.close()
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        self._proc, self._link, self._state, self._worker_port = proc, parent_end, "starting", None
        self._scan_next = False
        self.wakes += 1
        self._started_at = time.monotonic()
        log.debug("worker %d started (%s)", proc.pid, "with a full scan" if spec["scan"] else "resuming the watch")
        threading.Thread(target=self._listen, args=(proc, parent_end), name="loupe-worker-link", daemon=True).start()

    def _listen(self, proc: subprocess.Popen, link: socket.socket) -> None:
        """Messages from one worker until its end of the link closes; then reap it."""
        with contextlib.suppress(OSError, ValueError):
            for line in link.makefile("rb"):
                message = json.loads(line)
                event = message.get("event")
                if event == "ready":
                    with self._cond:
                        self._worker_port, self._state = message["port"], "awake"
                        self.failed_starts = 0
                        self._cond.notify_all()
                elif event == "roots":
                    self._watch_more([Path(r) for r in message["roots"]])
                elif event == "sleep":
                    self._consider_sleep(proc, message.get("status"))
        code = proc.wait()
        link.close()
        self._reaped(proc, code)

    def _consider_sleep(self, proc: subprocess.Popen, status: dict | None) -> None:
        """The worker is idle by its own measure; agree only if nobody is using it (see the module docstring)."""
        now, s = time.monotonic(), self.settings
        with self._cond:
            if (self._proc is not proc or self._state != "awake" or self._in_flight or any(self._pending)
                    or now - self._last_request < s.text_idle_s or now - self._last_batch < s.image_idle_s
                    or now - self._started_at < s.image_idle_s):
                return
            self._state = "stopping"
            self.asleep_status = status
        log.info("no work for a while: the worker (process %d) stops; the watch goes on", proc.pid)
        if not self._send(event="sleep"):  # its clean stop, as after SIGTERM but without the "stopping" message
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def _reaped(self, proc: subprocess.Popen, code: int) -> None:
        with self._cond:
            if self._proc is not proc:
                return
            expected = self._state == "stopping" or self.stop.is_set()
            ever_ready = self._state != "starting"
            self._proc, self._link, self._worker_port, self._state = None, None, None, "asleep"
            if not expected:
                now = time.monotonic()
                self.deaths += 1
                self._recent_deaths = [t for t in self._recent_deaths if now - t < DEATH_MEMORY_S] + [now]
                self.asleep_status = None
                self._scan_next = True  # what it had in flight is found again by a full scan
                self.failed_starts += 0 if ever_ready else 1
                if self.wakes == 1 and not ever_ready:  # the very first start failed: its error is on stderr
                    self.exit_code = code or 1
                    self.stop.set()
            self._cond.notify_all()
        if expected:
            log.debug("worker %d stopped (exit status %s)", proc.pid, code)
            return
        if self.stop.is_set():
            return
        delay = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (len(self._recent_deaths) - 1))
        log.error("the worker (process %d) ended unexpectedly (exit status %s); starting another in %.0f s with a "
                  "full scan", proc.pid, code, delay)
        if not self.stop.wait(delay):
            with contextlib.suppress(WorkerUnavailable), self._cond:
                if self._state == "asleep":
                    self._wake_locked()

    def _send(self, **message: Any) -> bool:
        link = self._link
        if link is None:
            return False
        try:
            link.sendall(json.dumps(message).encode() + b"\n")
            return True
        except OSError:
            return False

    def _stop_worker(self, kill: bool = False) -> None:
        with self._cond:
            proc = self._proc
            if proc is None:
                return
            self._state = "stopping"
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("the worker did not stop within %.0f s; killing it", STOP_TIMEOUT_S)
            proc.kill()

    # -- for the proxy --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def request(self, counts: bool = True):
        """Around one proxied connection: while any that `counts` is open the worker is not let go, and each one
        marks use. `/status` does not count: a UI or script polling it must neither keep the worker awake nor hold
        off its sleep (a status relayed while the worker stops is still answered: its clean stop finishes open
        requests)."""
        if not counts:
            yield
            return
        with self._cond:
            self._in_flight += 1
            self._last_request = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._last_request = time.monotonic()

    def sleeping_status(self) -> dict[str, Any] | None:
        """What `GET /status` says while no worker runs (its last status, nothing loaded); None while one runs.
        A worker that is being let go is waited for: a status poll must not start the next one."""
        with self._cond:
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self._state == "stopping" and time.monotonic() < deadline and not self.stop.is_set():
                self._cond.wait(1.0)
            if self._state != "asleep" or self.asleep_status is None:
                return None
            status = dict(self.asleep_status)
        status["models_loaded"] = [{**m, "loaded": False} for m in status.get("models_loaded") or []]
        status["roots"] = [str(r) for r in self.roots]
        status["worker"] = {"state": "asleep", "pid": None, "wakes": self.wakes}
        return status

    def describe(self) -> dict[str, Any]:
        with self._cond:
            return {"state": self._state, "pid": self._proc.pid if self._proc else None, "wakes": self.wakes,
                    "deaths": self.deaths}


def _repo_root() -> str:
    """Where this package is imported from, so the worker imports the same code (a checkout run in place)."""
    return str(Path(__file__).resolve().parents[2])
