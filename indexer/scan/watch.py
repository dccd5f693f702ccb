"""Filesystem events → `SettleQueue`: native events (inotify via watchdog) or polling for network mounts.

Move events are not trusted on their own (a rename into a new subfolder has arrived as deleted + created here):
both ends of a move are simply touched, and identity by content hash turns either shape into "same photo, new
path". Folder events touch the folder, which the indexer reconciles as a unit.

A watched root itself can go away and come back: renamed away and back, a drive unmounted and mounted again, a
folder deleted and restored. inotify has nothing to say about what changed meanwhile (a watch follows the folder's
inode, and reports what happens in the renamed folder under the old, now wrong, path), so `RootGuard` looks at
every root every few seconds; one that comes back (or is another folder now: another inode or device) is
rescanned as a whole (its folder is touched) and watched afresh.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from indexer.scan.annotations import is_sidecar
from indexer.scan.settle import SettleQueue
from indexer.scan.walk import FileFilter

log = logging.getLogger(__name__)
ROOT_CHECK_S = 5.0  # how often RootGuard looks at the roots (a stat each)


class WatchLimitError(RuntimeError):
    """inotify ran out of watches: tell the user the two fixes."""


class _Handler(FileSystemEventHandler):
    def __init__(self, queue: SettleQueue, rules: FileFilter, roots: tuple[Path, ...]):
        self.queue, self.rules, self.roots = queue, rules, roots

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        dest = getattr(event, "dest_path", "")
        paths = [(event.src_path, event.event_type == "closed")] + ([(dest, True)] if dest else [])
        for raw, complete in paths:  # a rename's destination is complete at once (rename is atomic)
            path = Path(os.fsdecode(raw))  # bytes names that are not UTF-8 stay exact (surrogateescape)
            if event.is_directory:
                if event.event_type != "modified" and not self._hidden(path):
                    self.queue.touch_folder(path)
            elif self.rules.accepts(path, self.roots) or (is_sidecar(path) and not self._hidden(path)):
                self.queue.touch(path, closed=complete)  # a sidecar's keywords are its photo's words

    def _hidden(self, path: Path) -> bool:
        return not self.rules.include_hidden and any(p.startswith(".") for p in path.parts)


def start_observer(roots: tuple[Path, ...], queue: SettleQueue, rules: FileFilter, poll: float | None):
    """Start a watchdog observer over every root (recursive); returns (observer, handler) so roots can be added."""
    if poll:
        from watchdog.observers.polling import PollingObserver

        observer = PollingObserver(timeout=poll)
    else:
        from watchdog.observers import Observer

        observer = Observer()
    handler = _Handler(queue, rules, roots)
    guard = handler.guard = RootGuard(observer, handler, queue)
    try:
        for root in roots:
            guard.schedule(root)
        observer.start()
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EMFILE):
            raise WatchLimitError(_limit_message()) from err
        raise
    guard.start()
    return observer, handler


def _identity(root: Path) -> tuple[int, int] | None:
    """(device, inode) of a root that is a folder now; None when it is gone (or not a folder)."""
    try:
        info = os.stat(root)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


class RootGuard(threading.Thread):
    """Notices roots that went away and came back (module docstring); lives as long as its observer."""

    def __init__(self, observer, handler: _Handler, queue: SettleQueue, interval: float | None = None):
        super().__init__(name="loupe-root-guard", daemon=True)
        self.observer, self.handler, self.queue = observer, handler, queue
        self.interval = ROOT_CHECK_S if interval is None else interval
        self.seen: dict[Path, tuple[int, int] | None] = {}  # identity at the last look
        self.watched: dict[Path, object] = {}  # the watchdog watch of each root
        self.returns = 0  # roots that came back (for tests and the log)

    def schedule(self, root: Path) -> None:
        """Watch `root` (recursively); also how `Supervisor._watch_more` adds a root."""
        identity = _identity(root)
        self.watched[root] = self.observer.schedule(self.handler, str(root), recursive=True,
                                                    follow_symlink=self.handler.rules.follow_symlinks)
        self.seen[root] = identity

    def run(self) -> None:
        while True:
            time.sleep(self.interval)
            if not self.observer.is_alive():  # the watch was stopped: so is its guard
                return
            try:
                self.check()
            except Exception:  # a guard that dies would leave the roots unguarded without a word
                log.warning("checking the watched roots failed; trying again in %.0f s", self.interval, exc_info=True)

    def check(self) -> list[Path]:
        """Look at every root once; the roots that came back (each touched for a rescan) are returned."""
        back = []
        for root in tuple(self.handler.roots):
            now = _identity(root)
            before = self.seen.get(root, now)
            if now == before:
                continue
            if now is None:
                self.seen[root] = None
                log.warning("%s is gone (moved, deleted or unmounted): its photos stay indexed; watching for it to "
                            "come back", root)
                continue
            if before is None:
                log.warning("%s is back: rescanning it for what changed while it was away", root)
            else:  # e.g. a drive unmounted (its empty mount point) or mounted there
                log.warning("%s is now another folder (a drive mounted or unmounted there?): rescanning it", root)
            # Always watched afresh: another folder may stand at the path (a new inode, or a reused one), and
            # watchdog's emitters stop for good when their root vanishes (polling on the first failed snapshot,
            # inotify on delete-self), even if the same folder comes back.
            watch = self.watched.get(root)
            if watch is not None:
                with contextlib.suppress(KeyError, OSError):  # already dropped by watchdog
                    self.observer.unschedule(watch)
            try:
                self.schedule(root)  # sets `seen` only once it is watched again
            except OSError as err:  # gone again, or out of inotify watches: tried again at the next look
                log.warning("%s is back but cannot be watched yet (%s); trying again in %.0f s", root, err,
                            self.interval)
                continue
            self.queue.touch_folder(root)
            self.returns += 1
            back.append(root)
        return back


def _limit_message() -> str:
    try:
        current = Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip()
    except OSError:
        current = "unknown"
    return (
        f"the inotify watch limit is reached (fs.inotify.max_user_watches = {current}). Raise it with "
        "`sudo sysctl fs.inotify.max_user_watches=524288`, or watch without inotify: `--poll 30`."
    )
