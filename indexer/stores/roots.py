"""The folders a user added to the index (`python -m indexer ~/Pictures`, the UI's "Index this folder"), remembered
in the catalog's meta table.

The files table only knows each photo's own folder, so without this a library added as `~/Pictures` could only be
shown as its many leaf folders. `forget FOLDER` drops the roots at or below FOLDER.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from indexer.stores.catalog import Catalog

META_ROOTS = "indexed_roots"


def indexed_roots(catalog: Catalog) -> list[str]:
    """The remembered roots, sorted; [] for an index made before roots were recorded."""
    try:
        found = json.loads(catalog.get_meta(META_ROOTS) or "[]")
    except ValueError:
        return []
    return sorted(str(root) for root in found if isinstance(root, str))


def remember_roots(catalog: Catalog, roots: Iterable[str | os.PathLike[str]]) -> None:
    known = set(indexed_roots(catalog))
    added = known | {os.path.normpath(str(root)) for root in roots}
    if added != known:
        catalog.set_meta(META_ROOTS, json.dumps(sorted(added)))


def forget_roots(catalog: Catalog, folder: str | os.PathLike[str]) -> None:
    """Drop the roots at or below `folder` (a root above it stays: only part of it was forgotten)."""
    folder = os.path.normpath(str(folder))
    inside = folder.rstrip(os.sep) + os.sep
    kept = [root for root in indexed_roots(catalog) if root != folder and not root.startswith(inside)]
    catalog.set_meta(META_ROOTS, json.dumps(kept))
