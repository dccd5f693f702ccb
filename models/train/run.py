"""`train(config, image_vectors=…) -> TrainResult`: one tuning run, from captions to a saved, versioned text tower.

The run follows LiT (Zhai et al. 2022): the image tower is locked, only text-side parameters and the temperature
move. That is not just asserted at the start: the image tower's weights are digested before and after, and a run
whose digests differ saves nothing. The output is a `models.saved` directory with `parts="text"`, so
`models.create(<dir>)` rebuilds the base and loads the tuned text tower, and the indexed photo vectors stay valid.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from models.bundle import ModelBundle
from models.home import data_home, text_towers_dir
from models.model import LitModel
from models.registry import create
from models.saved import load_partial_state, read_config, save
from models.train.checkpoint import RunDir
from models.train.config import TrainConfig
from models.train.data import TrainingData, load_training_data
from models.train.fit import FitState, fit
from models.train.image_vectors import ImageVectorSource
from models.train.loop import Trainer
from models.train.lora import merge_lora
from models.train.metrics import score
from models.train.trainable import select_trainable
from models.train.vector_cache import CachedTowerSource

log = logging.getLogger(__name__)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclass
class TrainResult:
    name: str
    status: str  # 'finished', or 'paused' (stopped by max_epochs_this_run; resume to finish)
    output: str | None  # saved text tower directory (finished runs)
    image_tower_id: str
    data_fingerprint: str
    epochs_completed: int
    best_epoch: int
    stopped_early: bool
    metrics_before: dict | None
    metrics_after: dict | None  # validation metrics of the kept (best) epoch
    history: list[dict]
    train_size: dict
    val_size: dict | None
    locked_check: dict
    data: list[dict] = field(default_factory=list)

    @property
    def improved(self) -> bool | None:
        if not self.metrics_before or not self.metrics_after:
            return None
        return score(self.metrics_after) > score(self.metrics_before)

    def to_json(self) -> dict:
        return asdict(self) | {"improved": self.improved}


def default_name(model: str) -> str:
    """`<base>-<YYYYmmdd-HHMMSS>`; the base of a saved tuned dir is the preset it was built on."""
    base = model
    if Path(model).expanduser().joinpath("config.json").is_file():
        base = read_config(model)["base"]["preset"]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', base).strip('_')}-{time.strftime('%Y%m%d-%H%M%S')}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def train(config: TrainConfig, *, image_vectors: ImageVectorSource | None = None, bundle: ModelBundle | None = None,
          home: str | Path | None = None, resume: bool = False, progress: bool = True) -> TrainResult:
    """Tune the text tower of `config.model` on `config.captions`; vectors from `image_vectors` (default: the locked
    tower with a cache under the data home). With `resume`, continue the unfinished run named `config.name`."""
    home = data_home(home)
    config = config if config.name else replace(config, name=default_name(config.model))
    output = _check_output(home, config.name)
    run = RunDir(home, config.name)
    seed_everything(config.seed)
    bundle = bundle or create(config.model, device=config.device)
    digest_before = bundle.model.image_tower.fingerprint()
    source = image_vectors or CachedTowerSource(bundle, home, progress=progress)
    data = load_training_data(config, source)
    select_trainable(bundle.model, config.mode, lora_rank=config.lora_rank, lora_alpha=config.lora_alpha)
    trainer = Trainer(bundle.model, config, data.train, progress=progress)
    state = _start_or_resume(run, trainer, data, resume)
    state = fit(trainer, state, data.val, on_epoch_end=lambda s, best: run.save(bundle.model, trainer, s, best))
    locked = verify_locked(bundle.model, digest_before)
    finished = state.epoch >= config.epochs or state.stopped_early
    result = _result(config, bundle, data, state, locked, output if finished else None)
    if not finished:
        log.info("paused after epoch %d of %d; continue with --resume %s", state.epoch, config.epochs, config.name)
        return result
    save_version(bundle, state, output, _metadata(config, bundle, data, state, locked))
    run.remove()
    log.info("saved tuned text tower %s", output)
    return result


def _check_output(home: Path, name: str) -> Path:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"--name {name!r}: use letters, digits, '.', '_', '+' or '-' (it becomes a folder name)")
    output = text_towers_dir(home) / name
    if output.exists():
        raise FileExistsError(f"a text tower named {name!r} already exists in {output.parent}; pick another --name")
    return output


def _start_or_resume(run: RunDir, trainer: Trainer, data: TrainingData, resume: bool) -> FitState:
    config = trainer.config
    if not resume:
        if run.resumable:
            raise FileExistsError(f"an unfinished run named {run.name!r} exists: add --resume {run.name} to continue "
                                  "it, or pick another --name")
        run.start(config, data.fingerprint)
        return FitState()
    if not run.resumable:
        raise FileNotFoundError(f"no checkpoint to resume in {run.path}")
    stored = run.read()
    if stored["fingerprint"] != data.fingerprint:
        raise ValueError(f"the training data changed since run {run.name!r} started (fingerprint "
                         f"{stored['fingerprint']} → {data.fingerprint}); start a new run instead")
    if TrainConfig.from_json(stored["config"]).hyperparameters() != config.hyperparameters():
        raise ValueError(f"run {run.name!r} was started with other settings; resume it without changing them")
    state = run.restore(trainer.model, trainer)
    log.info("resuming run %s after epoch %d", run.name, state.epoch)
    return state


def verify_locked(model: LitModel, digest_before: str) -> dict:
    """The LiT invariant, checked: tower still locked, and every weight and buffer byte-identical to the start."""
    model.assert_locked()
    digest_after = model.image_tower.fingerprint()
    if digest_after != digest_before:
        raise AssertionError(f"the image tower changed during training ({digest_before} → {digest_after}); this is a "
                             "bug in Loupe, and nothing was saved")
    return {"assert_locked": "passed", "image_tower_digest_before": digest_before,
            "image_tower_digest_after": digest_after, "identical": True}


def save_version(bundle: ModelBundle, state: FitState, output: Path, metadata: dict) -> Path:
    """Best epoch's weights, LoRA merged into the base matrices (so the base preset reloads it), saved text-only."""
    if state.best_text_state is not None:
        load_partial_state(bundle.model, state.best_text_state)
    merge_lora(bundle.model.text_tower)
    bundle.metadata = {}  # a tuned base's own metadata is recorded as `parent`, not inherited
    return save(bundle, output, parts="text", metadata=metadata)


