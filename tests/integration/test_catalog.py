"""The catalog on real SQLite (always) and PostgreSQL (when LOUPE_TEST_PG_URL is set; see conftest.py)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from indexer.stores import catalog_schema, migrations
from indexer.stores.catalog import META_ACTIVE_COLLECTION, Catalog
from indexer.stores.migrations import SchemaTooNewError
from indexer.stores.records import ContentInfo, SeenFile

T0 = datetime(2024, 5, 17, 12, 30, tzinfo=timezone.utc)


def _content(content_hash: str, **overrides) -> ContentInfo:
    fields = dict(hash=content_hash, width=640, height=480, taken_at=T0, camera_make="FUJIFILM", camera_model="X100V")
    return ContentInfo(**{**fields, **overrides})


def _index(catalog: Catalog, path: str, content_hash: str, collection: str = "c1") -> None:
    """The indexer's order: seen → hash → content → (vector stored) → embedding recorded → indexed."""
    catalog.upsert_seen_file(path, 100, 1)
    catalog.set_hash(path, content_hash)
    catalog.upsert_content(_content(content_hash))
    catalog.add_collection(collection, "test-tiny", "tower-1", 8)
    catalog.record_embeddings([content_hash], collection)
    assert catalog.mark_indexed([path], collection) == 1


# -- schema and migrations -------------------------------------------------------------------------------------


def test_fresh_catalog_has_the_current_schema(catalog: Catalog) -> None:
    assert catalog.get_meta(migrations.VERSION_KEY) == str(catalog_schema.SCHEMA_VERSION)
    engine = catalog._engine
    found = inspect(engine)
    for table in catalog_schema.metadata.sorted_tables:
        assert {c["name"] for c in found.get_columns(table.name)} == set(table.c.keys()), table.name
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_open_accepts_a_plain_path_and_reopens(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "sub" / "catalog.db") as catalog:
        catalog.set_meta("default_model", "offline-lite")
    with Catalog.for_home(tmp_path / "sub") as catalog:
        assert catalog.get_meta("default_model") == "offline-lite"


def test_unsupported_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
        Catalog.open("mysql://u:p@localhost/db")


def test_old_catalog_is_migrated_step_by_step(catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Catalog.open(catalog_url).close()  # a catalog written by "the previous release" (version 1)

    def add_rating(conn) -> None:
        conn.execute(text("ALTER TABLE contents ADD COLUMN rating INTEGER"))

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, add_rating])
    with Catalog.open(catalog_url) as catalog:
        assert catalog.get_meta(migrations.VERSION_KEY) == str(len(migrations.MIGRATIONS))
        assert "rating" in {c["name"] for c in inspect(catalog._engine).get_columns("contents")}
    with Catalog.open(catalog_url) as catalog:  # already current: nothing runs twice
        assert catalog.get_meta(migrations.VERSION_KEY) == str(len(migrations.MIGRATIONS))


def test_catalog_newer_than_the_code_is_refused(catalog: Catalog, catalog_url: str) -> None:
    catalog.set_meta(migrations.VERSION_KEY, "99")
    with pytest.raises(SchemaTooNewError, match="version 99.*Upgrade Loupe"):
        Catalog.open(catalog_url)


def test_transactions_retry_only_harmless_conflicts(tmp_path: Path) -> None:
    engine = catalog_schema.make_engine(f"sqlite:///{tmp_path / 'retry.db'}")
    calls: list[str] = []

    def busy_twice(conn) -> str:
        calls.append("try")
        if len(calls) < 3:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return "done"

    def broken(conn) -> None:
        calls.append("broken")
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("no such table: nope"))

    assert catalog_schema.run_in_transaction(engine, busy_twice) == "done" and calls == ["try"] * 3
    with pytest.raises(OperationalError, match="no such table"):
        catalog_schema.run_in_transaction(engine, broken)
    assert calls.count("broken") == 1
    engine.dispose()


# -- files -----------------------------------------------------------------------------------------------------


