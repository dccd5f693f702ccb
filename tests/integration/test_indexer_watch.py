"""Watch mode with real filesystem events (inotify and polling), settling of half-written files, and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indexer.scan.settle import SettleQueue
from indexer.stores.vectors import VectorFilter
from tests.imagegen import write_jpeg
from tests.integration.test_indexer_scan import assert_consistent, make_service, stored


def wait_for(condition, timeout: float = 20.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def test_growing_file_is_not_ready_until_stable(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff\xd8" + b"x" * 100)
    queue = SettleQueue(settle=0.2)
    queue.touch(path, now=0.0)
    assert queue.ready(now=0.1) == ([], [])  # still within the settle time
    assert queue.ready(now=0.3) == ([], [])  # first stat: remembered, must be confirmed one period later
    with path.open("ab") as handle:
        handle.write(b"more")  # the writer is still going
    assert queue.ready(now=0.6) == ([], [])
    assert queue.ready(now=0.9) == ([path], [])


def test_closed_event_is_a_fast_path_and_vanished_files_are_ready(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"data")
    queue = SettleQueue(settle=5.0)
    queue.touch(path, closed=True, now=0.0)
    assert queue.ready(now=0.5) == ([path], [])
    queue.touch(tmp_path / "gone.jpg", now=0.0)
    assert queue.ready(now=5.1) == ([tmp_path / "gone.jpg"], [])


@pytest.fixture(params=[None, 0.3], ids=["inotify", "poll"])
def watching(request, tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    write_jpeg(root / "first.jpg", size=(64, 64), color="red")
    svc = make_service(tmp_path / "home", root, poll=request.param)
    svc.scan()
    thread = threading.Thread(target=svc.watch, daemon=True)
    thread.start()
    time.sleep(0.5)  # observer scheduled
    yield svc, root
    svc.stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive(), "watch loop did not stop cleanly"
    svc.close()


def test_watch_follows_create_rename_move_and_delete(watching):
    svc, root = watching
    name = svc.collection.name
    write_jpeg(root / "new.jpg", size=(64, 64), color="blue")
    wait_for(lambda: svc.store.count(name) == 2)
    calls = svc.pipeline.model_calls
    (root / "sub").mkdir()
    (root / "new.jpg").rename(root / "sub" / "renamed.jpg")
    wait_for(lambda: str(root / "sub" / "renamed.jpg") in sum(stored(svc).values(), []))
    assert svc.pipeline.model_calls == calls
    assert svc.store.count(name, VectorFilter(folder=str(root / "sub"))) == 1
    (root / "first.jpg").unlink()
    wait_for(lambda: svc.store.count(name) == 1)
    wait_for(lambda: not svc.queue._files)
    assert_consistent(svc)
    counts = svc.catalog.counts()  # one rename and one delete: status says 1 moved, 1 deleted (not 2 deleted)
    assert (svc.catalog.moved_count(), counts["deleted"]) == (1, 2)


def test_temp_file_then_rename_is_one_write(watching):
    svc, root = watching
    partial = root / "upload.jpg.part"
    write_jpeg(partial, size=(64, 64), color="green")
    partial.rename(root / "upload.jpg")
    wait_for(lambda: svc.store.count(svc.collection.name) == 2)
    time.sleep(1.0)
    assert svc.catalog.get_file(str(partial)) is None
    assert svc.catalog.counts()["failed"] == 0


def test_kill_9_mid_batch_then_restart_is_consistent(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(40):
        write_jpeg(root / f"p{i:02d}.jpg", size=(96, 72), seed=i)
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "indexer", str(root), "--model", "test-tiny", "--batch-size", "2", "--workers", "1",
           "--home", str(home)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = home / "catalog.db"
    _wait_some_indexed(db, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    svc = make_service(home, root)
    try:
        counts = svc.catalog.counts()
        assert counts["indexed"] == 40 and counts["pending"] == 0 and counts["failed"] == 0
        assert svc.store.count(svc.collection.name) == 40
        assert_consistent(svc)
    finally:
        svc.close()


def _wait_some_indexed(db: Path, proc: subprocess.Popen) -> None:
    import sqlite3

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"indexer finished before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        try:
            with sqlite3.connect(db, timeout=1) as conn:
                if conn.execute("select count(*) from files where status='indexed'").fetchone()[0] >= 4:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    pytest.fail("nothing got indexed")


@pytest.mark.parametrize("poll", [None, 0.3], ids=["inotify", "poll"])
def test_a_root_that_goes_away_and_comes_back_is_rescanned_and_watched_again(tmp_path, monkeypatch, poll):
    """Found by a breaker pass: a photo added while the watched root was renamed away (and back) was never indexed,
    and nothing said the root was gone. Also a root deleted and made again (a new folder at the same path, as a
    remounted drive is): what it holds is indexed, and later photos in it are followed."""
    import shutil

    from indexer.scan import watch as watch_module

    monkeypatch.setattr(watch_module, "ROOT_CHECK_S", 0.3)
    root = tmp_path / "photos"
    (root / "album").mkdir(parents=True)
    write_jpeg(root / "album" / "first.jpg", size=(64, 64), color="red")
    svc = make_service(tmp_path / "home", root, poll=poll)
    svc.scan()
    thread = threading.Thread(target=svc.watch, daemon=True)
    thread.start()
    try:
        wait_for(lambda: svc.watching)
        name = svc.collection.name
        away = tmp_path / "photos-away"
        root.rename(away)
        time.sleep(1.0)  # the guard sees it gone
        write_jpeg(away / "album" / "while-away.jpg", size=(64, 64), color="blue")
        time.sleep(1.0)
        away.rename(root)
        wait_for(lambda: svc.store.count(name) == 2)
        assert str(root / "album" / "while-away.jpg") in sum(stored(svc).values(), [])
        write_jpeg(root / "album" / "after-return.jpg", size=(64, 64), color="purple")  # still followed
        wait_for(lambda: str(root / "album" / "after-return.jpg") in sum(stored(svc).values(), []))
        # deleted and made again: another folder at the same path
        shutil.rmtree(root)
        time.sleep(1.0)
        (root / "album").mkdir(parents=True)
        write_jpeg(root / "album" / "restored.jpg", size=(64, 64), color="green")
        wait_for(lambda: str(root / "album" / "restored.jpg") in sum(stored(svc).values(), []))
        write_jpeg(root / "later.jpg", size=(64, 64), color="gold")  # only a fresh watch sees this one
        wait_for(lambda: str(root / "later.jpg") in sum(stored(svc).values(), []))
        assert svc._watcher[1].guard.returns >= 2
    finally:
        svc.stop.set()
        thread.join(timeout=10)
        svc.close()
    assert not thread.is_alive()