def _sizes(pairs, shared_with=None) -> dict:
    """Pairs and images; with `shared_with` (the training set), also how many of these images it holds too (a
    validation that shares them says little about new photos, and `--promote` refuses it without --force)."""
    sizes = {"pairs": len(pairs), "images": pairs.n_images}
    if shared_with is not None:
        sizes["images_also_trained_on"] = len(set(pairs.image_keys) & set(shared_with.image_keys))
    return sizes


def _result(config: TrainConfig, bundle: ModelBundle, data: TrainingData, state: FitState, locked: dict,
            output: Path | None) -> TrainResult:
    after = next((h["val"] for h in state.history if h["epoch"] == state.best_epoch and "val" in h), state.before)
    return TrainResult(
        name=config.name, status="finished" if output else "paused", output=str(output) if output else None,
        image_tower_id=bundle.image_tower_id, data_fingerprint=data.fingerprint, epochs_completed=state.epoch,
        best_epoch=state.best_epoch, stopped_early=state.stopped_early, metrics_before=state.before,
        metrics_after=after, history=state.history, train_size=_sizes(data.train),
        val_size=_sizes(data.val, data.train) if data.val is not None else None, locked_check=locked,
        data=[r.to_json() | {"problems": r.to_json()["problems"][:100]} for r in data.reports],
    )


def _metadata(config: TrainConfig, bundle: ModelBundle, data: TrainingData, state: FitState, locked: dict) -> dict:
    result = _result(config, bundle, data, state, locked, None)
    parent = {"model": config.model, "data_fingerprint": bundle.metadata.get("data_fingerprint")} \
        if bundle.metadata else None
    return {
        "kind": "tuned-text-tower", "version_name": config.name, "base_model": config.model,
        "base_spec": bundle.spec, "parent": parent, "image_tower_id": bundle.image_tower_id,
        "data_fingerprint": data.fingerprint, "hyperparameters": config.hyperparameters(),
        "captions": [r["path"] for r in result.data], "metrics_before": result.metrics_before,
        "metrics_after": result.metrics_after, "history": result.history, "best_epoch": state.best_epoch,
        "stopped_early": state.stopped_early, "train_size": result.train_size, "val_size": result.val_size,
        "locked_check": locked, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