def test_seen_files_lifecycle(catalog: Catalog) -> None:
    first = catalog.upsert_seen_file("/photos/2024/a.JPG", 100, 1)
    assert (first.status, first.folder, first.ext, first.content_hash) == ("pending", "/photos/2024", "jpg", None)
    _index(catalog, "/photos/2024/a.JPG", "h1")
    indexed = catalog.get_file("/photos/2024/a.JPG")
    assert (indexed.status, indexed.content_hash) == ("indexed", "h1") and indexed.indexed_at is not None

    assert catalog.upsert_seen_file("/photos/2024/a.JPG", 100, 1).status == "indexed"  # unchanged: skipped
    changed = catalog.upsert_seen_file("/photos/2024/a.JPG", 120, 2)
    assert (changed.status, changed.content_hash, changed.first_seen) == ("pending", None, first.first_seen)

    catalog.set_hash("/photos/2024/a.JPG", "h1")
    assert catalog.mark_deleted(["/photos/2024/a.JPG"]) == 1
    gone = catalog.get_file("/photos/2024/a.JPG")
    assert gone.status == "deleted" and gone.deleted_at is not None and not gone.live
    back = catalog.upsert_seen_file("/photos/2024/a.JPG", 120, 2)
    assert (back.status, back.content_hash, back.deleted_at) == ("pending", "h1", None)


def test_batch_upsert_returns_records_in_path_order(catalog: Catalog) -> None:
    seen = [SeenFile(f"/p/{i:04d}.jpg", i, i) for i in range(1200, 0, -1)]  # more than one chunk
    records = catalog.upsert_seen_files(seen + [SeenFile("/p/0001.jpg", 5, 5)])  # the last report of a path wins
    assert [r.path for r in records] == sorted(s.path for s in seen)
    assert records[0].size == 5 and len({r.id for r in records}) == 1200
    assert catalog.counts() == {"pending": 1200, "indexed": 0, "failed": 0, "deleted": 0}


def test_files_under_is_a_true_folder_prefix(catalog: Catalog) -> None:
    paths = ["/a/b/x.jpg", "/a/b/c/y.jpg", "/a/bc/z.jpg", "/a/B/w.jpg", "/a/b_/v.jpg", "/a/x.jpg"]
    catalog.upsert_seen_files(SeenFile(p, 1, 1) for p in paths)
    assert [f.path for f in catalog.files_under("/a/b")] == ["/a/b/c/y.jpg", "/a/b/x.jpg"]
    assert [f.path for f in catalog.files_under("/a/b/")] == ["/a/b/c/y.jpg", "/a/b/x.jpg"]
    assert [f.path for f in catalog.files_under("/a/b_")] == ["/a/b_/v.jpg"]
    assert len(catalog.files_under("/")) == len(paths)
    catalog.mark_deleted(["/a/b/x.jpg"])
    assert [f.path for f in catalog.files_under("/a/b", statuses=["pending"])] == ["/a/b/c/y.jpg"]


def test_failures_and_counts(catalog: Catalog) -> None:
    catalog.upsert_seen_files(SeenFile(f"/p/{n}.jpg", 1, 1) for n in "abcd")
    catalog.mark_failed("/p/a.jpg", "cannot identify image file")
    catalog.mark_failed_many({"/p/b.jpg": "truncated", "/p/missing.jpg": "never seen"})
    catalog.mark_deleted(["/p/d.jpg"])
    assert catalog.failures() == [("/p/a.jpg", "cannot identify image file"), ("/p/b.jpg", "truncated")]
    assert catalog.counts() == {"pending": 1, "indexed": 0, "failed": 2, "deleted": 1}
    assert catalog.upsert_seen_file("/p/a.jpg", 1, 1).status == "failed"  # not retried until it changes
    assert catalog.mark_pending(["/p/a.jpg"]) == 1  # a manual retry
    assert catalog.get_file("/p/a.jpg").error is None


def test_mark_indexed_never_claims_work_not_done(catalog: Catalog) -> None:
    catalog.upsert_seen_files([SeenFile("/p/a.jpg", 1, 1), SeenFile("/p/b.jpg", 1, 1)])
    assert catalog.mark_indexed(["/p/a.jpg"]) == 0  # no hash yet
    catalog.set_hashes({"/p/a.jpg": "h1", "/p/b.jpg": "h2"})
    catalog.upsert_contents([_content("h1"), _content("h2")])
    catalog.add_collection("c1", "test-tiny", "tower-1", 8)
    catalog.record_embeddings(["h1"], "c1")  # the vector of h2 was never stored (say, a crash)
    assert catalog.mark_indexed(["/p/a.jpg", "/p/b.jpg"], collection="c1") == 1
    assert catalog.get_file("/p/b.jpg").status == "pending"
    assert catalog.counts("c1")["embedded"] == 1


