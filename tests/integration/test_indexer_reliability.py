"""Issue 12's defects, each reproduced: files vanishing mid-pipeline, a batch that raises, the first-scan gap, a full
disk, a private data home, `indexer check --repair`, and clean CLI answers (owner starting, mistyped home, SIGTERM).
Real files, real SQLite and Qdrant Edge, the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indexer.scan import pipeline as pipeline_module
from indexer.stores.vectors import point_id
from tests.imagegen import write_jpeg
from tests.integration.test_indexer_scan import assert_consistent, make_service
from tests.integration.test_indexer_watch import wait_for

REPO = Path(__file__).resolve().parents[2]


def _library(root: Path, n: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_jpeg(root / f"p{i}.jpg", size=(64, 48), seed=i)
    return root


def _status(svc, path: Path) -> str | None:
    record = svc.catalog.get_file(str(path))
    return None if record is None else record.status


def _cli(*args: str, home: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", *args, "--home", str(home)], capture_output=True, text=True,
                          env=env, timeout=180, **kwargs)


def test_file_vanishing_mid_pipeline_is_a_deletion_not_a_crash(tmp_path, monkeypatch):
    """Issue 12.1: `_content` stat'ed the path after reading it; a file deleted in between ended the scan/watch."""
    root = _library(tmp_path / "photos")
    victim = root / "p1.jpg"
    real_decode = pipeline_module.decode_image

    def decode_then_vanish(data, **kwargs):
        if kwargs.get("name") == str(victim) and victim.exists():
            victim.unlink()  # gone after the read, before the stat and the thumbnail
        return real_decode(data, **kwargs)

    monkeypatch.setattr(pipeline_module, "decode_image", decode_then_vanish)
    svc = make_service(tmp_path / "home", root)
    try:
        report = svc.scan()
        assert report.embedded == 3 and report.failed == 0
        assert svc.catalog.get_file(str(victim)).status == "deleted"
        assert_consistent(svc)
    finally:
        svc.close()


def test_unexpected_per_file_errors_are_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    root = _library(tmp_path / "photos")
    broken = str(root / "p2.jpg")
    real_decode = pipeline_module.decode_image

    def buggy(data, **kwargs):
        if kwargs.get("name") == broken:
            raise RuntimeError("a plugin bug")  # not a DecodeError: a metadata parser or codec gone wrong
        return real_decode(data, **kwargs)

    monkeypatch.setattr(pipeline_module, "decode_image", buggy)
    monkeypatch.setattr(pipeline_module, "make_thumbnail", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "full")))
    svc = make_service(tmp_path / "home", root)
    try:
        report = svc.scan()
        assert report.embedded == 3 and report.failed == 1
        assert "RuntimeError: a plugin bug" in dict(svc.catalog.failures())[broken]
        assert all(c.thumbnail is None for c in svc.catalog.contents(
            [r.content_hash for r in svc.catalog.files_under("/", statuses=("indexed",))]).values())
        assert_consistent(svc)
    finally:
        svc.close()


def test_watch_loop_survives_a_failing_batch_and_retries_it(tmp_path, monkeypatch):
    """An unexpected error in a batch is logged, backed off and retried; the watcher keeps running."""
    root = _library(tmp_path / "photos", 1)
    svc = make_service(tmp_path / "home", root)
    svc.scan()
    real_paths, calls = svc.reconciler.paths, []

    def flaky(paths, collection, *args, **kwargs):
        calls.append(len(paths))
        if len(calls) == 1:
            raise RuntimeError("injected failure in a batch")
        return real_paths(paths, collection, *args, **kwargs)

    monkeypatch.setattr(svc.reconciler, "paths", flaky)
    thread = threading.Thread(target=svc.watch, daemon=True)
    thread.start()
    try:
        wait_for(lambda: svc.watching)
        write_jpeg(root / "late.jpg", size=(64, 48), color="blue")
        wait_for(lambda: _status(svc, root / "late.jpg") == "indexed")
        assert thread.is_alive() and len(calls) >= 2
        assert_consistent(svc)
    finally:
        svc.stop.set()
        thread.join(timeout=10)
        svc.close()
    assert not thread.is_alive()


def test_data_home_is_private_and_an_old_open_home_is_tightened(tmp_path, caplog):
    """Issue 12.6: the data home was 0755 and catalog.db 0644: every local user could read every path and GPS tag."""
    root = _library(tmp_path / "photos", 2)
    svc = make_service(tmp_path / "home", root)
    svc.scan()
    svc.close()
    home = tmp_path / "home"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("catalog.db", "vectors", "thumbnails"):
        assert stat.S_IMODE((home / name).stat().st_mode) & 0o077 == 0, name
    thumbs = [p for p in (home / "thumbnails").rglob("*.jpg")]
    assert thumbs and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in thumbs)

    old = tmp_path / "old-home"  # as an earlier version left it
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    (old / "catalog.db").touch()
    os.chmod(old / "catalog.db", 0o644)
    with caplog.at_level("INFO", logger="indexer.stores.homedir"):
        svc = make_service(old, root)
        svc.close()
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    assert stat.S_IMODE((old / "catalog.db").stat().st_mode) == 0o600
    assert any("restricted" in r.message and str(old) in r.message for r in caplog.records)


