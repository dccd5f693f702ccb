"""The worker of a `--watch` owner: stores, model and local API in a child process that ends when idle.

Why a child process: once torch is imported, a process cannot give that memory back (importing torch, transformers and
timm alone holds ~725 MB RSS with PyPI's CUDA build, bench/owner_memory.py), so an owner that should shrink to a few
tens of MB between bursts of work keeps every import of a model out of its own process. The parent
(`indexer.watcher.supervisor`) holds the data home's lock, the filesystem watch and the published API port, and starts
this process when there is work: photos to index or a request to answer.

This side does what the in-process owner does (`IndexerService`: scan, then follow events; the API of
`indexer.owner.api`), except that its events arrive already settled from the parent over a socket pair, one JSON
line each, and that once every model slot has been released for idleness (`--image-idle`, `--text-idle`), no
index job is pending and nothing is queued, it asks the parent to let it go (with its last status, which the parent
answers `GET /status` with while no worker runs). The parent decides (it knows about requests in flight) and sends
SIGTERM: the usual clean stop. End of file on the socket means the parent died: the worker stops too.

    python -m indexer.watcher.worker   # started by the supervisor only: reads its JSON spec from stdin
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("indexer")

ASK_EVERY_S = 5.0  # a refused request to sleep is repeated this often while the worker stays idle


class ParentLink:
    """The worker's end of the socket pair: fed events in, `ready` / `roots` / `sleep` messages out."""

    def __init__(self, sock: socket.socket, service, api):
        self.sock, self.service, self.api = sock, service, api
        self.queue = service.follow_fed_events()
        self._send_lock = threading.Lock()
        self._asked = 0.0
        self.started = time.time()
        service.worker = self  # `GET /status` reports it (OwnerApi.status)
        service.on_roots_added = lambda roots: self.send(event="roots", roots=[str(r) for r in roots])

    def send(self, **message: Any) -> None:
        data = json.dumps(message).encode() + b"\n"
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:  # the parent is gone; the listener sees end of file and stops the service
                pass

    def listen(self) -> threading.Thread:
        thread = threading.Thread(target=self._listen, name="loupe-parent-link", daemon=True)
        thread.start()
        return thread

    def _listen(self) -> None:
        try:
            for line in self.sock.makefile("rb"):
                message = json.loads(line)
                if message.get("event") == "sleep":  # the parent agreed: a clean stop
                    self.service.stop.set()
                elif message.get("event") == "changes":
                    for folder in message.get("folders", ()):
                        self.queue.touch_folder(Path(folder))
                    for path in message.get("files", ()):
                        self.queue.touch(Path(path), closed=True)  # settled by the parent already
        except (OSError, ValueError) as err:
            log.error("the link to the owner process broke: %s", err)
        if not self.service.stop.is_set():
            log.warning("the owner process is gone: this worker stops")
            self.service.stop.set()

    def on_quiet(self) -> None:
        """Between batches, with nothing queued: ask to sleep once no model is loaded and no job is pending."""
        now = time.monotonic()
        if now - self._asked < ASK_EVERY_S or self.service.models_loaded() or self.api.jobs.busy():
            return
        self._asked = now
        self.send(event="sleep", status=self.api.status())

    def describe(self) -> dict[str, Any]:
        return {"state": "awake", "pid": os.getpid(), "since": self.started}


def work(spec: dict[str, Any]) -> int:
    """The child's main job (spec from the supervisor): exit status 0 after a clean stop."""
    from indexer.cli_common import install_stop_handlers, print_report
    from indexer.owner.api import ApiServer, create_app
    from indexer.owner.service import IndexerService
    from indexer.settings import IndexerSettings
    from indexer.stores.vectors import VectorStoreError

    settings = IndexerSettings.from_json(spec["settings"])
    sock = socket.socket(fileno=spec["fd"])
    try:
        service = IndexerService(settings, progress=spec.get("progress", False))
    except VectorStoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    install_stop_handlers(service.stop)
    app = create_app(service, spec["token"])
    link = ParentLink(sock, service, app.state.api)
    server = ApiServer(app, "127.0.0.1", 0)
    try:
        link.send(event="ready", port=server.start(), pid=os.getpid())
        link.listen()
        if spec.get("scan", True):
            report = service.scan()
            print_report(report, spec.get("as_json", False))
            if not service.stop.is_set() and not spec.get("as_json", False):
                print(f"watching {len(service.roots)} folder(s); Ctrl-C to stop", file=sys.stderr, flush=True)
        if not service.stop.is_set():
            service.watch(on_batch=lambda r: log_batch(r, spec.get("as_json", False)), on_quiet=link.on_quiet)
    finally:
        server.stop()
        service.close()
    return 0


def log_batch(report, as_json: bool) -> None:
    """One line per handled batch of events: JSON with `--json`, else a log line."""
    from dataclasses import asdict

    from indexer.cli_common import report_line

    if as_json:
        print(json.dumps({"event": "batch", **asdict(report)}), flush=True)
    else:
        log.info("%s", report_line(asdict(report)))


def main() -> int:
    from indexer.cli_common import run_guarded, setup_logging

    spec = json.loads(sys.stdin.read())
    setup_logging(spec.get("verbose", False))
    return run_guarded(lambda: work(spec), spec.get("home", "."))


if __name__ == "__main__":
    rc = main()
    # As in `python -m indexer`: skip the interpreter's teardown of torch (seconds), everything is closed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(rc)
