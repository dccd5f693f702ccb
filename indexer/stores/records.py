"""Typed records that cross the catalog's boundary.

The catalog hands out frozen dataclasses, never ORM objects: a record outlives the transaction that read it, so
callers (the indexer's threads, search, the UI) can never hit a detached-instance or lazy-load error, and nobody can
mutate a row by accident. Statuses are plain strings (cheap to store, easy to read in SQL) checked by the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

FileStatus = Literal["pending", "indexed", "failed", "deleted"]
CollectionStatus = Literal["building", "ready", "retired"]
TagSource = Literal["zero-shot", "manual"]

FILE_STATUSES: tuple[FileStatus, ...] = ("pending", "indexed", "failed", "deleted")
COLLECTION_STATUSES: tuple[CollectionStatus, ...] = ("building", "ready", "retired")
TAG_SOURCES: tuple[TagSource, ...] = ("zero-shot", "manual")
# A failure whose reason starts with this is the file system's (permission denied, an I/O error), not the bytes':
# fixing it (`chmod`) changes neither size nor mtime, so such a file is retried on every scan and event instead of
# waiting for the file to change.
UNREADABLE = "unreadable: "


@dataclass(frozen=True)
class SeenFile:
    """What a scan or a watch event knows about a file before reading it: enough to skip unchanged files."""

    path: str  # absolute
    size: int  # bytes
    mtime_ns: int  # st_mtime_ns


@dataclass(frozen=True)
class FileRecord:
    """One path on disk. Several paths may share a `content_hash` (copies, or a move seen as delete + create)."""

    id: int
    path: str  # absolute, unique
    folder: str  # parent directory of `path`
    ext: str  # lowercase, no dot
    size: int
    mtime_ns: int
    content_hash: str | None  # None until the file has been read and hashed
    status: FileStatus
    error: str | None  # why it failed (status 'failed'), else None
    first_seen: datetime
    updated_at: datetime
    indexed_at: datetime | None
    deleted_at: datetime | None

    @property
    def live(self) -> bool:
        return self.status != "deleted"


@dataclass(frozen=True)
class ContentInfo:
    """What the pixels and EXIF say about one content hash; shared by every path with those bytes."""

    hash: str
    width: int
    height: int
    taken_at: datetime  # EXIF DateTimeOriginal, else the file's mtime
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    thumbnail: str | None = None  # path relative to the data home's thumbnails folder

    @property
    def camera(self) -> str | None:
        """'Make Model' as the payload stores it, without repeating a make the model already starts with."""
        make, model = (self.camera_make or "").strip(), (self.camera_model or "").strip()
        if make and model.lower().startswith(make.lower()):
            make = ""
        return " ".join(part for part in (make, model) if part) or None


@dataclass(frozen=True)
class CollectionInfo:
    """One vector collection: the vectors of one image tower. A new tower means a new collection, built aside."""

    name: str
    model: str  # preset name, e.g. 'offline-lite'
    image_tower_id: str  # identity of the locked image tower's weights; equal ids mean interchangeable vectors
    dim: int
    status: CollectionStatus
    created_at: datetime
    completed_at: datetime | None = None