def test_check_repair_on_a_deliberately_broken_home(tmp_path):
    """`indexer check` finds each kind of drift, `--repair` fixes it, and the next check is clean."""
    import numpy as np

    from indexer.stores.vectors import VectorPoint, build_payload

    root = _library(tmp_path / "photos", 5)
    home = tmp_path / "home"
    svc = make_service(home, root)
    svc.scan()
    points = sorted(svc.store.scroll(svc.collection.name), key=lambda p: p.id)
    svc.store.delete(svc.collection.name, [points[0].id])  # lost vector
    stale = points[1]
    svc.store.overwrite_payload(svc.collection.name, stale.id, {**stale.payload, "paths": ["/old/place.jpg"]})
    ghost = "f" * 64  # a vector no file holds
    vec = np.zeros(svc.collection.dim, np.float32)
    vec[0] = 1
    ghost_point = VectorPoint(point_id(ghost), vec, build_payload(ghost, ["/x.jpg"], 0, 1, 1))
    svc.store.upsert(svc.collection.name, [ghost_point])
    svc.close()
    (root / "p4.jpg").unlink()  # deleted while nothing watched

    found = _cli("indexer", "check", "--json", home=home)
    assert found.returncode == 1, found.stderr
    summary = json.loads(found.stdout)
    assert {k: summary[k]["count"] for k in ("missing_vectors", "orphan_vectors", "stale_payloads", "absent_files")} \
        == {"missing_vectors": 1, "orphan_vectors": 1, "stale_payloads": 1, "absent_files": 1}
    repaired = _cli("indexer", "check", "--repair", home=home)
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired" in repaired.stdout
    (tmp_path / "check-repair.txt").write_text(found.stdout + "\n" + repaired.stdout)
    again = _cli("indexer", "check", "--json", home=home)
    assert again.returncode == 0 and json.loads(again.stdout)["ok"] is True, again.stdout
    svc = make_service(home, root)
    try:
        assert_consistent(svc)
        assert svc.store.count(svc.collection.name) == 4
    finally:
        svc.close()


def test_a_deleted_vector_is_repaired_at_start(tmp_path):
    """The cheap start-up check: counts disagree → full check → the photo is re-embedded by the scan."""
    root = _library(tmp_path / "photos", 3)
    svc = make_service(tmp_path / "home", root)
    svc.scan()
    victim = next(svc.store.scroll(svc.collection.name))
    svc.store.delete(svc.collection.name, [victim.id])
    svc.close()
    svc = make_service(tmp_path / "home", root)
    try:
        assert svc.startup_findings is not None and svc.startup_findings.repaired["missing_vectors"] == 1
        assert svc.scan().embedded == 1
        assert_consistent(svc)
        assert svc.store.count(svc.collection.name) == 3
    finally:
        svc.close()


def test_reads_never_create_a_mistyped_home(tmp_path):
    """Issue 12.7: `python -m search x --home /typo` created the mistyped data home."""
    typo = tmp_path / "typo"
    for args in (("search", "a cat"), ("indexer", "status"), ("indexer", "check")):
        done = _cli(*args, home=typo)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert "no Loupe data home" in done.stderr or "nothing is indexed" in done.stderr, done.stderr
        assert not typo.exists(), args


def test_a_data_home_that_is_a_file_is_one_line(tmp_path):
    """Found by a breaker pass: --home naming a file ended in a FileExistsError traceback."""
    from ui.errors import explain

    root = _library(tmp_path / "photos", 1)
    taken = tmp_path / "home"
    taken.write_text("not a folder")
    for home in (taken, taken / "below"):
        done = _cli("indexer", str(root), "--model", "test-tiny", home=home)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"{taken} is a file" in done.stderr and "--home / LOUPE_HOME" in done.stderr
    from indexer.stores.homedir import HomeNotAFolderError, prepare_home

    with pytest.raises(HomeNotAFolderError) as refused:
        prepare_home(taken)
    assert "--home FOLDER" in explain(refused.value).fix  # the UI's message for it


