"""The indexer against real files, a real catalog (SQLite) and real Qdrant Edge, with the tiny model.

Every change of the filesystem is checked in both stores, and moves/renames/duplicates must cost zero model calls.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.owner.service import IndexerService
from indexer.scan.hashing import hash_file
from indexer.settings import IndexerSettings
from indexer.stores.vectors import VectorFilter, point_id
from tests.imagegen import (
    make_text_with_jpg_ext,
    make_truncated,
    make_zero_byte,
    write_jpeg,
    write_png,
)

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


@pytest.fixture()
def library(tmp_path):
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    for i, colour in enumerate(COLOURS[:4]):
        write_jpeg(root / ("trip" if i % 2 else "") / f"{colour}.jpg", size=(320, 240), color=colour)
    write_png(root / "trip" / "logo.png", size=(100, 80), color="purple")
    return root


def make_service(home: Path, root: Path, **overrides) -> IndexerService:
    settings = IndexerSettings.from_env(home=home, roots=(root,), model="test-tiny", workers=2, batch_size=4,
                                        settle=0.2, **overrides)
    return IndexerService(settings)


@pytest.fixture()
def service(tmp_path, library, catalog_url):
    """An indexer over `library`, its catalog on SQLite and (when LOUPE_TEST_PG_URL is set) on PostgreSQL."""
    svc = make_service(tmp_path / "home", library, db_url=catalog_url)
    yield svc
    svc.close()


def stored(svc: IndexerService) -> dict[str, list[str]]:
    """content hash → payload paths, read back from the vector store."""
    points = svc.store.scroll(svc.collection.name)
    return {p.payload["content_hash"]: p.payload["paths"] for p in points}


def assert_consistent(svc: IndexerService) -> None:
    """Catalog and vector store tell the same story: one point per live content, with exactly its live paths."""
    live = [f for f in svc.catalog.files_under("/", statuses=("indexed",))]
    expected: dict[str, list[str]] = {}
    for record in live:
        expected.setdefault(record.content_hash, []).append(record.path)
    assert stored(svc) == {h: sorted(p) for h, p in expected.items()}
    for digest in expected:
        assert svc.catalog.has_embedding(digest, svc.collection.name)


def test_first_scan_indexes_everything(service, library):
    report = service.scan()
    assert (report.embedded, report.failed, report.deleted) == (5, 0, 0)
    assert service.catalog.counts()["indexed"] == 5
    assert service.store.count(service.collection.name) == 5
    assert_consistent(service)
    payload = next(iter(service.store.scroll(service.collection.name))).payload
    assert {"paths", "folders", "taken_at", "ext", "tags", "width", "height"} <= payload.keys()
    again = service.scan()
    assert (again.embedded, again.reused, again.unchanged) == (0, 0, 5)


def test_rescan_without_changes_does_not_load_the_model(tmp_path, library):
    first = make_service(tmp_path / "home", library)
    first.scan()
    first.close()
    second = make_service(tmp_path / "home", library)
    try:
        assert second.scan().unchanged == 5
        assert not second.slot.loaded
    finally:
        second.close()


def test_rename_and_folder_move_reuse_vectors(service, library):
    service.scan()
    calls = service.pipeline.model_calls
    (library / "red.jpg").rename(library / "rouge.jpg")
    shutil.move(str(library / "trip"), str(library / "archive" / "2019-trip") if (library / "archive").mkdir()
                is None else "")
    report = service.scan()
    assert report.reused == 4 and report.embedded == 0 and report.moved == 4 and report.deleted == 0
    assert service.catalog.moved_count() == 4  # what `status` reports as moved, not deleted
    assert service.catalog.get_file(str(library / "red.jpg")).error == f"moved to {library / 'rouge.jpg'}"
    assert service.pipeline.model_calls == calls
    assert_consistent(service)
    moved = service.store.count(service.collection.name, VectorFilter(folder=str(library / "archive")))
    assert moved == 3
    assert service.store.count(service.collection.name, VectorFilter(folder=str(library / "trip"))) == 0


def test_duplicate_shares_one_vector_and_survives_deleting_the_original(service, library):
    service.scan()
    calls = service.pipeline.model_calls
    shutil.copy(library / "red.jpg", library / "trip" / "red-copy.jpg")
    assert service.scan().reused == 1 and service.pipeline.model_calls == calls
    digest = hash_file(library / "red.jpg")
    assert stored(service)[digest] == sorted([str(library / "red.jpg"), str(library / "trip" / "red-copy.jpg")])
    assert service.store.count(service.collection.name) == 5
    (library / "red.jpg").unlink()
    report = service.scan()
    assert report.deleted == 1 and report.moved == 0  # the copy was there before: a deletion, not a move
    assert stored(service)[digest] == [str(library / "trip" / "red-copy.jpg")]
    (library / "trip" / "red-copy.jpg").unlink()
    service.scan()
    assert digest not in stored(service)
    assert not service.catalog.has_embedding(digest, service.collection.name)
    assert_consistent(service)


def test_modified_file_is_reembedded_and_old_vector_dropped(service, library):
    service.scan()
    old = hash_file(library / "red.jpg")
    old_vector = service.store.retrieve(service.collection.name, [point_id(old)], with_vectors=True)[0].vector
    write_jpeg(library / "red.jpg", size=(320, 240), color="black")
    report = service.scan()
    assert report.embedded == 1
    new = hash_file(library / "red.jpg")
    assert old not in stored(service) and new in stored(service)
    new_vector = service.store.retrieve(service.collection.name, [point_id(new)], with_vectors=True)[0].vector
    assert not np.allclose(old_vector, new_vector)
    assert_consistent(service)


def test_deleting_a_whole_folder(service, library):
    service.scan()
    shutil.rmtree(library / "trip")
    assert service.scan().deleted == 3
    assert service.store.count(service.collection.name) == 2
    assert_consistent(service)


def test_bad_files_are_recorded_with_reasons_and_retried_when_fixed(service, library):
    make_truncated(library / "half.jpg")
    make_zero_byte(library / "empty.jpg")
    make_text_with_jpg_ext(library / "notes.jpg")
    report = service.scan()
    assert report.failed == 3 and report.embedded == 5
    reasons = dict(service.catalog.failures())
    assert "truncated" in reasons[str(library / "half.jpg")]
    assert "empty" in reasons[str(library / "empty.jpg")]
    assert "not an image" in reasons[str(library / "notes.jpg")]
    assert service.scan().failed == 0  # unchanged failures are not retried on every scan
    write_jpeg(library / "half.jpg", size=(64, 64), color="white")
    report = service.scan()
    assert report.embedded == 1 and str(library / "half.jpg") not in dict(service.catalog.failures())
    assert_consistent(service)


def test_unreadable_file_is_a_failure_not_a_crash(service, library):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    target = library / "red.jpg"
    target.chmod(0)
    try:
        report = service.scan()
    finally:
        target.chmod(0o644)
    assert report.failed == 1 and "unreadable" in dict(service.catalog.failures())[str(target)]


def test_emptied_root_looks_unmounted_and_deletes_nothing(tmp_path):
    root = tmp_path / "mnt"
    root.mkdir()
    write_jpeg(root / "a.jpg", size=(64, 64), color="red")
    svc = make_service(tmp_path / "home", root)
    try:
        svc.scan()
        (root / "a.jpg").rename(tmp_path / "elsewhere.jpg")  # the mount point is empty now
        report = svc.scan()
        assert report.deleted == 0 and report.skipped_roots == [str(root)]
        assert svc.store.count(svc.collection.name) == 1
    finally:
        svc.close()


def test_hidden_and_ignored_files_are_skipped(tmp_path):
    root = tmp_path / "p"
    (root / ".cache").mkdir(parents=True)
    write_jpeg(root / ".cache" / "x.jpg", size=(32, 32), color="red")
    write_jpeg(root / ".hidden.jpg", size=(32, 32), color="red")
    write_jpeg(root / "keep.jpg", size=(32, 32), color="blue")
    write_jpeg(root / "skip-me.jpg", size=(32, 32), color="green")
    svc = make_service(tmp_path / "home", root, ignore=("skip-*",))
    try:
        assert svc.scan().embedded == 1
    finally:
        svc.close()


def test_symlink_loops_end(tmp_path):
    root = tmp_path / "p"
    (root / "a").mkdir(parents=True)
    write_jpeg(root / "a" / "x.jpg", size=(32, 32), color="red")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    for follow, expected in ((False, 1), (True, 1)):
        svc = make_service(tmp_path / f"home-{follow}", root, follow_symlinks=follow)
        try:
            assert svc.scan().embedded == expected
        finally:
            svc.close()


def test_model_change_builds_a_new_collection_while_the_old_serves(tmp_path, library):
    home = tmp_path / "home"
    first = make_service(home, library)
    first.scan()
    old = first.collection.name
    first.close()
    import indexer.settings as settings_mod

    settings = settings_mod.IndexerSettings.from_env(home=home, roots=(library,), model="test-tiny-b", workers=1)
    assert settings.model == "test-tiny-b"
    # a second tiny model with other weights stands for "another image tower"
    import models
    from models.registry import _PRESETS, register

    if "test-tiny-b" not in _PRESETS:
        register("test-tiny-b", "tiny, other seed")(lambda: _renamed(models.create("test-tiny", seed=7)))
    second = IndexerService(settings)
    try:
        assert second.collection.name != old and second.catalog.active_collection().name == old
        second.scan()
        assert second.catalog.active_collection().name == second.collection.name
        assert second.catalog.get_collection(old).status == "retired"
        assert second.store.count(second.collection.name) == 5
    finally:
        second.close()


def _renamed(bundle):
    bundle.name = "test-tiny-b"
    bundle.spec = {"preset": "test-tiny", "options": {"seed": 7}}
    return bundle


def test_first_run_without_network_falls_back_to_offline_lite_and_records_it(tmp_path, library, monkeypatch):
    """The default LiT checkpoint cannot be fetched (a closed loopback port stands in for 'offline')."""
    import dataclasses

    import models.lit_presets as lit

    release = lit.RELEASES["lit-b16b-2"]
    monkeypatch.setitem(lit.RELEASES, "lit-b16b-2",
                        dataclasses.replace(release, weights_url="http://127.0.0.1:9/LiT-B16B_2.npz"))
    settings = IndexerSettings.from_env(home=tmp_path / "home", roots=(library,), workers=1)
    svc = IndexerService(settings)
    try:
        assert svc.model_name == "offline-lite" and svc.collection.model == "offline-lite"
        assert svc.catalog.get_meta("default_model") == "offline-lite"
    finally:
        svc.close()
    again = IndexerService(settings)  # the network "comes back": the index must not flip models
    try:
        assert again.model_name == "offline-lite"
    finally:
        again.close()


def test_indexer_and_a_tagging_writer_at_once_lose_nothing(tmp_path, catalog_url):
    """Two writers on one catalog: a scan in one thread, tag writes through a second connection in another."""
    import threading

    from indexer.stores.catalog import Catalog

    root = tmp_path / "many"
    root.mkdir()
    for i in range(40):
        write_jpeg(root / f"p{i:02d}.jpg", size=(48, 40), seed=i)
    svc = make_service(tmp_path / "home", root, db_url=catalog_url)
    tagger = Catalog.open(catalog_url)
    written: dict[str, dict[str, float]] = {}
    done = threading.Event()

    def tag_loop():
        while not done.is_set():
            hashes = [r.content_hash for r in tagger.files_under(str(root), statuses=("indexed",))]
            batch = {h: {"test-tag": 0.5, f"t{len(written) % 3}": 0.25} for h in hashes if h not in written}
            if batch:
                tagger.set_tags_many(batch)
                written.update(batch)

    thread = threading.Thread(target=tag_loop)
    thread.start()
    try:
        report = svc.scan()
    finally:
        done.set()
        thread.join()
    try:
        assert report.embedded == 40 and svc.catalog.counts()["indexed"] == 40
        stored_tags = tagger.tags_for(written)
        assert all(stored_tags[h] == tags for h, tags in written.items())
        assert_consistent(svc)
    finally:
        tagger.close()
        svc.close()


def test_embedded_store_builds_its_search_index_after_growth(tmp_path, library):
    svc = make_service(tmp_path / "home", library, optimize_after=3)
    try:
        svc.scan()
        assert svc.catalog.get_meta(f"optimized_points:{svc.collection.name}") == "5"
        assert svc.store.count(svc.collection.name) == 5
        vector = next(iter(svc.store.scroll(svc.collection.name, with_vectors=True))).vector
        assert svc.store.query(svc.collection.name, vector, limit=1)[0].score > 0.999
    finally:
        svc.close()
