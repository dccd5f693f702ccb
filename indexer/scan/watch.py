"""Filesystem events → `SettleQueue`: native events (inotify via watchdog) or polling for network mounts.

Move events are not trusted on their own (a rename into a new subfolder has arrived as deleted + created here):
both ends of a move are simply touched, and identity by content hash turns either shape into "same photo, new
path". Folder events touch the folder, which the indexer reconciles as a unit.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from indexer.scan.annotations import is_sidecar
from indexer.scan.settle import SettleQueue
from indexer.scan.walk import FileFilter

log = logging.getLogger(__name__)


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
    try:
        for root in roots:
            observer.schedule(handler, str(root), recursive=True, follow_symlink=rules.follow_symlinks)
        observer.start()
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EMFILE):
            raise WatchLimitError(_limit_message()) from err
        raise
    return observer, handler


def _limit_message() -> str:
    try:
        current = Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip()
    except OSError:
        current = "unknown"
    return (
        f"the inotify watch limit is reached (fs.inotify.max_user_watches = {current}). Raise it with "
        "`sudo sysctl fs.inotify.max_user_watches=524288`, or watch without inotify: `--poll 30`."
    )
