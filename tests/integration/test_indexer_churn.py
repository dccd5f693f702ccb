"""Random filesystem churn under a watcher that has no supervisor (issue 12).

Seeded random events — creates, half-written files completed later, temp-then-rename, renames, moves between
folders, duplicates, rewrites, deletes, whole folders created, moved and deleted — hit a live `watch()` over real
inotify. Afterwards the watcher must still run (zero deaths) and, once it settles, the catalog, the filesystem and
the vector store must agree exactly. The default run is ~200 events (well under a minute); the long one
(`LOUPE_CHURN_EVENTS=2000`, for example) is opt-in and marked slow. Figures are printed (pytest -s) and, with
`LOUPE_CHURN_REPORT=FILE`, appended to FILE as JSON.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from indexer.owner.service import IndexerService
from indexer.scan.check import IndexCheck
from indexer.settings import IndexerSettings
from indexer.stores.fsnames import to_text
from tests.imagegen import write_jpeg

DEFAULT_EVENTS = 200
CONVERGE_TIMEOUT = 180.0


def _pool(tmp_path: Path, n: int = 40) -> list[bytes]:
    """Distinct small JPEGs, written once and copied around (churn measures the watcher, not the encoder)."""
    out = []
    for seed in range(n):
        path = write_jpeg(tmp_path / f"pool{seed}.jpg", size=(48, 40), seed=1000 + seed)
        out.append(path.read_bytes())
        path.unlink()
    return out


class Churn:
    """Applies random events under `root`; every file it leaves behind is a complete, valid photo."""

    def __init__(self, root: Path, pool: list[bytes], seed: int):
        self.root, self.pool, self.rng = root, pool, random.Random(seed)
        self.counter = 0
        self.done: dict[str, int] = {}
        self.halves: list[tuple[Path, bytes]] = []  # half-written files, completed a few events later

    def _name(self, suffix: str = ".jpg") -> str:
        self.counter += 1
        return f"f{self.counter}{suffix}"

    def _files(self) -> list[Path]:
        return [p for p in self.root.rglob("*.jpg") if p.is_file() and all(p != h for h, _ in self.halves)]

    def _folders(self) -> list[Path]:
        return [self.root] + [p for p in self.root.rglob("*") if p.is_dir()]

    def step(self) -> None:
        kinds = ["create", "create", "half", "temp_rename", "rename", "move", "duplicate", "rewrite", "delete",
                 "folder_create", "folder_move", "folder_delete"]
        kind = self.rng.choice(kinds)
        if self.halves and self.rng.random() < 0.4:
            kind = "finish_half"
        try:
            getattr(self, kind)()
        except (FileNotFoundError, FileExistsError, IndexError, OSError):
            kind += "_raced"  # e.g. a folder picked was moved by an earlier event: still an event on disk
        self.done[kind] = self.done.get(kind, 0) + 1

    def create(self) -> None:
        (self.rng.choice(self._folders()) / self._name()).write_bytes(self.rng.choice(self.pool))

    def half(self) -> None:
        data = self.rng.choice(self.pool)
        path = self.rng.choice(self._folders()) / self._name()
        path.write_bytes(data[: len(data) // 3])
        self.halves.append((path, data))

    def finish_half(self) -> None:
        path, data = self.halves.pop(0)
        if path.parent.exists():
            with path.open("ab") as out:
                out.write(data[len(data) // 3:])
        else:
            path.unlink(missing_ok=True)

    def temp_rename(self) -> None:
        folder = self.rng.choice(self._folders())
        tmp = folder / self._name(".jpg.part")
        tmp.write_bytes(self.rng.choice(self.pool))
        tmp.rename(folder / self._name())

    def rename(self) -> None:
        path = self.rng.choice(self._files())
        path.rename(path.with_name(self._name()))

    def move(self) -> None:
        path = self.rng.choice(self._files())
        path.rename(self.rng.choice(self._folders()) / self._name())

    def duplicate(self) -> None:
        path = self.rng.choice(self._files())
        shutil.copyfile(path, self.rng.choice(self._folders()) / self._name())

    def rewrite(self) -> None:
        self.rng.choice(self._files()).write_bytes(self.rng.choice(self.pool))

    def delete(self) -> None:
        self.rng.choice(self._files()).unlink()

    def folder_create(self) -> None:
        folder = self.rng.choice(self._folders()) / f"d{self._name('')}"
        folder.mkdir()
        for _ in range(self.rng.randint(1, 4)):
            (folder / self._name()).write_bytes(self.rng.choice(self.pool))

    def _movable_folder(self) -> Path:
        folders = [f for f in self._folders() if f != self.root and not any(str(h).startswith(str(f) + os.sep)
                                                                            for h, _ in self.halves)]
        return self.rng.choice(folders)

    def folder_move(self) -> None:
        folder = self._movable_folder()
        target = self.rng.choice([f for f in self._folders() if not str(f).startswith(str(folder))])
        folder.rename(target / f"m{self._name('')}")

    def folder_delete(self) -> None:
        shutil.rmtree(self._movable_folder())

    def finish(self) -> None:
        while self.halves:
            self.finish_half()


def _disagreement(svc, root: Path) -> str | None:
    """None when catalog = filesystem = vector store, else what still differs (for the timeout message)."""
    on_disk = {str(p) for p in root.rglob("*.jpg") if p.is_file()}
    live = svc.catalog.files_under(str(root), statuses=("indexed", "pending", "failed"))
    indexed = {r.path for r in live if r.status == "indexed"}
    if on_disk != indexed or len(live) != len(indexed):
        return f"disk-only {len(on_disk - indexed)}, catalog-only {len(indexed - on_disk)}, " \
               f"not indexed {len(live) - len(indexed)}"
    expected: dict[str, set[str]] = {}
    for record in live:
        expected.setdefault(record.content_hash, set()).add(to_text(record.path))
    stored = {p.payload["content_hash"]: set(p.payload["paths"]) for p in svc.store.scroll(svc.collection.name)}
    if stored != expected:
        return f"store {len(stored)} contents vs catalog {len(expected)}"
    return None


def _churn(tmp_path: Path, events: int, seed: int) -> dict:
    root = tmp_path / "photos"
    root.mkdir()
    pool = _pool(tmp_path)
    for i in range(10):
        (root / f"start{i}.jpg").write_bytes(pool[i])
    settings = IndexerSettings.from_env(home=tmp_path / "home", roots=(root,), model="test-tiny", settle=0.3,
                                        workers=2, batch_size=8, thumbnails=False)
    svc = IndexerService(settings)
    svc.scan()
    died: list[BaseException] = []

    def watch() -> None:
        try:
            svc.watch()
        except BaseException as err:  # a death: recorded, never retried (there is no supervisor)
            died.append(err)

    thread = threading.Thread(target=watch, name="churn-watch", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not svc.watching and time.monotonic() < deadline:
            time.sleep(0.05)
        churn = Churn(root, pool, seed)
        started = time.monotonic()
        for _ in range(events):
            churn.step()
            time.sleep(churn.rng.random() * 0.02)
        churn.finish()
        churn_seconds = time.monotonic() - started
        last, deadline = None, time.monotonic() + CONVERGE_TIMEOUT
        while time.monotonic() < deadline and not died:
            last = _disagreement(svc, root) if len(svc.queue) == 0 else "events queued"
            if last is None and svc.work_lock.acquire(blocking=False):
                svc.work_lock.release()
                break
            time.sleep(0.25)
        converge = time.monotonic() - started - churn_seconds
        alive = thread.is_alive()
        findings = IndexCheck(svc.catalog, svc.store, svc.sync, svc.collection.name).verify()
        figures = {"events": events, "seed": seed, "kinds": churn.done, "deaths": len(died) + (not alive),
                   "batches_retried": svc.watch_loop.recovered, "churn_s": round(churn_seconds, 1),
                   "converge_s": round(converge, 1), "files": findings.indexed_files, "contents": findings.contents,
                   "points": findings.points, "check_ok": findings.ok, "left": last}
    finally:
        svc.stop.set()
        thread.join(timeout=15)
        svc.close()
    print("churn:", json.dumps(figures))
    if os.environ.get("LOUPE_CHURN_REPORT"):
        with open(os.environ["LOUPE_CHURN_REPORT"], "a") as out:
            out.write(json.dumps(figures) + "\n")
    assert not died, f"the watcher died: {died[0]!r}"
    assert figures["deaths"] == 0
    assert last is None, f"no convergence after {CONVERGE_TIMEOUT:.0f} s: {last}"
    assert findings.ok, findings.summary()
    return figures


def test_churn_without_a_supervisor(tmp_path):
    figures = _churn(tmp_path, DEFAULT_EVENTS, seed=12)
    assert sum(figures["kinds"].values()) == DEFAULT_EVENTS


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LOUPE_CHURN_EVENTS"), reason="long churn is opt-in: LOUPE_CHURN_EVENTS=N")
def test_long_churn_without_a_supervisor(tmp_path):
    events = int(os.environ["LOUPE_CHURN_EVENTS"])
    seeds = [int(s) for s in os.environ.get("LOUPE_CHURN_SEEDS", "1").split(",")]
    for seed in seeds:
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        _churn(run, events, seed)

