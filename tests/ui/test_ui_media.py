"""`MediaGuard` on a real index: only indexed contents and paths are served, and only bytes that still are the
indexed content; crafted paths and ids are refused before any file is opened."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.ui.appkit import hash_of
from ui.library import Library as PayloadLibrary
from ui.media import MediaGuard, Refused


@pytest.fixture(scope="module")
def guard(library):
    from search.backend import LocalBackend

    backend = LocalBackend(library.home)
    try:
        by_path = PayloadLibrary.load(backend.store, backend.collection.name).by_path
        yield MediaGuard(backend.store, backend.collection.name, by_path, library.home / "thumbnails")
    finally:
        backend.close()


@pytest.fixture()
def no_reads(monkeypatch):
    """Fail the test if anything is opened for reading while a refusal is decided."""
    opened = []
    real_open, real_read = builtins.open, Path.read_bytes
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    monkeypatch.setattr(Path, "read_bytes", lambda self: opened.append(self) or real_read(self))
    return opened


@pytest.mark.parametrize("raw", ["/etc/passwd", "../../etc/passwd", "/tmp/../etc/passwd", "etc/passwd", "",
                                 "/etc/passwd\x00.jpg", "//etc/passwd", "/etc/./passwd"])
def test_paths_not_in_the_index_are_refused_unread(guard, no_reads, raw):
    with pytest.raises(Refused):
        guard.hash_of(raw)
    assert not no_reads


@pytest.mark.parametrize("raw", ["../etc/passwd", "0" * 64, "A" * 64, "", "abc", None])
def test_ids_not_in_the_index_are_refused_unread(guard, no_reads, raw):
    with pytest.raises(Refused):
        guard.paths_of(raw)
    with pytest.raises(Refused):
        guard.original(raw)
    assert not no_reads


def test_an_indexed_path_serves_its_own_bytes_and_a_screen_sized_jpeg(guard, library):
    path = library.files["disk"]
    digest = guard.hash_of(str(path))
    assert digest == hash_of(path)
    assert guard.original(digest) == (str(path), path.read_bytes())
    where, jpeg = guard.display(digest)
    assert where == str(path) and Image.open(io.BytesIO(jpeg)).format == "JPEG"


def test_a_path_of_another_photo_is_refused(guard, library):
    with pytest.raises(Refused, match="does not hold"):
        guard.original(hash_of(library.files["red"]), str(library.files["blue"]))


def test_thumbnails_come_from_the_cache_for_indexed_contents_only(guard, library):
    red = hash_of(library.files["red"])
    thumbs = guard.thumbnails([red, "0" * 64, "../../etc/passwd"])
    assert list(thumbs) == [red] and Image.open(io.BytesIO(thumbs[red])).format == "JPEG"
    assert guard.thumbnail(red) == thumbs[red]


def test_an_indexed_path_swapped_for_a_symlink_serves_nothing(guard, library):
    path = library.files["green"]
    digest = hash_of(path)
    aside = path.with_suffix(".aside")
    os.replace(path, aside)
    try:
        os.symlink("/etc/passwd", path)
        with pytest.raises(Refused, match="changed or is gone"):
            guard.original(digest)
        with pytest.raises(Refused):
            guard.display(digest)
    finally:
        path.unlink()
        os.replace(aside, path)
    assert guard.original(digest)[0] == str(path)