def test_status_while_an_owner_is_starting_waits_and_answers(tmp_path):
    """Issue 12.7: `indexer status` while an owner was starting printed a HomeOwnedError traceback."""
    from indexer.owner.ownership import Ownership

    root = _library(tmp_path / "photos", 1)
    svc = make_service(tmp_path / "home", root)
    svc.scan()
    svc.close()
    lock = Ownership.acquire(tmp_path / "home", "indexer --watch")  # holds the lock, has not published an API
    try:
        done = _cli("indexer", "status", home=tmp_path / "home")
    finally:
        lock.release()
    assert done.returncode == 1 and "Traceback" not in done.stderr and "owned by" in done.stderr, done.stderr


def test_sigterm_ends_an_idle_watcher_promptly(tmp_path):
    """Issue 12.7: an idle watcher took 10-23 s to exit on SIGTERM (most of it unloading torch at exit)."""
    root = _library(tmp_path / "photos", 1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "indexer", str(root), "--watch", "--model", "test-tiny",
                             "--home", str(tmp_path / "home")], stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stderr:
            if "Ctrl-C to stop" in line:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        rc = proc.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0
    print(f"SIGTERM to exit: {took:.2f} s")  # reported, not asserted on (CI machines vary)


def _tmpfs(path: Path, size: str):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")


def test_full_disk_gives_a_clear_message_and_loses_nothing(tmp_path):
    """Issue 12.4: a full disk killed indexing and even `indexer status` with SIGBUS and no message."""
    small = tmp_path / "small"
    _tmpfs(small, "200m")
    try:
        root = _library(tmp_path / "photos", 3)
        home = small / "home"
        first = _cli("indexer", str(root), "--model", "test-tiny", home=home)
        assert first.returncode == 0, first.stderr
        filler = small / "filler"
        with filler.open("wb") as out:  # fill the disk, leaving ~8 MB
            block = b"\0" * (1 << 20)
            while os.statvfs(small).f_bavail * os.statvfs(small).f_frsize > 8 << 20:
                out.write(block)
                out.flush()
        for args in (("indexer", str(root), "--model", "test-tiny"), ("indexer", "status")):
            write_jpeg(root / "new.jpg", size=(64, 48), seed=99)
            done = _cli(*args, home=home)
            assert done.returncode == 1, (args, done.returncode, done.stderr)
            assert "Traceback" not in done.stderr and "not enough free space" in done.stderr, done.stderr
            assert str(home) in done.stderr and "MB" in done.stderr
        filler.unlink()
        again = _cli("indexer", str(root), "--model", "test-tiny", home=home)
        assert again.returncode == 0, again.stderr
        check = _cli("indexer", "check", "--json", home=home)
        assert check.returncode == 0, check.stderr
        assert json.loads(check.stdout)["ok"] is True and json.loads(check.stdout)["points"] == 4
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_names_that_are_not_utf8_are_indexed_stored_and_shown_losslessly(tmp_path):
    """Issue 12.2: one name that is not valid UTF-8 ended the whole scan (0 files indexed, good ones included)."""
    from indexer.stores.fsnames import from_text, to_text

    root = _library(tmp_path / "photos", 2)
    odd = os.fsdecode(os.fsencode(root) + b"/caf\xe9-\xff.jpg")  # Latin-1 bytes, as old drives and Samba hold them
    odd_dir = os.fsdecode(os.fsencode(root) + b"/\xe9t\xe9")
    os.mkdir(odd_dir)
    write_jpeg(odd, size=(64, 48), seed=31)
    write_jpeg(os.path.join(odd_dir, "x.jpg"), size=(64, 48), seed=32)
    (Path(odd_dir) / "broken.jpg").write_text("not an image")
    home = tmp_path / "home"
    svc = make_service(home, root)
    try:
        report = svc.scan()
        assert report.embedded == 4 and report.failed == 1
        assert svc.catalog.get_file(odd).status == "indexed"  # the fs form round-trips through the catalog
        assert {r.path for r in svc.catalog.files_under(odd_dir)} == {os.path.join(odd_dir, "x.jpg"),
                                                                       os.path.join(odd_dir, "broken.jpg")}
        payload_paths = sorted(p for pt in svc.store.scroll(svc.collection.name) for p in pt.payload["paths"])
        assert to_text(odd) in payload_paths
        assert sorted(from_text(p) for p in payload_paths) == sorted(
            r.path for r in svc.catalog.files_under("/", statuses=("indexed",)))
        assert svc.check().ok
        assert svc.scan().embedded == 0  # a rescan finds every name unchanged
    finally:
        svc.close()
    shown = _cli("search", "a photo", "--min-score", "0", "--limit", "10", home=home)
    assert shown.returncode == 0 and "caf\\xe9-\\xff.jpg" in shown.stdout, shown.stderr
    as_json = _cli("search", "a photo", "--min-score", "0", "--limit", "10", "--json", home=home)
    paths = [from_text(p) for r in json.loads(as_json.stdout)["results"] for p in r["paths"]]
    assert odd in paths and Path(odd).read_bytes()  # lossless: the path opens the file again
    status = _cli("indexer", "status", home=home)
    assert status.returncode == 0 and "\\xe9t\\xe9/broken.jpg" in status.stdout, status.stderr


