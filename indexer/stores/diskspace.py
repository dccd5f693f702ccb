"""Free space, checked before the writes that cannot fail gracefully, and one clear error when it runs out.

Opening a Qdrant Edge store maps two 32 MB WAL files; on a nearly full disk the page faults on that mapping kill
the process with SIGBUS — no exception, no message (measured: even a read-only `indexer status` died). So the
space is checked *before* the store is opened, and indexing checks again before each batch is written. SQLite's
"database or disk is full" and ENOSPC from any other write are turned into the same `DiskFullError`, which names
the data home and the space needed; both stores stay consistent (SQLite rolls the transaction back, Edge's WAL
never acknowledged the write), so a rerun with space picks up where it stopped.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

MB = 1 << 20
EDGE_OPEN_BYTES = 80 * MB  # two 32 MB WAL segments + headroom for segment files
BATCH_WRITE_BYTES = 16 * MB  # one batch: vectors, WAL entries, thumbnails, catalog rows (generous)


class DiskFullError(RuntimeError):
    """Not enough free space in the data home for what is about to be written."""

    def __init__(self, home: Path, needed: int, free: int | None, what: str):
        have = f"{free / MB:.0f} MB free" if free is not None else "the disk reported it full"
        super().__init__(f"not enough free space in the data home {home} for {what}: it needs about "
                         f"{needed / MB:.0f} MB, {have}. Free some space there, or move the data home (--home / "
                         "LOUPE_HOME), then run again: nothing indexed so far is lost.")
        self.home, self.needed, self.free = home, needed, free


def edge_open_bytes(vectors_dir: Path) -> int:
    """What opening the Edge store may still write: its WAL segments are sparse files that the mapping fills in
    (so an existing store needs the part of them not yet on disk), a new store needs both segments whole."""
    segments = list(Path(vectors_dir).glob("*/wal/open-*"))
    if not segments:
        return EDGE_OPEN_BYTES
    unallocated = 0
    for segment in segments:
        try:
            info = segment.stat()
        except OSError:
            continue
        unallocated += max(0, info.st_size - info.st_blocks * 512)
    return max(BATCH_WRITE_BYTES, unallocated + 8 * MB)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (or its nearest parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def ensure_free(home: Path, needed: int, what: str) -> None:
    free = free_bytes(home)
    if free < needed:
        raise DiskFullError(Path(home), needed, free, what)


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC/EDQUOT anywhere in the chain, or SQLite's / Qdrant's words for it."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, DiskFullError):
            return True
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err).lower()
        if "disk is full" in text or "no space left" in text or "disk full" in text:
            return True
        err = err.__cause__ or err.__context__
    return False
