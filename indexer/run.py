"""The main job: take ownership of the data home and scan it; with --watch, follow changes and serve the API through
a lean owner (`indexer.watcher.supervisor`: the stores and the model live in a worker process that ends when idle).

When another process already owns the data home, a one-off scan is handed to it (`/index`) instead of failing:
the owner has the stores open and the model warm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys

from indexer.cli_common import ignored_flags_warning, install_stop_handlers, print_report, run_guarded
from indexer.owner.ownership import HomeOwnedError, Ownership
from indexer.settings import IndexerSettings
from indexer.stores.vectors import VectorStoreError

log = logging.getLogger("indexer")


def run(settings: IndexerSettings, *, as_json: bool = False, port: int = 0, flags: list[str] = ()) -> int:
    """Exit status 0 on success; store and disk failures are one clear line on stderr, not a traceback.

    `flags`: the settings flags given on the command line (warned about when an owner does the work).
    """
    return run_guarded(lambda: _run(settings, as_json, port, flags), settings.home)


def _run(settings: IndexerSettings, as_json: bool, port: int, flags: list[str]) -> int:
    try:
        ownership = _own(settings)
    except HomeOwnedError as err:
        if settings.watch:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return _delegate(settings, err, as_json, list(flags))
    with ownership or contextlib.nullcontext():
        if settings.watch:  # a lean owner: the work happens in a worker process that ends when idle
            from indexer.watcher.supervisor import Supervisor

            return Supervisor(settings, ownership, as_json=as_json, port=port,
                              progress=not as_json and sys.stderr.isatty()).run()
        try:
            from indexer.owner.service import IndexerService

            service = IndexerService(settings, progress=not as_json and sys.stderr.isatty())
        except VectorStoreError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        try:
            install_stop_handlers(service.stop)
            print_report(service.scan(), as_json)
            return 0
        finally:
            service.close()


def _own(settings: IndexerSettings) -> Ownership | None:
    """The embedded store admits one process; with a Qdrant server, vectors need no owner (but the API still
    needs one publisher when watching)."""
    if settings.qdrant_url is None or settings.watch:
        return Ownership.acquire(settings.home, "indexer --watch" if settings.watch else "indexer scan")
    return None


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
