"""Which files under the indexed roots are photos: extensions, hidden names, ignore globs, symlinks and loops.

One predicate (`FileFilter.accepts`) serves the startup scan, watch events and polling, so the three never disagree
about what belongs in the index.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileFilter:
    extensions: frozenset[str]  # lowercase, no dot
    ignore: tuple[str, ...] = ()
    include_hidden: bool = False
    follow_symlinks: bool = False

    def skip_name(self, name: str) -> bool:
        """Hidden entries (dot-files, dot-folders) and ignore globs are skipped, for files and folders alike."""
        if not self.include_hidden and name.startswith("."):
            return True
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.ignore)

    def accepts(self, path: Path, roots: tuple[Path, ...] = ()) -> bool:
        """True for an image-extension path none of whose components (below its root) is hidden or ignored."""
        if path.suffix.lower().lstrip(".") not in self.extensions:
            return False
        parts = _parts_below_root(path, roots)
        return not any(self.skip_name(part) for part in parts)


def _parts_below_root(path: Path, roots: tuple[Path, ...]) -> tuple[str, ...]:
    for root in roots:
        try:
            return path.relative_to(root).parts
        except ValueError:
            continue
    return (path.name,)


@dataclass(frozen=True)
class FoundFile:
    path: Path  # absolute, as reached under the root (not resolved through symlinks)
    size: int
    mtime_ns: int


def walk(root: Path, rules: FileFilter) -> Iterator[FoundFile]:
    """Yield every accepted file under `root` with its stat, in a stable order.

    Symlinked folders are entered only with `follow_symlinks`, and a folder already visited (by device+inode) is
    never entered twice, so a link loop ends instead of recursing forever. Unreadable folders are logged and skipped.
    """
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                log.warning("symlink loop or repeated folder skipped: %s", folder)
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            log.warning("cannot read folder %s: %s", folder, err.strerror or err)
            continue
        subfolders = []
        for entry in entries:
            if rules.skip_name(entry.name):
                continue
            found = _visit(entry, rules, subfolders)
            if found is not None:
                yield found
        stack.extend(reversed(subfolders))


def _visit(entry: os.DirEntry, rules: FileFilter, subfolders: list[Path]) -> FoundFile | None:
    try:
        if entry.is_symlink() and not rules.follow_symlinks:
            return None
        if entry.is_dir(follow_symlinks=rules.follow_symlinks):
            subfolders.append(Path(entry.path))
            return None
        if not entry.is_file(follow_symlinks=rules.follow_symlinks):
            return None
        if Path(entry.name).suffix.lower().lstrip(".") not in rules.extensions:
            return None
        info = entry.stat(follow_symlinks=rules.follow_symlinks)
    except OSError as err:  # vanished or unreadable between listing and stat
        log.debug("skipping %s: %s", entry.path, err)
        return None
    return FoundFile(Path(entry.path), info.st_size, info.st_mtime_ns)
