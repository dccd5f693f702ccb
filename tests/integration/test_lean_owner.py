"""A long-running owner releases its model when idle, loads it again on the next work, and says which is loaded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indexer.owner.client import OwnerAuthError, OwnerClient, OwnerError
from indexer.owner.modelslot import ModelSlot
from indexer.owner.service import IndexerService
from indexer.settings import IndexerSettings
from tests.imagegen import write_jpeg
from tests.integration.test_indexer_watch import wait_for


def test_a_slot_is_released_only_when_both_sides_are_idle() -> None:
    slot = ModelSlot("test-tiny", "cpu")
    bundle = slot()
    now = time.monotonic()
    assert not slot.release_if_idle(10, 10, now=now)
    slot.active().encode_texts(["a query"])  # a text query keeps it warm past the image timeout
    assert not slot.release_if_idle(10, 30, now=slot.last_image_use + 20)
    assert slot.release_if_idle(10, 30, now=slot.last_text_use + 31)
    assert not slot.loaded and slot.describe()["loaded"] is False
    assert bundle.model.encode_texts(["still usable by whoever holds it"]).shape == (1, bundle.dim)
    assert slot().image_tower_id == bundle.image_tower_id and slot.loads == 2


def test_an_idle_service_releases_its_model_and_reloads_it_for_new_photos(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    write_jpeg(photos / "red.jpg", (96, 72), color="red")
    settings = IndexerSettings.from_env(home=tmp_path / "home", roots=(photos,), model="test-tiny", workers=1,
                                        batch_size=4, image_idle_s=0.0, text_idle_s=0.0)
    service = IndexerService(settings)
    try:
        assert service.scan().embedded == 1
        assert service.model_state()[0]["loaded"]
        assert service.release_idle_models()
        assert service.model_state()[0]["loaded"] is False
        write_jpeg(photos / "navy.jpg", (96, 72), color="navy")
        assert service.handle([photos / "navy.jpg"], []).embedded == 1
        assert service.model_state()[0]["loads"] == 2
        with service.work_lock:  # busy: a batch in flight is never pulled from under the pipeline
            assert not service.release_idle_models()
    finally:
        service.close()


# -- the lean `--watch` owner: a parent without torch, a worker that comes and goes (indexer.watcher) ------------------

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    """The environment now, with this checkout importable by the commands run."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


