"""The main job: take ownership of the data home, scan, then (with --watch) follow changes and serve the API.

When another process already owns the data home, a one-off scan is handed to it (`/index`) instead of failing:
the owner has the stores open and the model warm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import asdict

from indexer.cli_common import ignored_flags_warning, install_stop_handlers, print_report, report_line
from indexer.owner.ownership import HomeOwnedError, Ownership
from indexer.settings import IndexerSettings
from indexer.stores.diskspace import BATCH_WRITE_BYTES, DiskFullError, is_disk_full
from indexer.stores.homedir import NoHomeError
from indexer.stores.vectors import VectorStoreError

log = logging.getLogger("indexer")


def run(settings: IndexerSettings, *, as_json: bool = False, port: int = 0, flags: list[str] = ()) -> int:
    """Exit status 0 on success; store and disk failures are one clear line on stderr, not a traceback.

    `flags`: the settings flags given on the command line (warned about when an owner does the work).
    """
    try:
        return _run(settings, as_json, port, flags)
    except Exception as err:
        if not (is_disk_full(err) or isinstance(err, NoHomeError)):
            raise
        message = err if isinstance(err, (DiskFullError, NoHomeError)) else DiskFullError(
            settings.home, BATCH_WRITE_BYTES, None, "writing the index")
        log.debug("stopped by", exc_info=err)
        print(f"error: {message}", file=sys.stderr)
        return 1


def _run(settings: IndexerSettings, as_json: bool, port: int, flags: list[str]) -> int:
    try:
        ownership = _own(settings)
    except HomeOwnedError as err:
        if settings.watch:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return _delegate(settings, err, as_json, list(flags))
    with ownership or contextlib.nullcontext():
        try:
            from indexer.owner.service import IndexerService

            service = IndexerService(settings, progress=not as_json and sys.stderr.isatty())
        except VectorStoreError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        try:
            return _work(service, ownership, settings, as_json, port)
        finally:
            service.close()


def _own(settings: IndexerSettings) -> Ownership | None:
    """The embedded store admits one process; with a Qdrant server, vectors need no owner (but the API still
    needs one publisher when watching)."""
    if settings.qdrant_url is None or settings.watch:
        return Ownership.acquire(settings.home, "indexer --watch" if settings.watch else "indexer scan")
    return None


def _work(service, ownership, settings: IndexerSettings, as_json: bool, port: int) -> int:
    install_stop_handlers(service.stop)
    server = _start_api(service, ownership, port) if settings.watch and ownership is not None else None
    try:
        if settings.watch:
            service.start_watching()  # before the scan: what arrives meanwhile is queued, not lost
        report = service.scan()
        print_report(report, as_json)
        if settings.watch and not service.stop.is_set():
            if not as_json:
                print(f"watching {len(service.roots)} folder(s); Ctrl-C to stop", file=sys.stderr)
            service.watch(on_batch=lambda r: _log_batch(r, as_json))
    finally:
        if server is not None:
            server.stop()
    return 0


def _log_batch(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"event": "batch", **asdict(report)}), flush=True)
    else:
        log.info("%s", report_line(asdict(report)))


def _start_api(service, ownership: Ownership, port: int):
    from indexer.owner.api import ApiServer, create_app
    from indexer.owner.ownership import free_port

    port = port or free_port()
    server = ApiServer(create_app(service, ownership.token), "127.0.0.1", port)
    server.start()
    ownership.publish("127.0.0.1", port)
    log.info("local API on http://127.0.0.1:%d (token in %s)", port, settings_token_path(service))
    return server


def settings_token_path(service) -> str:
    return str(service.settings.home / "owner.token")


def _delegate(settings: IndexerSettings, err: HomeOwnedError, as_json: bool, flags: list[str]) -> int:
    from indexer.owner.client import OwnerClient

    client = OwnerClient.find(settings.home)
    if client is None:
        print(f"error: {err}", file=sys.stderr)
        return 1
    warning = ignored_flags_warning(flags, client.pid)
    if warning:
        print(warning, file=sys.stderr)
    print(f"the data home is owned by process {err.owner.pid if err.owner else '?'}; asking it to index "
          f"{', '.join(map(str, settings.roots))}", file=sys.stderr)
    job = client.index([str(p) for p in settings.roots], add_roots=True)  # the user asked for these
    result = client.wait(job, timeout=None)
    if as_json:
        print(json.dumps(result))
    elif result.get("state") == "done":
        print_report(result.get("report") or {}, as_json=False)
    else:
        print(f"error: the owner's indexing job {result.get('state')}: {result.get('error') or 'no reason given'}",
              file=sys.stderr)
    return 0 if result.get("state") == "done" else 1
