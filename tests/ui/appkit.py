"""UI test kit: a small indexed library (test-tiny, real files, real Qdrant Edge and SQLite) and AppTest helpers.

14 photos in three folders with known dates, cameras and types; the expected search answers are computed in-process
with `SearchEngine(LocalBackend(home))` *before* the app opens the data home, so the UI is compared with the engine
itself, not with itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.imagegen import (
    blue_stripes,
    make_text_with_jpg_ext,
    photo_like_image,
    red_disk_on_white,
    solid_color_image,
    write_jpeg,
    write_png,
)

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
QUERY = "red square"


@dataclass
class Library:
    root: Path
    home: Path
    files: dict[str, Path] = field(default_factory=dict)  # name → path
    expected: dict[str, list[str]] = field(default_factory=dict)  # label → content hashes in rank order
    no_good_match: bool = False  # the engine's verdict for QUERY with the default min_score


def write_photos(root: Path) -> dict[str, Path]:
    beach, city, night = root / "2021" / "beach", root / "2023" / "city", root / "2023" / "city" / "night"
    for folder in (beach, night):
        folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, colour in enumerate(("red", "green", "blue", "yellow")):
        files[colour] = write_jpeg(beach / f"{colour}.jpg", image=solid_color_image(colour, (96, 72)),
                                   exif={"taken_at": datetime(2021, 6, 1 + i, 12), "make": "Canon", "model": "EOS"})
    files["disk"] = write_jpeg(city / "disk.jpg", image=red_disk_on_white(),
                               exif={"taken_at": datetime(2023, 3, 1, 12), "make": "Nikon", "model": "Z6"})
    files["stripes"] = write_png(city / "stripes.png", image=blue_stripes())
    for i in range(6):
        files[f"p{i}"] = write_jpeg(city / f"p{i}.jpg", image=photo_like_image((160, 120), seed=i),
                                    exif={"taken_at": datetime(2023, 7, 1 + i, 12)})
    for i in range(2):
        files[f"n{i}"] = write_jpeg(night / f"n{i}.jpg", image=photo_like_image((160, 120), seed=50 + i),
                                    exif={"taken_at": datetime(2023, 12, 1 + i, 22)})
    return files


def build_library(base: Path) -> Library:
    from indexer.owner.service import IndexerService
    from indexer.settings import IndexerSettings

    root, home = base / "photos", base / "home"
    files = write_photos(root)
    make_text_with_jpg_ext(root / "2023" / "notes.jpg")  # fails to decode: the Index page lists it with its reason
    settings = IndexerSettings.from_env(home=home, roots=(root,), model="test-tiny", workers=1, batch_size=16)
    service = IndexerService(settings)
    try:
        assert service.scan().embedded == len(files)
    finally:
        service.close()
    return Library(root, home, files)


def expected_answers(library: Library) -> None:
    """What the engine itself answers, opened in this process (and closed before the app takes the home)."""
    from indexer.stores.vectors import VectorFilter
    from search.backend import LocalBackend
    from search.engine import SearchEngine
    from search.query import build_query

    engine = SearchEngine(LocalBackend(library.home))
    try:
        query = build_query(QUERY)
        every = dict(min_score=0.0, collapse_duplicates=False, limit=48)
        library.expected["all"] = [r.content_hash for r in engine.search(query, **every).results]
        without = build_query(QUERY, without=["blue", "stripes"])
        library.expected["without"] = [r.content_hash for r in engine.search(without, **every).results]
        relevant = engine.search(query, collapse_duplicates=False, limit=48)
        library.expected["relevant"] = [r.content_hash for r in relevant.results]  # shown by default
        library.expected["good"] = [r.content_hash for r in relevant.results if r.relevant]  # the "good" tier
        beach = VectorFilter(folder=str(library.root / "2021" / "beach"))
        library.expected["beach"] = [r.content_hash for r in engine.search(query, filter=beach, **every).results]
        library.no_good_match = relevant.no_good_match
    finally:
        engine.close()


def run_app(page: str | None = None, timeout: float = 60):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert_clean(at)
    return at


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def result_hashes(at, key: str = "results") -> list[str]:
    """Content hashes of the grid's cards, in display order (each card's Details button is keyed by it)."""
    prefix = f"{key}-open-"
    return [b.key[len(prefix):] for b in at.button if b.key and b.key.startswith(prefix)]


def wait_for_tasks(at, timeout: float = 60) -> None:
    """Rerun until no progress bar is left (background tasks report through them)."""
    deadline = time.monotonic() + timeout
    while at.get("progress"):
        assert time.monotonic() < deadline, "a background task did not finish in time"
        time.sleep(0.3)
        at.run()
    assert_clean(at)


def hash_of(path: Path) -> str:
    from indexer.scan.hashing import hash_file

    return hash_file(path)


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]

