"""The run directory (`<home>/train_runs/<name>/`): settings, per-epoch checkpoint and best weights, for `--resume`.

- `run.json`: the run's `TrainConfig`, data fingerprint and status, written when it starts;
- `last.pt`: after every epoch: trainable tensors, optimizer, scheduler, grad scaler, torch RNG states, `FitState`;
- `best.pt`: the text-side tensors of the best epoch so far.
Files are replaced atomically (temp + os.replace), so a kill mid-write leaves the previous epoch intact. The run
directory is removed once the tuned tower has been saved as a version; it only exists while a run is unfinished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from models.model import LitModel
from models.saved import load_partial_state
from models.train.config import TrainConfig
from models.train.fit import FitState, text_state
from models.train.loop import Trainer

RUNS_DIR = "train_runs"


def runs_dir(home: Path) -> Path:
    return home / RUNS_DIR


class RunDir:
    def __init__(self, home: Path, name: str):
        self.name = name
        self.path = runs_dir(home) / name

    @property
    def resumable(self) -> bool:
        return (self.path / "last.pt").is_file()

    def start(self, config: TrainConfig, fingerprint: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / "run.json", json.dumps(
            {"config": config.to_json(), "fingerprint": fingerprint}, indent=2).encode())

    def read(self) -> dict:
        try:
            return json.loads((self.path / "run.json").read_text())
        except (OSError, ValueError) as err:
            raise FileNotFoundError(f"no resumable run {self.name!r} in {self.path.parent}") from err

    def save(self, model: LitModel, trainer: Trainer, state: FitState, best_changed: bool) -> None:
        """Checkpoint after an epoch (best.pt first, so last.pt never points at a best that is not on disk)."""
        if best_changed and state.best_text_state is not None:
            _atomic_torch_save(self.path / "best.pt", state.best_text_state)
        checkpoint = {"text_state": text_state(model), "trainer": trainer.state_dict(), "fit": state.summary(),
                      "rng": {"cpu": torch.get_rng_state(),
                              "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}}
        _atomic_torch_save(self.path / "last.pt", checkpoint)

    def restore(self, model: LitModel, trainer: Trainer) -> FitState:
        """Model, optimizer, scheduler, scaler and RNG as they were after the last completed epoch."""
        checkpoint = torch.load(self.path / "last.pt", map_location="cpu", weights_only=True)
        load_partial_state(model, checkpoint["text_state"])
        trainer.load_state_dict(checkpoint["trainer"])
        torch.set_rng_state(checkpoint["rng"]["cpu"])
        if checkpoint["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        best_path = self.path / "best.pt"
        best = torch.load(best_path, map_location="cpu", weights_only=True) if best_path.is_file() else None
        return FitState.from_summary(checkpoint["fit"], best)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def latest_resumable(home: Path) -> str | None:
    """Name of the most recently checkpointed unfinished run, if any."""
    runs = [p for p in runs_dir(home).glob("*/last.pt")] if runs_dir(home).is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime_ns).parent.name if runs else None


def _atomic_torch_save(path: Path, obj: object) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as out:
        torch.save(obj, out)
    os.replace(tmp, path)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