class Owner:
    """`python -m indexer ROOT --watch` with short idle timeouts, as a user starts it."""

    def __init__(self, root: Path, home: Path, *extra: str):
        self.home = home
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "indexer", str(root), "--watch", "--model", "test-tiny", "--home", str(home),
             "--image-idle", "1", "--text-idle", "2", *extra], stderr=subprocess.PIPE, text=True, env=_env())
        self.lines: list[str] = []
        for line in self.proc.stderr:
            self.lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True).start()
        self.client = OwnerClient.find(home)
        assert self.client is not None and self.client.pid == self.proc.pid, "".join(self.lines)

    def worker(self) -> dict:
        return self.client.status()["worker"]

    def indexed(self) -> int:
        return self.client.status()["files"]["indexed"]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_an_idle_owner_lets_its_worker_go_and_wakes_it_for_photos_and_queries(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    write_jpeg(photos / "red.jpg", (96, 72), color="red")
    owner = Owner(photos, tmp_path / "home")
    try:
        first = owner.worker()
        assert first["state"] == "awake" and first["pid"] != owner.proc.pid
        assert "libtorch" in _maps(first["pid"])  # the worker has the model's libraries ...
        wait_for(lambda: owner.worker()["state"] == "asleep", timeout=60)
        assert not _alive(first["pid"])
        assert "libtorch" not in _maps(owner.proc.pid)  # ... the parent never loads them
        asleep = owner.client.status()  # answered by the parent from the worker's last status
        assert asleep["files"]["indexed"] == 1 and asleep["watching"] is True
        assert all(not m["loaded"] for m in asleep["models_loaded"])

        write_jpeg(photos / "navy.jpg", (96, 72), color="navy")  # an event wakes a worker, which indexes it
        wait_for(lambda: owner.indexed() == 2, timeout=60)
        wait_for(lambda: owner.worker()["state"] == "asleep", timeout=60)

        done = subprocess.run([sys.executable, "-m", "search", "a navy photo", "--json", "--home", str(owner.home)],
                              capture_output=True, text=True, env=_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        assert "waking the indexer" in done.stderr  # the search CLI says why this query takes seconds
        assert {r["path"] for r in json.loads(done.stdout)["results"]} >= {str(photos / "navy.jpg")}
        wait_for(lambda: owner.worker()["state"] == "asleep", timeout=60)

        vectors = owner.client.embed_texts(["a red photo"])  # a query wakes one too
        assert vectors.shape[0] == 1
        assert owner.worker()["state"] == "awake"
        wait_for(lambda: owner.worker()["state"] == "asleep", timeout=60)
        assert "libtorch" not in _maps(owner.proc.pid)
    finally:
        rc = owner.stop()
    assert rc == 0, "".join(owner.lines)
    assert "Traceback" not in "".join(owner.lines)


def test_status_from_a_sleeping_owner_needs_the_token(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    owner = Owner(photos, tmp_path / "home")
    try:
        wait_for(lambda: owner.worker()["state"] == "asleep", timeout=60)
        stranger = OwnerClient(owner.client.url, "wrong-token", owner.client.pid)
        with pytest.raises(OwnerAuthError):
            stranger.status()
        assert stranger.health()["pid"] == owner.proc.pid  # open, as the API's own /health
        done = subprocess.run([sys.executable, "-m", "indexer", "status", "--home", str(owner.home)],
                              capture_output=True, text=True, env=_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        assert "worker      asleep: no model in memory" in done.stdout, done.stdout
        assert owner.worker()["state"] == "asleep"  # asking did not wake it
    finally:
        assert owner.stop() == 0


def test_a_worker_that_dies_is_replaced_and_what_it_missed_is_found(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    write_jpeg(photos / "red.jpg", (96, 72), color="red")
    owner = Owner(photos, tmp_path / "home", "--text-idle", "600")  # keep it awake: this test kills it
    try:
        victim = owner.worker()["pid"]
        os.kill(victim, signal.SIGKILL)
        write_jpeg(photos / "navy.jpg", (96, 72), color="navy")
        wait_for(lambda: _reachable(owner) and owner.indexed() == 2, timeout=90)
        assert owner.worker()["pid"] != victim
        assert any("ended unexpectedly" in line for line in owner.lines)
    finally:
        assert owner.stop() == 0


def _reachable(owner: Owner) -> bool:
    try:
        owner.client.status()
        return True
    except OwnerError:
        return False


def test_files_added_while_the_first_scan_runs_are_indexed(tmp_path: Path) -> None:
    """Issue 12.3 through the real command: the watch starts before the worker's first scan, so files written while
    it runs are not lost (the parent queues their events and hands them over)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(20):
        write_jpeg(photos / f"p{i}.jpg", (96, 72), seed=i)
    proc = subprocess.Popen([sys.executable, "-m", "indexer", str(photos), "--watch", "--model", "test-tiny",
                             "--home", str(tmp_path / "home")], stderr=subprocess.PIPE, text=True, env=_env())
    try:
        for line in proc.stderr:  # the parent has published its port: the watch runs, the worker starts
            if "local API on" in line:
                break
        late = [photos / f"late{i}.jpg" for i in range(5)]
        for i, path in enumerate(late):
            write_jpeg(path, (96, 72), seed=50 + i)
        threading.Thread(target=lambda: list(proc.stderr), daemon=True).start()
        client = OwnerClient.find(tmp_path / "home")
        wait_for(lambda: client.status()["files"]["indexed"] == 25, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.mark.parametrize("watch", [False, True])
def test_a_mistyped_model_name_is_one_clear_line(tmp_path: Path, watch: bool) -> None:
    """A typo in --model used to end in a KeyError traceback (in the scan and in the `--watch` worker alike)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    write_jpeg(photos / "red.jpg", (96, 72), color="red")
    done = subprocess.run([sys.executable, "-m", "indexer", str(photos), *(["--watch"] if watch else []),
                           "--model", "offline-lyte", "--home", str(tmp_path / "home")],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "error: unknown model 'offline-lyte'; known presets:" in done.stderr
