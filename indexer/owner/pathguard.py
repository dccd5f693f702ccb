"""Which paths the owner's API may touch on a caller's behalf: photos of the index, folders a user would index.

The API runs with the owner's rights, so an unguarded `/embed/image {"path": ...}` reads any file the owner can,
and its error messages ("missing" vs "not an image" vs a vector) tell a caller which files exist: an existence
oracle. So a path is read only when the catalog holds it (a live file) or it lies under an indexed root (after
resolving symlinks and '..'), and every refusal, absence, unreadable or undecodable file gets the one same answer.
`/index` never takes system folders (/, /etc, /proc, ...) or the data home itself: those are never photo libraries,
and indexing them silently would copy system paths into the catalog.
"""

from __future__ import annotations

import os
from pathlib import Path

UNAVAILABLE = "no photo of the index at that path (only indexed files and files under indexed folders can be read)"
# Never a photo library; a folder equal to one of these or below it is refused.
SYSTEM_FOLDERS = ("/etc", "/proc", "/sys", "/dev", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                  "/boot", "/run", "/var/lib", "/var/run", "/var/log", "/var/cache", "/srv/tftp", "/snap")
SYSTEM_ROOTS = ("/", "/var", "/home", "/root", "/mnt", "/media", "/opt", "/srv")  # refused as a whole, not below


class PathRefused(ValueError):
    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def read_indexed_image(raw: str, catalog, roots: tuple[Path, ...]) -> bytes:
    """The bytes of an indexed photo (or one under an indexed root); `PathRefused(UNAVAILABLE)` for anything else."""
    if not os.path.isabs(raw):
        raise PathRefused(f"path {raw!r} is relative; the owner needs an absolute path", "invalid")
    path = os.path.normpath(raw)
    record = catalog.get_file(path)
    known = record is not None and record.status != "deleted"
    if not (known or _under_any(os.path.realpath(path), roots)):
        raise PathRefused(UNAVAILABLE, "unavailable_image")
    try:
        return Path(path).read_bytes()
    except OSError:
        raise PathRefused(UNAVAILABLE, "unavailable_image") from None


def indexable_folder(raw: str, home: Path) -> Path:
    """An absolute folder a user may index; `PathRefused` for system folders, the data home and non-folders."""
    if not os.path.isabs(raw):
        raise PathRefused(f"path {raw!r} is relative; the owner needs an absolute path", "invalid")
    path = Path(os.path.normpath(raw))
    real = os.path.realpath(path)
    if real in SYSTEM_ROOTS or _under_any(real, tuple(Path(f) for f in SYSTEM_FOLDERS)):
        raise PathRefused(f"{raw} is a system folder, not a photo library: pick the folder that holds the photos",
                          "system_folder")
    if _under_any(real, (Path(home),)):
        raise PathRefused(f"{raw} is inside the data home; Loupe does not index its own files", "data_home")
    if not path.is_dir():
        raise PathRefused(f"{raw} is not a folder the owner can see", "not_a_folder")
    return path


def _under_any(path: str, roots: tuple[Path, ...]) -> bool:
    for root in roots:
        root_text = os.path.realpath(root)
        if path == root_text or path.startswith(root_text.rstrip(os.sep) + os.sep):
            return True
    return False
