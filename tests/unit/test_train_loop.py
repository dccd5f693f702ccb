"""The training loop on a tiny model: accumulation, what moves per mode, the locked image tower, seeded epochs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models
from models.train.config import TrainConfig
from models.train.loop import Trainer
from models.train.pairs import PairSet, epoch_batches
from models.train.trainable import select_trainable


def _pairs(dim: int = 32, images: int = 12, per_image: int = 2) -> PairSet:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((images, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = np.repeat(np.arange(images), per_image)
    return PairSet([f"photo number {i} caption {j}" for i in range(images) for j in range(per_image)], index,
                   [f"k{i}" for i in range(images)], vectors)


def _trainer(mode: str, **settings) -> Trainer:
    bundle = models.create("test-tiny", device="cpu")
    config = TrainConfig(train=mode, batch_size=4, epochs=2, lr=1e-3, **settings)
    select_trainable(bundle.model, config.mode)
    return Trainer(bundle.model, config, _pairs(), progress=False)


def test_accumulation_steps_the_optimizer_once_per_group():
    trainer = _trainer("whole", accum_steps=2)
    batches = len(epoch_batches(trainer.pairs.image_index, 4, np.random.default_rng([0, 1])))
    stats = trainer.train_epoch(1)
    assert trainer.scheduler.last_epoch == math.ceil(batches / 2)
    assert stats.pairs == len(trainer.pairs) and math.isfinite(stats.loss)


@pytest.mark.parametrize("mode, encoder_moves", [("head", False), ("whole", True)])
def test_what_moves(mode, encoder_moves):
    trainer = _trainer(mode)
    model = trainer.model
    image_before = {k: v.clone() for k, v in model.image_tower.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in model.text_tower.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.text_tower.head.state_dict().items()}
    trainer.train_epoch(1)
    assert all(torch.equal(v, model.image_tower.state_dict()[k]) for k, v in image_before.items())
    assert any(not torch.equal(v, model.text_tower.head.state_dict()[k]) for k, v in head_before.items())
    moved = any(not torch.equal(v, model.text_tower.encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert moved == encoder_moves
    model.assert_locked()


def test_same_seed_same_epoch():
    losses = []
    for _ in range(2):
        torch.manual_seed(5)
        losses.append(_trainer("whole", seed=5).train_epoch(1).loss)
    assert losses[0] == losses[1]


def test_keep_auto_picks_the_epoch_by_validation_only_on_a_split_large_enough_to_choose():
    from models.train.config import MIN_SELECT_VAL_IMAGES

    assert TrainConfig().keep == "auto"
    assert not TrainConfig().selects_best(MIN_SELECT_VAL_IMAGES - 1)
    assert TrainConfig().selects_best(MIN_SELECT_VAL_IMAGES)
    assert TrainConfig(keep="best").selects_best(1) and not TrainConfig(keep="last").selects_best(10_000)
    with pytest.raises(ValueError, match="--keep"):
        TrainConfig(keep="first")


@pytest.mark.parametrize("keep", ["last", "best"])
def test_fit_keeps_the_last_epoch_or_the_best(keep):
    from models.train.fit import FitState, fit
    from models.train.metrics import score

    torch.manual_seed(0)
    bundle = models.create("test-tiny", device="cpu")
    config = TrainConfig(train="whole", batch_size=4, epochs=3, lr=1e-3, keep=keep, patience=0)
    select_trainable(bundle.model, config.mode)
    trainer = Trainer(bundle.model, config, _pairs(), progress=False)
    state = fit(trainer, FitState(), _pairs(images=6))  # a tiny split: below MIN_SELECT_VAL_IMAGES
    assert [h["epoch"] for h in state.history] == [1, 2, 3] and all("val" in h for h in state.history)
    assert state.before is not None and not state.stopped_early
    if keep == "last":
        assert state.best_epoch == 3
    else:  # the kept epoch is the one with the best validation score (epoch 0, the base, competes too)
        scores = [list(score(state.before))] + [list(score(h["val"])) for h in state.history]
        assert state.best_epoch == max(range(4), key=lambda e: scores[e])