def test_paths_for_hash_and_orphans(catalog: Catalog) -> None:
    _index(catalog, "/p/a.jpg", "h1")
    _index(catalog, "/p/copy-of-a.jpg", "h1")
    _index(catalog, "/p/b.jpg", "h2")
    assert catalog.paths_for_hash("h1") == ["/p/a.jpg", "/p/copy-of-a.jpg"]
    catalog.mark_deleted(["/p/a.jpg", "/p/b.jpg"])
    assert catalog.paths_for_hash("h1") == ["/p/copy-of-a.jpg"]
    assert catalog.paths_for_hash("h1", include_deleted=True) == ["/p/a.jpg", "/p/copy-of-a.jpg"]
    assert catalog.paths_for_hashes(["h1", "h2", "nope"]) == {"h1": ["/p/copy-of-a.jpg"]}
    assert catalog.hashes_without_live_paths() == ["h2"]


# -- contents, embeddings, collections, tags, meta -------------------------------------------------------------


def test_contents_round_trip_with_aware_datetimes(catalog: Catalog) -> None:
    taken = datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    info = _content("h1", taken_at=taken, gps_lat=48.85, gps_lon=2.35, thumbnail="h1/320.webp")
    catalog.upsert_content(info)
    got = catalog.content("h1")
    assert got.taken_at == taken and got.taken_at.tzinfo == timezone.utc
    assert got == ContentInfo(**{**vars(info), "taken_at": taken.astimezone(timezone.utc)})
    assert got.camera == "FUJIFILM X100V"
    catalog.upsert_content(_content("h1", width=10, thumbnail=None))  # a refresh keeps the thumbnail
    assert (catalog.content("h1").width, catalog.content("h1").thumbnail) == (10, "h1/320.webp")
    assert catalog.content("nope") is None and set(catalog.contents(["h1", "nope"])) == {"h1"}


def test_embeddings_are_per_collection(catalog: Catalog) -> None:
    catalog.upsert_contents([_content("h1"), _content("h2")])
    catalog.add_collection("c1", "test-tiny", "tower-1", 8)
    catalog.add_collection("c2", "other", "tower-2", 16)
    catalog.record_embeddings(["h1", "h2"], "c1")
    catalog.record_embeddings(["h1"], "c1")  # idempotent
    assert catalog.has_embedding("h1", "c1") and not catalog.has_embedding("h1", "c2")
    assert catalog.missing_embeddings(["h1", "h2", "h3"], "c1") == {"h3"}
    assert catalog.forget_embeddings(["h2"], "c1") == 1
    assert catalog.missing_embeddings(["h1", "h2"], "c1") == {"h2"}


def test_collections_and_the_active_one(catalog: Catalog) -> None:
    created = catalog.add_collection("c1", "test-tiny", "tower-1", 8)
    assert created.status == "building" and created.completed_at is None
    assert catalog.add_collection("c1", "test-tiny", "tower-1", 8) == created
    with pytest.raises(ValueError, match="tower-1"):
        catalog.add_collection("c1", "test-tiny", "tower-9", 8)
    catalog.set_collection_status("c1", "ready")
    assert catalog.get_collection("c1").completed_at is not None
    catalog.set_active_collection("c1")
    assert catalog.active_collection().name == "c1"
    catalog.add_collection("c0", "x", "tower-0", 4)
    assert [c.name for c in catalog.list_collections()] == ["c1", "c0"]
    catalog.upsert_content(_content("h1"))
    catalog.record_embeddings(["h1"], "c1")
    catalog.delete_collection("c1")
    assert catalog.active_collection() is None and catalog.get_meta(META_ACTIVE_COLLECTION) is None
    assert catalog.missing_embeddings(["h1"], "c1") == {"h1"}
    with pytest.raises(KeyError):
        catalog.set_collection_status("c1", "retired")


