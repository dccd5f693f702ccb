"""Serving images: only photos that are in the index, and only bytes that are the indexed content.

Every image the UI shows goes through `MediaGuard`: a content hash or a path (from a widget, a result, or a crafted
query parameter such as `?path=/etc/passwd` or `?path=../../x`) is checked against the index *before* any file is
opened, and a file read from an indexed path is served only if its bytes still hash to the indexed content — so a
path swapped for a symlink after indexing serves nothing either. Thumbnails come from the thumbnail cache, whose
file names derive from a validated hash alone. Streamlit then receives bytes, never a path to read on its own.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from indexer.scan.hashing import content_hash
from indexer.stores.fsnames import from_text
from indexer.stores.vectors import point_id

HEX_HASH = re.compile(r"^[0-9a-f]{64}$")
DISPLAY_SIDE = 1600  # px: the detail view's longer side (originals can be 50 MP; browsers need far less)


class Refused(Exception):
    """A request for an image that is not (or no longer) in the index; the message says why, for the page."""


class MediaGuard:
    """`store` + `collection` answer "is this content indexed, at which paths"; `by_path` maps indexed paths to
    content hashes (the library's map); `thumbnails_dir` is the data home's thumbnail cache."""

    def __init__(self, store, collection: str, by_path: dict[str, str], thumbnails_dir: Path):
        self.store, self.collection, self.by_path = store, collection, by_path
        self.thumbnails_dir = Path(thumbnails_dir)

    def paths_of(self, digest: str) -> list[str]:
        """Live paths of an indexed content; `Refused` for anything else (checked in the store, not the cache)."""
        if not isinstance(digest, str) or not HEX_HASH.match(digest):
            raise Refused("that is not a photo id")
        points = self.store.retrieve(self.collection, [point_id(digest)])
        paths = list(points[0].payload.get("paths", [])) if points else []
        if not paths:
            raise Refused("that photo is not in the index")
        return paths

    def hash_of(self, raw: str) -> str:
        """Content hash of an indexed path. Relative paths, `..` and anything not indexed are refused unread."""
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            raise Refused("that is not a path")
        if not os.path.isabs(raw) or ".." in Path(raw).parts or os.path.normpath(raw) != raw:
            raise Refused("only absolute paths of indexed photos can be shown")
        digest = self.by_path.get(raw)
        if digest is None or raw not in self.paths_of(digest):
            raise Refused(f"{raw} is not a photo in the index")
        return digest

    def original(self, digest: str, path: str | None = None) -> tuple[str, bytes]:
        """(path, bytes) of the indexed content: `path` when given (it must be one of its paths), else the first
        path whose bytes still hash to `digest`."""
        paths = self.paths_of(digest)
        if path is not None and path not in paths:
            raise Refused(f"{path} does not hold that photo")
        for candidate in [path] if path else paths:
            try:
                data = Path(from_text(candidate)).read_bytes()  # payload paths are in the text form
            except OSError:
                continue
            if content_hash(data) == digest:
                return candidate, data
        raise Refused("the file changed or is gone since it was indexed (the index catches up at its next scan, "
                      "or at once under `--watch`)")

    def display(self, digest: str, path: str | None = None) -> tuple[str, bytes]:
        """(path, JPEG bytes) of the photo, upright and at most `DISPLAY_SIDE` px (HEIC and huge files included)."""
        from indexer.scan.decode import DecodeError, decode_image, to_rgb

        where, data = self.original(digest, path)
        try:
            image = to_rgb(decode_image(data, min_side=DISPLAY_SIDE, name=where).image)
        except DecodeError as err:
            raise Refused(f"cannot decode {where}: {err}") from err
        image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=88)
        return where, out.getvalue()

    def thumbnails(self, digests: list[str]) -> dict[str, bytes | None]:
        """Cached thumbnails of many results with one store lookup; digests not in the index are left out."""
        from indexer.scan.thumbnails import thumbnail_path

        wanted = [d for d in digests if isinstance(d, str) and HEX_HASH.match(d)]
        points = self.store.retrieve(self.collection, [point_id(d) for d in wanted]) if wanted else []
        indexed = {p.payload.get("content_hash") for p in points if p.payload.get("paths")}
        out: dict[str, bytes | None] = {}
        for digest in (d for d in wanted if d in indexed):
            try:
                out[digest] = thumbnail_path(self.thumbnails_dir, digest).read_bytes()
            except OSError:
                out[digest] = None
        return out

    def thumbnail(self, digest: str) -> bytes | None:
        """The cached thumbnail of an indexed content, or None when none was made (the caller shows a placeholder)."""
        from indexer.scan.thumbnails import thumbnail_path

        self.paths_of(digest)
        try:
            return thumbnail_path(self.thumbnails_dir, digest).read_bytes()
        except OSError:
            return None