def test_a_name_too_long_for_a_sidecar_beside_it_is_indexed_with_its_neighbours(tmp_path):
    """Found by a breaker pass: a photo named with 252-255 bytes made the `<name>.xmp` sidecar lookup raise
    ENAMETOOLONG, which ended the scan (and made the watcher retry the batch forever); the good photos beside it
    stayed pending."""
    root = _library(tmp_path / "photos", 2)
    longest = root / ("c" * 251 + ".jpg")  # 255 bytes: the longest name the file system allows
    write_jpeg(longest, size=(64, 48), seed=41)
    svc = make_service(tmp_path / "home", root)
    try:
        report = svc.scan()
        assert report.embedded == 3 and report.failed == 0
        assert _status(svc, longest) == "indexed" and _status(svc, root / "p1.jpg") == "indexed"
        assert_consistent(svc)
    finally:
        svc.close()


def _without_read_override(args: list[str]) -> list[str]:
    """Run as root, a command ignores file permissions; `setpriv` drops that power so `chmod 000` bites."""
    if os.geteuid() != 0:
        return args
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file permissions cannot be made to bite")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *args]


def test_a_permission_failure_is_retried_once_the_permission_is_fixed(tmp_path):
    """Found by a breaker pass: "unreadable: Permission denied" stayed failed after `chmod 644`, because a failed
    file waits for its size or mtime to change and chmod changes neither."""
    root = _library(tmp_path / "photos", 2)
    locked = root / "locked.jpg"
    write_jpeg(locked, size=(64, 48), seed=51)
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    scan = _without_read_override([sys.executable, "-m", "indexer", str(root), "--model", "test-tiny",
                                   "--home", str(home)])
    locked.chmod(0)
    try:
        first = subprocess.run(scan, capture_output=True, text=True, env=env, timeout=180)
    finally:
        locked.chmod(0o644)
    assert first.returncode == 0, first.stderr
    status = json.loads(_cli("indexer", "status", "--json", home=home).stdout)
    assert status["files"]["failed"] == 1 and status["files"]["indexed"] == 2, status["files"]
    again = subprocess.run(scan, capture_output=True, text=True, env=env, timeout=180)
    assert again.returncode == 0, again.stderr
    status = json.loads(_cli("indexer", "status", "--json", home=home).stdout)
    assert status["files"]["indexed"] == 3 and status["files"].get("failed", 0) == 0, status["files"]


def test_watch_follows_names_that_are_not_utf8(tmp_path):
    root = _library(tmp_path / "photos", 1)
    svc = make_service(tmp_path / "home", root)
    svc.scan()
    thread = threading.Thread(target=svc.watch, daemon=True)
    thread.start()
    try:
        wait_for(lambda: svc.watching)
        odd = os.fsdecode(os.fsencode(root) + b"/new-\xe9.jpg")
        write_jpeg(odd, size=(64, 48), seed=40)
        wait_for(lambda: _status(svc, Path(odd)) == "indexed")
        os.rename(odd, odd.replace("new-", "renamed-"))
        wait_for(lambda: _status(svc, Path(odd)) == "deleted")
        assert thread.is_alive()
    finally:
        svc.stop.set()
        thread.join(timeout=10)
        svc.close()


def test_only_a_store_that_keeps_failing_ends_the_watch_loop():
    """Bugs and transient faults are retried forever (with back-off); a broken store ends the loop after 3 tries."""
    from indexer.owner.watchloop import STORE_FAILURES_FATAL, WatchLoop
    from indexer.scan.settle import SettleQueue
    from indexer.stores.vectors import VectorStoreError

    class Service:
        def __init__(self, error):
            self.stop, self.error, self.calls = threading.Event(), error, 0

        def release_idle_models(self):  # the loop offers idle models back between batches
            return False

        def handle(self, files, folders):
            self.calls += 1
            if self.calls >= 4 and not isinstance(self.error, VectorStoreError):
                self.stop.set()
            raise self.error

    for error, fatal in ((RuntimeError("a bug"), False), (OSError(5, "I/O error"), False),
                         (VectorStoreError("store gone"), True)):
        queue = SettleQueue(0.0)
        queue.touch(Path("/nowhere/a.jpg"))
        service = Service(error)
        loop = WatchLoop(service, queue)
        if fatal:
            with pytest.raises(VectorStoreError):
                loop.run()
            assert service.calls == STORE_FAILURES_FATAL
        else:
            loop.run()  # ended by the stop, not by the error
            assert service.calls >= 4 and loop.recovered >= 4
