"""`python -m indexer status`, `forget` and `check`: look at, tidy and verify an index without scanning.

Status and check go through the owner's API when an indexer owns the data home (the embedded store admits one
process); an owner that is still starting is given a few seconds to publish its API. None of these creates a data
home: pointed at one that does not exist, they say so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from indexer.cli_common import add_common_options, given_flags, ignored_flags_warning, setup_logging
from indexer.settings import IndexerSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m indexer {argv[0]}")
    if argv[0] == "forget":
        parser.add_argument("folder", type=Path, help="folder whose files leave the index")
    if argv[0] == "check":
        parser.add_argument("--repair", action="store_true", help="fix what the check finds (re-embed or delete)")
    add_common_options(parser)
    args = parser.parse_args(argv[1:])
    if argv[0] == "check":
        setup_logging(args.verbose)
    settings = IndexerSettings.from_env(home=args.home, db_url=args.db_url, qdrant_url=args.qdrant_url,
                                        qdrant_api_key=args.qdrant_api_key)
    from indexer.owner.ownership import HomeOwnedError
    from indexer.stores.diskspace import DiskFullError
    from indexer.stores.homedir import NoHomeError, require_home

    try:
        require_home(settings.home)
        if argv[0] == "status":
            return status(settings, args.json, given_flags(parser, args))
        if argv[0] == "check":
            from indexer.cli_check import check

            return check(settings, args.repair, args.json, owner_client(settings.home))
        return forget(settings, args.folder.expanduser().resolve(), args.json)
    except (NoHomeError, HomeOwnedError, DiskFullError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


OWNER_START_WAIT = 5.0  # seconds an owner that holds the lock gets to publish its API (it loads stores first)


def owner_client(home: Path):
    """The owner's client; waits while the lock is held but the API is not published yet. None: no owner."""
    from indexer.owner.client import OwnerClient
    from indexer.owner.ownership import is_locked

    deadline = time.monotonic() + OWNER_START_WAIT
    while True:
        client = OwnerClient.find(home)
        if client is not None or not is_locked(home) or time.monotonic() > deadline:
            return client
        time.sleep(0.1)


def status(settings: IndexerSettings, as_json: bool, flags: list[str] = ()) -> int:
    from indexer.stores.fsnames import display

    report = _status_report(settings, list(flags))
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    counts = report.get("files", {})
    print(f"data home   {report.get('home')}")
    collection = report.get("collection") or {}
    store = report.get("store") or {}
    print(f"model       {report.get('model')}  (collection {collection.get('name')}, {collection.get('points')} "
          f"vectors, {collection.get('status')})")
    print(f"text tower  {report.get('text_version') or 'base'}")
    if collection.get("visual_dim"):
        missing = collection.get("points_without_visual") or 0
        print(f"visual      {collection['visual_dim']}-d vector for near-duplicates and \"more like this\""
              + (f"; {missing} photos still without one (the next scan adds them)" if missing else ""))
    elif collection:
        print("visual      none yet: the next scan adds it (`python -m indexer FOLDER`)")
    print(f"store       {store.get('kind')} at {store.get('where')}; catalog {report.get('catalog', {}).get('where')}")
    print("files       " + ", ".join(f"{counts.get(k, 0)} {k}"
                                     for k in ("indexed", "pending", "failed", "moved", "deleted")))
    for failure in counts.get("failures", [])[:20]:
        print(f"  failed: {display(failure['path'])}: {failure['reason']}")
    print(f"folders     {', '.join(display(r) for r in report.get('indexed_roots') or []) or '—'}")
    worker = report.get("worker") or {}
    if worker.get("state") == "asleep":  # a lean `--watch` owner whose worker was let go (indexer.watcher)
        print(f"worker      asleep: no model in memory; the next photo or query starts it (started "
              f"{worker.get('wakes', 0)} times so far)")
    else:
        if worker.get("pid"):
            print(f"worker      process {worker['pid']}")
        for slot in report.get("models_loaded") or []:
            state = "loaded" if slot.get("loaded") else "not loaded (loads on the next photo or query)"
            print(f"in memory   {slot.get('name')}: {state}; idle {slot.get('image_idle_s')} s (images), "
                  f"{slot.get('text_idle_s')} s (text)")
    if report.get("watching"):
        print(f"watching    {', '.join(display(r) for r in report.get('roots', []))}")
    return 0


def _status_report(settings: IndexerSettings, flags: list[str]) -> dict:
    client = owner_client(settings.home)
    if client is not None:
        warning = ignored_flags_warning(flags, client.pid)  # the owner reports on its own stores
        if warning:
            print(warning, file=sys.stderr)
        return client.status()
    from indexer.owner.ownership import Ownership
    from indexer.owner.status import status_report
    from indexer.stores.catalog import Catalog
    from indexer.stores.factory import open_vector_store

    with Ownership.acquire(settings.home, "indexer status", create=False):
        catalog = Catalog.for_home(settings.home, settings.db_url)
        store = open_vector_store(settings.home, settings.qdrant_url, settings.qdrant_api_key)
        try:
            return status_report(catalog, store, settings)
        finally:
            store.close()
            catalog.close()


def forget(settings: IndexerSettings, folder: Path, as_json: bool) -> int:
    from indexer.owner.ownership import HomeOwnedError, Ownership
    from indexer.scan.sync import PayloadSync
    from indexer.stores.catalog import Catalog
    from indexer.stores.factory import open_vector_store
    from indexer.stores.roots import forget_roots

    try:
        lock = Ownership.acquire(settings.home, "indexer forget", create=False)
    except HomeOwnedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with lock:
        catalog = Catalog.for_home(settings.home, settings.db_url)
        store = open_vector_store(settings.home, settings.qdrant_url, settings.qdrant_api_key)
        try:
            records = catalog.files_under(str(folder), statuses=("pending", "indexed", "failed"))
            hashes = {r.content_hash for r in records if r.content_hash}
            count = catalog.mark_deleted([r.path for r in records])
            forget_roots(catalog, folder)
            PayloadSync(catalog, store).refresh(hashes)
        finally:
            store.close()
            catalog.close()
    print(json.dumps({"forgotten": count}) if as_json else f"{count} files under {folder} left the index")
    return 0
