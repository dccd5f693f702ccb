"""Debounce filesystem activity until files are complete.

Events are coalesced per path; a path becomes *ready* only after it has been quiet for the settle time AND two
stats taken that far apart agree on size and mtime (a copy over a slow network can pause longer than any one
event gap). A `closed` (close-after-write) event is a strong "complete" hint, so those paths only need a short
quiet time. Temp-file-then-rename needs no special case: the temp name vanishes before it settles and the final
name settles once, so it is read once.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLOSED_QUIET = 0.3  # seconds of quiet after close-after-write before a stat check


@dataclass
class _Pending:
    last_event: float
    closed: bool
    stat: tuple[int, int] | None  # (size, mtime_ns) at the previous check; None before the first


class SettleQueue:
    """Thread-safe: the watchdog thread calls `touch`; the indexer loop calls `ready`."""

    def __init__(self, settle: float):
        self.settle = settle
        self._files: dict[Path, _Pending] = {}
        self._folders: dict[Path, float] = {}
        self._lock = threading.Lock()
        self.wakeup = threading.Event()

    def touch(self, path: Path, *, closed: bool = False, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._files.get(path)
            if entry is None:
                self._files[path] = _Pending(now, closed, None)
            else:
                entry.last_event, entry.closed = now, closed
        self.wakeup.set()

    def touch_folder(self, folder: Path, *, now: float | None = None) -> None:
        """A whole folder appeared, vanished or moved: it is rescanned/reconciled as one unit."""
        with self._lock:
            self._folders[folder] = time.monotonic() if now is None else now
        self.wakeup.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._files) + len(self._folders)

    def ready(self, now: float | None = None) -> tuple[list[Path], list[Path]]:
        """Pop (files, folders) that have settled. A file that vanished is ready at once (its deletion is final)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            folders = [f for f, t in self._folders.items() if now - t >= self.settle]
            for folder in folders:
                del self._folders[folder]
            files = [p for p, e in list(self._files.items()) if self._settled(p, e, now)]
            for path in files:
                del self._files[path]
        return files, folders

    def _settled(self, path: Path, entry: _Pending, now: float) -> bool:
        quiet = min(self.settle, CLOSED_QUIET) if entry.closed else self.settle
        if now - entry.last_event < quiet:
            return False
        try:
            info = os.stat(path)
        except OSError:
            return True  # gone: the reconciler records the deletion
        current = (info.st_size, info.st_mtime_ns)
        if entry.stat == current or (entry.closed and entry.stat is None and info.st_size > 0):
            return True
        entry.stat, entry.last_event, entry.closed = current, now, False  # still changing: wait another period
        return False

    def next_deadline(self) -> float:
        """Seconds until something could become ready (for the loop's sleep), at most the settle time."""
        return max(0.05, min(self.settle, CLOSED_QUIET) / 2)
