"""Self-check and repair: the catalog, the vector store and the filesystem must tell one story.

The invariant the indexer keeps (see `pipeline` and `sync`): every content that an *indexed* file holds has exactly
one point in the collection, whose payload lists exactly that content's live paths; no point exists for a content
no live file holds; every indexed path exists on disk. Crashes cannot break it (writes are ordered and idempotent),
but a bug, a store restored from a backup or a hand edit can, and a broken invariant is silent: a photo whose
vector went missing can never be found again, and a rescan skips it because the catalog says it is done.

`verify` finds the three kinds of drift (plus indexed files that vanished from disk); `repair` fixes them without a
model: absent files are marked deleted, orphan points deleted, stale payloads rebuilt from the catalog, and contents
that lack a vector have their embedding record dropped and their files set pending, so the next pass of the
pipeline (the owner runs it at once) re-embeds them. `quick_check` is the cheap version every start runs: counts
only, and the full check when they disagree.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

from indexer.scan.sync import PayloadSync
from indexer.stores.catalog import Catalog
from indexer.stores.vectors import VectorStore, point_id

log = logging.getLogger(__name__)

SAMPLE = 20  # paths/hashes listed per finding in reports (the counts are exact)


@dataclass
class Findings:
    collection: str
    indexed_files: int = 0
    contents: int = 0  # distinct contents held by indexed files
    points: int = 0
    missing_vectors: list[str] = field(default_factory=list)  # content hashes: indexed, no point in the store
    orphan_vectors: list[str] = field(default_factory=list)  # point ids whose content no live file holds
    stale_payloads: list[str] = field(default_factory=list)  # content hashes whose payload paths are out of date
    absent_files: list[str] = field(default_factory=list)  # indexed paths no longer on disk
    repaired: dict[str, int] = field(default_factory=dict)  # what `repair` did, by kind
    reembed: list[str] = field(default_factory=list)  # paths set pending for re-embedding

    @property
    def ok(self) -> bool:
        return not (self.missing_vectors or self.orphan_vectors or self.stale_payloads or self.absent_files)

    def summary(self) -> dict:
        """JSON-friendly: exact counts, a sample of each finding."""
        data = asdict(self)
        for key in ("missing_vectors", "orphan_vectors", "stale_payloads", "absent_files", "reembed"):
            data[key] = {"count": len(data[key]), "sample": sorted(data[key])[:SAMPLE]}
        data["ok"] = self.ok
        return data


class IndexCheck:
    def __init__(self, catalog: Catalog, store: VectorStore, sync: PayloadSync, collection: str):
        self.catalog, self.store, self.sync, self.collection = catalog, store, sync, collection

    def verify(self, *, filesystem: bool = True) -> Findings:
        found = Findings(self.collection)
        indexed = self.catalog.files_under("/", statuses=("indexed",))
        found.indexed_files = len(indexed)
        if filesystem:
            found.absent_files = [r.path for r in indexed if not os.path.lexists(r.path)]
        wanted = {r.content_hash for r in indexed if r.content_hash}
        found.contents = len(wanted)
        points = {p.id: p.payload for p in self.store.scroll(self.collection)}
        found.points = len(points)
        expected = self.sync.payloads(wanted | {pl.get("content_hash") for pl in points.values()} - {None})
        by_id = {point_id(h): h for h in expected}
        found.missing_vectors = sorted(h for h in wanted if point_id(h) not in points)
        found.orphan_vectors = sorted(pid for pid in points if pid not in by_id)
        found.stale_payloads = sorted(
            by_id[pid] for pid, payload in points.items()
            if pid in by_id and _paths(payload) != _paths(expected[by_id[pid]]))
        return found

    def repair(self, *, filesystem: bool = True) -> Findings:
        """Fix what `verify` finds; returns the findings before repair, with `repaired` and `reembed` filled in."""
        found = self.verify(filesystem=filesystem)
        if found.absent_files:
            lost = {r.content_hash for r in self.catalog.get_files(found.absent_files).values() if r.content_hash}
            found.repaired["absent_files"] = self.catalog.mark_deleted(found.absent_files)
            self.sync.refresh(lost)  # their contents lose those paths (and their vector if no path is left)
        after = self.verify(filesystem=False) if found.absent_files else found
        if after.orphan_vectors:
            orphans = {pid for pid in after.orphan_vectors}
            self.store.delete(self.collection, sorted(orphans))
            embedded = self.catalog.embedded_hashes(self.collection)
            self.catalog.forget_embeddings([h for h in embedded if point_id(h) in orphans], self.collection)
            found.repaired["orphan_vectors"] = len(orphans)
        if after.stale_payloads:
            self.sync.refresh(after.stale_payloads)
            found.repaired["stale_payloads"] = len(after.stale_payloads)
        if after.missing_vectors:
            self.catalog.forget_embeddings(after.missing_vectors, self.collection)
            paths = sorted(p for ps in self.catalog.paths_for_hashes(after.missing_vectors).values() for p in ps)
            self.catalog.mark_pending(paths)
            found.reembed = paths
            found.repaired["missing_vectors"] = len(after.missing_vectors)
        if not found.ok:
            log.warning("index check of %s: repaired %s", self.collection,
                        ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in found.repaired.items()))
        return found

    def quick_check(self) -> Findings | None:
        """At every start: compare counts (cheap at any size); on a mismatch run the full check (without the
        filesystem walk) and repair. Returns the findings when something was repaired, else None."""
        recorded = self.catalog.embedded_hashes(self.collection)
        indexed = {r.content_hash for r in self.catalog.files_under("/", statuses=("indexed",)) if r.content_hash}
        points = self.store.count(self.collection)
        if points == len(recorded) and indexed <= recorded:
            return None
        log.warning("index check of %s: %d vectors stored, %d recorded, %d indexed contents; repairing",
                    self.collection, points, len(recorded), len(indexed))
        found = self.repair(filesystem=False)
        return None if found.ok else found


def _paths(payload: dict) -> list[str]:
    return sorted(payload.get("paths") or [])