def test_tags_replace_per_source_and_manual_wins(catalog: Catalog) -> None:
    catalog.upsert_contents([_content("h1"), _content("h2")])
    catalog.set_tags("h1", {"dog": 0.9, "beach": 0.7})
    catalog.set_tags("h1", {"dog": 1.0}, source="manual")
    catalog.set_tags("h1", {"dog": 0.8, "sunset": 0.6})  # re-tagging replaces zero-shot tags only
    catalog.set_tags_many({"h2": {"cat": 0.5}})
    assert catalog.tags_for(["h1", "h2", "h3"]) == {"h1": {"dog": 1.0, "sunset": 0.6}, "h2": {"cat": 0.5}}
    catalog.set_tags("h1", {}, source="manual")
    assert catalog.tags_for(["h1"]) == {"h1": {"dog": 0.8, "sunset": 0.6}}
    catalog.add_collection("c1", "test-tiny", "tower-1", 8)
    catalog.record_embeddings(["h1"], "c1")
    assert catalog.delete_contents(["h1"]) == 1  # its tags and embedding records go with it
    assert catalog.tags_for(["h1"]) == {} and not catalog.has_embedding("h1", "c1")


def test_meta(catalog: Catalog) -> None:
    assert catalog.get_meta("k") is None and catalog.get_meta("k", "d") == "d"
    catalog.set_meta("k", "v1")
    catalog.set_meta("k", "v2")
    assert catalog.get_meta("k") == "v2"
    catalog.delete_meta("k")
    assert catalog.get_meta("k") is None


# -- concurrent writers ----------------------------------------------------------------------------------------

ROUNDS, PER_WORKER, OVERLAP = 15, 60, 30


def hammer(url: str, worker: int) -> None:
    """One writer: its own rows plus OVERLAP rows shared with the other writer, written again every round."""
    start = worker * (PER_WORKER - OVERLAP)
    paths = [f"/photos/{i:05d}.jpg" for i in range(start, start + PER_WORKER)]
    hashes = {p: f"hash-{p[-9:-4]}" for p in paths}
    with Catalog.open(url) as catalog:
        for round_ in range(ROUNDS):
            catalog.upsert_seen_files(SeenFile(p, 10, 1) for p in reversed(paths))
            catalog.set_hashes(hashes)
            catalog.upsert_contents(_content(h) for h in hashes.values())
            catalog.add_collection("c1", "test-tiny", "tower-1", 8)
            catalog.record_embeddings(hashes.values(), "c1")
            catalog.mark_indexed(paths, collection="c1")
            source = "zero-shot" if worker == 0 else "manual"  # each replaces only its own source's tags
            catalog.set_tags_many({h: {f"w{worker}": 0.5, "shared": round_ / ROUNDS} for h in hashes.values()}, source)
            catalog.set_meta(f"worker-{worker}", str(round_))


def _check_nothing_lost(url: str) -> None:
    total = PER_WORKER * 2 - OVERLAP
    with Catalog.open(url) as catalog:
        assert catalog.counts("c1") == {"pending": 0, "indexed": total, "failed": 0, "deleted": 0, "embedded": total}
        assert len(catalog.contents(f"hash-{i:05d}" for i in range(total))) == total
        tags = catalog.tags_for(f"hash-{i:05d}" for i in range(total))
        assert len(tags) == total and all("shared" in t for t in tags.values())
        assert sum(len(t) == 3 for t in tags.values()) == OVERLAP  # shared rows carry both workers' tags
        assert catalog.get_meta("worker-0") == catalog.get_meta("worker-1") == str(ROUNDS - 1)


def test_two_threads_write_at_once(catalog_url: str) -> None:
    Catalog.open(catalog_url).close()
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            hammer(catalog_url, worker)
        except BaseException as err:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(err)

    threads = [threading.Thread(target=run, args=(w,)) for w in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    _check_nothing_lost(catalog_url)


def test_two_processes_write_at_once(catalog_url: str) -> None:
    # Both open a fresh catalog at once, so creating the schema races too.
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=hammer, args=(catalog_url, w)) for w in (0, 1)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0]
    _check_nothing_lost(catalog_url)
