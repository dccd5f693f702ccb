"""Make the catalog agree with the filesystem: what is new or changed becomes pending, what vanished is deleted.

Used by the startup scan (whole roots), by watch events (single paths and whole folders) and by polling alike.
A root that is missing or suddenly empty is *not* taken as "everything was deleted": that is what an unmounted
network drive looks like, and re-processing a library because a mount dropped is a classic failure of photo tools.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from indexer.scan.sync import PayloadSync
from indexer.scan.walk import FileFilter, walk
from indexer.stores.catalog import Catalog
from indexer.stores.catalog_schema import utc_now
from indexer.stores.records import UNREADABLE, SeenFile

log = logging.getLogger(__name__)


@dataclass
class Reconciled:
    candidates: list[str] = field(default_factory=list)  # paths to read (new, changed, or lacking a vector)
    vanished: list[str] = field(default_factory=list)  # known paths no longer on disk: `delete` them AFTER the
    # candidates are processed, so a moved file's content still has its vector when its new path is read
    replaced: set[str] = field(default_factory=set)  # hashes of contents that changed files held before
    deleted: int = 0  # paths whose photo is gone
    moved: int = 0  # old paths of renamed or moved photos (their content lives on at a new path)
    unchanged: int = 0
    skipped_roots: list[str] = field(default_factory=list)  # missing/empty roots left alone
    since: datetime = field(default_factory=utc_now)  # a vanished path whose content reappeared since then moved


class Reconciler:
    def __init__(self, catalog: Catalog, sync: PayloadSync, rules: FileFilter, roots: tuple[Path, ...]):
        self.catalog, self.sync, self.rules, self.roots = catalog, sync, rules, roots

    def folder(self, folder: Path, collection: str, since: datetime | None = None) -> Reconciled:
        """Walk `folder` and reconcile every file below it (new, changed, moved in, deleted). `since`: when the batch
        this belongs to started (a move's new path may be in another folder of the batch)."""
        result = Reconciled(since=since or utc_now())
        known = self.catalog.files_under(str(folder), statuses=("pending", "indexed", "failed"))
        if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
            if folder in self.roots:
                log.warning("%s is not reachable (unmounted?): keeping its %d files as they are", folder, len(known))
                result.skipped_roots.append(str(folder))
            else:
                result.vanished = [r.path for r in known]
            return result
        seen = [SeenFile(str(f.path), f.size, f.mtime_ns) for f in walk(folder, self.rules)]
        if not seen and known and folder in self.roots:
            log.warning("%s is empty but %d files were indexed there: assuming an unmounted drive, deleting nothing "
                        "(remove the files from the catalog with `python -m indexer forget %s`)", folder, len(known),
                        folder)
            result.skipped_roots.append(str(folder))
            return result
        self._merge(seen, collection, result)
        present = {s.path for s in seen}
        result.vanished = [r.path for r in known if r.path not in present]
        return result

    def paths(self, paths: list[Path], collection: str, since: datetime | None = None) -> Reconciled:
        """Reconcile individual paths reported by events: present ones are upserted, absent ones deleted."""
        result = Reconciled(since=since or utc_now())
        seen, gone = [], []
        for path in paths:
            try:
                info = path.stat() if self.rules.follow_symlinks or not path.is_symlink() else None
            except OSError:
                info = None
            if info is not None and path.is_file() and self.rules.accepts(path, self.roots):
                seen.append(SeenFile(str(path), info.st_size, info.st_mtime_ns))
            else:
                gone.append(str(path))
        self._merge(seen, collection, result)
        result.vanished = gone
        return result

    def _merge(self, seen: list[SeenFile], collection: str, result: Reconciled) -> None:
        before = self.catalog.get_files([s.path for s in seen])
        records = self.catalog.upsert_seen_files(seen)
        result.replaced = {before[r.path].content_hash for r in records
                           if r.path in before and before[r.path].content_hash and r.content_hash is None}
        indexed = [r for r in records if r.status == "indexed" and r.content_hash]
        lacking = self.catalog.missing_embeddings({r.content_hash for r in indexed}, collection)
        for record in records:
            unreadable = record.status == "failed" and (record.error or "").startswith(UNREADABLE)  # retried
            lost = record.status == "indexed" and record.content_hash in lacking
            if record.status == "pending" or unreadable or lost:
                result.candidates.append(record.path)
            else:
                result.unchanged += 1

    def finish(self, result: Reconciled) -> None:
        """After the candidates ran: mark vanished paths deleted and refresh every content that lost a path
        (deleted, or replaced by new bytes); contents no path holds any more lose their vectors."""
        hashes = set(result.replaced)
        if result.vanished:
            hashes |= {r.content_hash for r in self.catalog.get_files(result.vanished).values() if r.content_hash}
            retired = self.catalog.mark_deleted(result.vanished)
            result.moved = min(retired, len(self.catalog.record_moves(result.vanished, result.since)))
            result.deleted = retired - result.moved
        self.sync.refresh(hashes)
