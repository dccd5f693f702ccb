"""`Library`: what the index holds, read once from the vector payloads — folders, tags, types, dates, paths.

The payloads are the searchable truth (what a filter can match), and they can be read the same way in both modes
(the local store, or the owner's streamed scroll), so the sidebar filters, the folder tree and the media guard's
path lookup all come from one scroll without vectors, cached per library generation.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Photo:
    content_hash: str
    paths: tuple[str, ...]
    folders: tuple[str, ...]  # every folder above every path (filters match any of them)
    tags: tuple[str, ...]
    exts: tuple[str, ...]
    taken_at: float | None  # unix seconds
    width: int | None = None
    height: int | None = None
    camera: str | None = None

    @classmethod
    def from_payload(cls, payload: dict) -> Photo:
        return cls(payload.get("content_hash", ""), tuple(payload.get("paths", ())),
                   tuple(payload.get("folders", ())), tuple(payload.get("tags", ())), tuple(payload.get("ext", ())),
                   payload.get("taken_at"), payload.get("width"), payload.get("height"), payload.get("camera"))


@dataclass(frozen=True)
class FolderRow:
    folder: str
    depth: int  # below the library's root folder
    photos: int  # in it or below it


class Library:
    def __init__(self, photos: Iterable[Photo]):
        self.photos = {p.content_hash: p for p in photos if p.content_hash}
        self.by_path = {path: p.content_hash for p in self.photos.values() for path in p.paths}

    @classmethod
    def load(cls, store, collection: str) -> Library:
        return cls(Photo.from_payload(point.payload) for point in store.scroll(collection, with_vectors=False))

    def __len__(self) -> int:
        return len(self.photos)

    @property
    def root(self) -> str | None:
        """The deepest folder holding every photo (where the tree starts)."""
        parents = {os.path.dirname(path) for path in self.by_path}
        return os.path.commonpath(sorted(parents)) if parents else None

    def top_folders(self) -> list[str]:
        """The fewest folders that hold every photo (each photo's folder, minus those inside another one): what to
        follow when the UI was started without --watch."""
        parents = sorted({os.path.dirname(path) for path in self.by_path})
        out: list[str] = []
        for folder in parents:  # sorted: an ancestor comes before its descendants
            if not any(folder == top or folder.startswith(top.rstrip(os.sep) + os.sep) for top in out):
                out.append(folder)
        return out

    def folder_counts(self) -> Counter:
        """Folder → photos in it or below it (each photo once per folder even with several copies there)."""
        counts: Counter = Counter()
        for photo in self.photos.values():
            counts.update(set(photo.folders))
        return counts

    def folder_tree(self) -> list[FolderRow]:
        """Folders from the library's root down, depth-first (sorted by path), with their photo counts."""
        root = self.root
        if root is None:
            return []
        base = root.rstrip(os.sep).count(os.sep)
        inside = root.rstrip(os.sep) + os.sep
        counts = self.folder_counts()
        folders = sorted(f for f in counts if f == root or f.startswith(inside))
        return [FolderRow(f, f.rstrip(os.sep).count(os.sep) - base if f != root else 0, counts[f]) for f in folders]

    def in_folder(self, folder: str) -> list[Photo]:
        folder = os.path.normpath(folder)
        return [p for p in self.photos.values() if folder in p.folders]

    def tag_counts(self, folder: str | None = None) -> Counter:
        photos = self.in_folder(folder) if folder else self.photos.values()
        return Counter(tag for photo in photos for tag in set(photo.tags))

    def top_tags(self, folder: str | None = None, k: int = 5) -> list[tuple[str, int]]:
        return self.tag_counts(folder).most_common(k)

    def with_tag(self, tag: str) -> list[Photo]:
        """Photos carrying `tag`, newest first."""
        found = [p for p in self.photos.values() if tag in p.tags]
        return sorted(found, key=lambda p: (p.taken_at or 0.0, p.content_hash), reverse=True)

    def exts(self) -> list[str]:
        return sorted({ext for photo in self.photos.values() for ext in photo.exts})

    def date_range(self) -> tuple[datetime, datetime] | None:
        """Earliest and latest date taken (UTC), for the date filter's bounds."""
        stamps = [p.taken_at for p in self.photos.values() if p.taken_at is not None]
        if not stamps:
            return None
        return (datetime.fromtimestamp(min(stamps), tz=timezone.utc),
                datetime.fromtimestamp(max(stamps), tz=timezone.utc))
