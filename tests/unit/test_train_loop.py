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
