"""The data home is private: 0700, and the catalog, vectors, thumbnails and tokens inside it unreadable by others.

The catalog holds every path, EXIF GPS position and tag of a library; the thumbnails show the photos. So a home is
created 0700 (nobody else can even list it), its catalog file 0600 before SQLite first opens it (SQLite gives its
-wal/-shm files the database file's mode), and a home made by an older version (0755, catalog 0644) is tightened
the next time Loupe opens it, with a log line saying so. No process-wide umask is set: files Loupe writes outside
the home (XMP sidecars next to photos) keep the user's usual permissions.

Reads never create a home: a mistyped `--home` is an error that says so, not a new empty data home.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE, FILE_MODE = 0o700, 0o600
PRIVATE_DIRS = ("vectors", "thumbnails")  # created here 0700 (the stores then fill them); the rest sit in a 0700 home


class NoHomeError(RuntimeError):
    """A command that only reads was pointed at a data home that does not exist."""

    def __init__(self, home: Path):
        super().__init__(f"no Loupe data home at {home} (is --home / LOUPE_HOME mistyped?). Index a folder first: "
                         f"`python -m indexer FOLDER --home {home}`")
        self.home = home


class HomeNotAFolderError(NoHomeError):
    """The data home's path is taken by a file (or a folder on its way is): nothing can be created there."""

    def __init__(self, home: Path, blocker: Path):
        RuntimeError.__init__(self, f"the Loupe data home {home} cannot be a folder: {blocker} is a file. Point "
                                    "--home / LOUPE_HOME at a folder (it is created when missing)")
        self.home = home


def require_home(home: Path) -> Path:
    """For reads: the home must exist already (nothing is created)."""
    if not Path(home).is_dir():
        raise NoHomeError(Path(home))
    return Path(home)


def prepare_home(home: Path, *, create: bool = True) -> Path:
    """Create the home 0700 (with `create`), or tighten an existing one; returns it. Idempotent and cheap."""
    home = Path(home)
    if not home.is_dir():
        if not create:
            raise NoHomeError(home)
        blocker = next((p for p in (home, *home.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise HomeNotAFolderError(home, blocker)
        home.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        os.chmod(home, DIR_MODE)  # mkdir's mode is filtered by the umask; make it exact
    else:
        _tighten(home, DIR_MODE)
        for entry in _entries(home):
            _tighten(entry, DIR_MODE if entry.is_dir() and not entry.is_symlink() else FILE_MODE)
    for name in PRIVATE_DIRS:
        _private_dir(home / name)
    return home


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 unless it exists (then tighten it): e.g. catalog.db before SQLite."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        _tighten(path, FILE_MODE)
    return path


def _private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=DIR_MODE)
        os.chmod(path, DIR_MODE)
    except FileExistsError:
        pass


def _entries(home: Path) -> list[Path]:
    try:
        return list(home.iterdir())
    except OSError:
        return []


def _tighten(path: Path, mode: int) -> None:
    """Remove group/other bits (never adds any); logs what changed."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return  # a link's target is not ours to change; a file of another user is not either
    current = stat.S_IMODE(info.st_mode)
    if current & 0o077:
        wanted = current & ~0o077 & 0o7777 | (mode & 0o700)
        try:
            os.chmod(path, wanted)
        except OSError as err:
            log.warning("could not restrict %s to its owner: %s", path, err.strerror or err)
            return
        log.info("restricted %s to its owner: mode %03o → %03o", path, current, wanted)
