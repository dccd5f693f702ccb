"""Tuning from the UI: a `models.train.train` run in a background task, its live curves, and version comparison.

Image vectors come first from the index itself (the photos are already embedded by the same locked tower — LiT's
point: tuning never re-embeds), then from the tuning CLI's own chain (cached locked tower). Live progress is read
from the run's per-epoch checkpoint (`<home>/train_runs/<name>/last.pt`, written atomically after every epoch), the
structured record `--resume` relies on, rather than parsed from log lines.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.stores.vectors import point_id
from ui.jobs import Task

log = logging.getLogger(__name__)
BASE = "(base model)"
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class TuneRequest:
    captions: Path
    model: str  # the index's model (or a tuned version's folder, to continue tuning it)
    images_root: Path | None = None  # relative image paths resolve here (default: the captions file's folder)
    val: Path | None = None  # held-out captions; else a seeded split of val_fraction of the images
    train: str = "head"  # whole | last:N | lora | head
    epochs: int = 5
    batch_size: int = 64
    lr: float | None = None  # None: the mode's default
    val_fraction: float = 0.1
    name: str | None = None
    device: str | None = None


class IndexVectorSource:
    """Image vectors of captioned files that are in the index (keys: absolute paths), with one store lookup."""

    def __init__(self, store, collection: str, by_path: dict[str, str]):
        self.store, self.collection, self.by_path = store, collection, by_path

    def vectors_for(self, keys: list[str]) -> dict[str, np.ndarray]:
        wanted = {key: self.by_path[key] for key in keys if key in self.by_path}
        if not wanted:
            return {}
        points = self.store.retrieve(self.collection, [point_id(h) for h in set(wanted.values())], with_vectors=True)
        by_hash = {p.payload.get("content_hash"): np.asarray(p.vector, np.float32) for p in points
                   if p.vector is not None}
        return {key: by_hash[h] for key, h in wanted.items() if h in by_hash}


def tune_work(request: TuneRequest, home: Path, index_source: IndexVectorSource | None):
    """The task body: build the config and the model, run `train`, report epochs as they finish."""

    def work(task: Task) -> dict:
        import models
        from models.train.__main__ import image_vector_source
        from models.train.config import TrainConfig
        from models.train.image_vectors import ChainedSource
        from models.train.run import default_name, train

        config = TrainConfig(captions=request.captions, images_root=request.images_root, val=request.val,
                             model=request.model, name=request.name or default_name(request.model),
                             train=request.train, epochs=request.epochs, batch_size=request.batch_size,
                             lr=request.lr, val_fraction=request.val_fraction, device=request.device)
        task.update(0.0, "loading the model…")
        bundle = models.create(config.model, device=config.device)
        source = image_vector_source(config, bundle, home, progress=False)
        if index_source is not None:
            source = ChainedSource([index_source, source])
        task.update(0.0, "reading image vectors and captions…")
        with EpochWatcher(home, config.name, config.epochs, task):
            result = train(config, image_vectors=source, bundle=bundle, home=home, progress=False)
        task.points = epoch_points(result.history, result.metrics_before)
        task.update(1.0, f"saved as {result.name}" if result.output else "paused")
        return result.to_json()

    return work


def epoch_points(history: list[dict], before: dict | None) -> list[dict]:
    """One row per epoch (epoch 0 = the base model): loss and held-out recall, for the charts."""
    rows = []
    if before:
        rows.append({"epoch": 0, "loss": None, **_recalls(before)})
    for record in history:
        rows.append({"epoch": record["epoch"], "loss": record.get("loss"), **_recalls(record.get("val") or {})})
    return rows


def _recalls(metrics: dict) -> dict:
    keys = ("t2i_r1", "t2i_r5", "i2t_r1", "mean_recall")
    return {key: metrics.get(key) for key in keys}


class EpochWatcher:
    """Follows a run's checkpoint while `train` runs in this thread, updating the task after every epoch."""

    def __init__(self, home: Path, name: str, epochs: int, task: Task):
        from models.train.checkpoint import RunDir

        self.path = RunDir(home, name).path / "last.pt"
        self.epochs, self.task = epochs, task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="loupe-ui-train-watch", daemon=True)
        self._seen: int | None = None

    def __enter__(self) -> EpochWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                stamp = self.path.stat().st_mtime_ns
            except OSError:
                continue
            if stamp != self._seen:
                self._seen = stamp
                self._read()

    def _read(self) -> None:
        import torch

        try:
            fit = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)["fit"]
        except Exception as err:  # noqa: BLE001  (replaced mid-read: the next poll reads the new one)
            log.debug("checkpoint not readable yet: %s", err)
            return
        self.task.points = epoch_points(fit["history"], fit.get("before"))
        last = fit["history"][-1] if fit["history"] else {}
        self.task.update(fit["epoch"] / self.epochs,
                         f"epoch {fit['epoch']}/{self.epochs} · loss {last.get('loss', float('nan')):.4f}")


@dataclass(frozen=True)
class VersionRow:
    name: str  # BASE for the base model
    path: Path | None
    active: bool
    created: str | None
    metadata: dict  # the saved tower's metadata (metrics before/after, history, sizes); {} for the base


def version_rows(home: Path, image_tower_id: str) -> list[VersionRow]:
    """The base model and every tuned tower that reads this image tower's space, oldest first."""
    from models import versions
    from models.saved import read_config

    rows = []
    for info in versions.list_versions(home):
        if info.image_tower_id != image_tower_id:
            continue
        try:
            metadata = read_config(info.path).get("metadata", {})
        except (OSError, ValueError):
            metadata = {}
        rows.append(VersionRow(info.name, info.path, info.active, info.created, metadata))
    base_active = not any(row.active for row in rows)
    return [VersionRow(BASE, None, base_active, None, {}), *rows]


class VersionBackend:
    """A search backend whose texts go through one chosen text tower (the store and collection are the index's), so
    a comparison ranks exactly as search would after promoting that version."""

    kind = "compare"

    def __init__(self, backend, bundle):
        self.store, self.collection, self.home = backend.store, backend.collection, backend.home
        self.bundle = bundle
        self._lock = threading.Lock()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.bundle.model.encode_texts(list(texts)).float().cpu().numpy()  # (N, D)

    def encode_image(self, path=None, data=None) -> np.ndarray:
        raise NotImplementedError("version comparison ranks text queries only")

    def close(self) -> None:
        pass
