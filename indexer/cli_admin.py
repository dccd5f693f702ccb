"""`python -m indexer status` and `python -m indexer forget`: look at and tidy an index without scanning.

Status goes through the owner's API when an indexer owns the data home (the embedded store admits one process).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from indexer.cli_common import add_common_options
from indexer.settings import IndexerSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m indexer {argv[0]}")
    if argv[0] == "forget":
        parser.add_argument("folder", type=Path, help="folder whose files leave the index")
    add_common_options(parser)
    args = parser.parse_args(argv[1:])
    settings = IndexerSettings.from_env(home=args.home, db_url=args.db_url, qdrant_url=args.qdrant_url,
                                        qdrant_api_key=args.qdrant_api_key)
    if argv[0] == "status":
        return status(settings, args.json)
    return forget(settings, args.folder.expanduser().resolve(), args.json)


def status(settings: IndexerSettings, as_json: bool) -> int:
    report = _status_report(settings)
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
    print("files       " + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("indexed", "pending", "failed", "deleted")))
    for failure in counts.get("failures", [])[:20]:
        print(f"  failed: {failure['path']}: {failure['reason']}")
    if report.get("watching"):
        print(f"watching    {', '.join(report.get('roots', []))}")
    return 0


def _status_report(settings: IndexerSettings) -> dict:
    from indexer.owner.client import OwnerClient

    client = OwnerClient.find(settings.home)
    if client is not None:
        return client.status()
    from indexer.owner.ownership import Ownership
    from indexer.owner.status import status_report
    from indexer.stores.catalog import Catalog
    from indexer.stores.factory import open_vector_store

    with Ownership.acquire(settings.home, "indexer status"):
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

    try:
        lock = Ownership.acquire(settings.home, "indexer forget")
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
            PayloadSync(catalog, store).refresh(hashes)
        finally:
            store.close()
            catalog.close()
    print(json.dumps({"forgotten": count}) if as_json else f"{count} files under {folder} left the index")
    return 0
