"""`python -m indexer check [--repair] [--json]`: verify that the catalog, the vector store and the files agree.

Through the owner when one runs (it holds the stores and the model, and repairs under its own write lock);
otherwise this process takes the data home, checks, and with --repair re-embeds what lost its vector.
Exit status: 0 when the index is consistent (or was repaired), 1 when drift was found and left as it is.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from indexer.settings import IndexerSettings

KINDS = (("missing_vectors", "indexed contents without a vector"),
         ("orphan_vectors", "vectors without indexed content"),
         ("stale_payloads", "vector payloads with out-of-date paths"),
         ("absent_files", "indexed files missing on disk"))


def check(settings: IndexerSettings, repair: bool, as_json: bool, client=None) -> int:
    summary = client.check(repair) if client is not None else _local(settings, repair)
    if summary is None:
        print(json.dumps({"ok": True, "collection": None}) if as_json else "nothing is indexed yet")
        return 0
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary, repair)
    return 0 if summary["ok"] or repair else 1


def _local(settings: IndexerSettings, repair: bool) -> dict | None:
    from indexer.owner.ownership import Ownership
    from indexer.owner.service import IndexerService
    from indexer.stores.catalog import Catalog

    with Ownership.acquire(settings.home, "indexer check", create=False):
        with Catalog.for_home(settings.home, settings.db_url) as catalog:
            active = catalog.active_collection()
        if active is None:
            return None
        service = IndexerService(dataclasses.replace(settings, model=active.model), startup_check=False)
        try:
            return service.check(repair=repair).summary()
        finally:
            service.close()


def _print(summary: dict, repair: bool) -> None:
    print(f"collection  {summary['collection']}: {summary['indexed_files']} indexed files, {summary['contents']} "
          f"contents, {summary['points']} vectors")
    for key, label in KINDS:
        found = summary[key]
        print(f"{found['count']:>6}  {label}")
        for item in found["sample"][:5]:
            print(f"        {item}")
    if summary["ok"]:
        print("ok: catalog, vector store and files agree")
    elif repair:
        done = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in summary["repaired"].items())
        print(f"repaired: {done}")
    else:
        print("run `python -m indexer check --repair` to fix this", file=sys.stderr)
