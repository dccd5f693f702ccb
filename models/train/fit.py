"""Epochs with validation, early stopping and the best checkpoint: `FitState` is everything a resumed run needs.

Validation Recall@K is measured before the first epoch (the base model) and after each one; the best epoch by
text→image recall (then by held-out loss; `metrics.score`) is what gets saved, so an epoch that overfits is never
the result. Epoch 0 competes too: if tuning never beats the base, the result says so (`improved: false`). A split
too small to choose by (`TrainConfig.keep`, default auto: under `MIN_SELECT_VAL_IMAGES` images) is still measured
and reported after every epoch, but the last epoch of the schedule is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from models.model import LitModel
from models.saved import TEXT_PREFIXES
from models.train.loop import Trainer
from models.train.metrics import evaluate, score
from models.train.pairs import PairSet

log = logging.getLogger(__name__)


@dataclass
class FitState:
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)  # per epoch: loss, pairs/s, lr, val metrics
    before: dict | None = None  # val metrics of the base model
    best_epoch: int = 0
    best_score: list[float] | None = None
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    stopped_early: bool = False
    best_text_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "best_text_state"}

    @classmethod
    def from_summary(cls, data: dict, best_text_state: dict[str, torch.Tensor] | None) -> FitState:
        return cls(**data, best_text_state=best_text_state)


def text_state(model: LitModel) -> dict[str, torch.Tensor]:
    """The trainable side's tensors (text tower, LoRA adapters included, and temperature), copied to CPU."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(TEXT_PREFIXES)}


def fit(trainer: Trainer, state: FitState, val: PairSet | None, *,
        on_epoch_end: Callable[[FitState, bool], None] | None = None) -> FitState:
    """Run epochs until `config.epochs`, early stopping, or `max_epochs_this_run` (then resumable)."""
    config, model = trainer.config, trainer.model
    if val is not None and state.before is None:
        state.before = evaluate(model, val)
        state.best_score, state.best_text_state = list(score(state.before)), text_state(model)
        log.info("before tuning: %s", format_metrics(state.before))
    budget = config.max_epochs_this_run or config.epochs
    for _ in range(budget):
        if state.epoch >= config.epochs or state.stopped_early:
            break
        stats = trainer.train_epoch(state.epoch + 1)
        state.epoch = stats.epoch
        record = {"epoch": stats.epoch, "loss": stats.loss, "pairs": stats.pairs, "seconds": stats.seconds,
                  "pairs_per_s": stats.pairs_per_s, "lr": stats.lr}
        improved = _judge(state, model, val, record, config.patience,
                          select=val is not None and config.selects_best(val.n_images))
        state.history.append(record)
        log.info("epoch %d/%d: loss %.4f, %.0f pairs/s%s", stats.epoch, config.epochs, stats.loss,
                 stats.pairs_per_s, f", val {format_metrics(record['val'])}" if "val" in record else "")
        if on_epoch_end is not None:
            on_epoch_end(state, improved)
    return state


def _judge(state: FitState, model: LitModel, val: PairSet | None, record: dict, patience: int, *,
           select: bool = True) -> bool:
    """Evaluate the epoch; keep it if best; count toward early stopping. Without validation, or when the split is
    too small to choose (`select=False`, `TrainConfig.keep`), the last epoch wins and the split is only reported."""
    if val is not None:
        record["val"] = evaluate(model, val)
    if val is None or not select:
        state.best_epoch, state.best_text_state = record["epoch"], text_state(model)
        return True
    current = list(score(record["val"]))
    if state.best_score is None or current > state.best_score:
        state.best_epoch, state.best_score, state.best_text_state = record["epoch"], current, text_state(model)
        state.bad_epochs = 0
        return True
    state.bad_epochs += 1
    if patience and state.bad_epochs >= patience:
        state.stopped_early = True
        log.info("early stop: no better validation score for %d epochs (best: epoch %d)", patience, state.best_epoch)
    return False


def format_metrics(metrics: dict[str, float]) -> str:
    t2i = "/".join(f"{100 * metrics[f't2i_r{k}']:.1f}" for k in (1, 5, 10))
    i2t = "/".join(f"{100 * metrics[f'i2t_r{k}']:.1f}" for k in (1, 5, 10))
    return f"T→I R@1/5/10 {t2i}, I→T {i2t}"
