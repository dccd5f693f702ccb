"""The contrastive loss, Recall@K, the LR schedule and the training settings."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from models.train.config import TrainConfig, TrainMode
from models.train.loop import contrastive_loss, warmup_cosine
from models.train.metrics import recall_at_k


def _fake_model(scale: float) -> SimpleNamespace:
    logit_scale = torch.tensor(math.log(scale))
    return SimpleNamespace(contrastive_logits=lambda i, t: logit_scale.exp() * i @ t.T)


def test_loss_is_symmetric_cross_entropy_over_scaled_cosines():
    torch.manual_seed(0)
    images, texts = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    logits = 10.0 * images @ texts.T
    expected = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    assert torch.allclose(contrastive_loss(_fake_model(10.0), images, texts), expected)
    assert torch.allclose(contrastive_loss(_fake_model(10.0), texts, images), expected)  # same both ways


def test_loss_is_low_for_matching_pairs_and_high_for_shuffled():
    vectors = torch.eye(4)
    assert contrastive_loss(_fake_model(100.0), vectors, vectors) < 1e-6
    assert contrastive_loss(_fake_model(100.0), vectors, vectors.roll(1, 0)) > 50


def test_recall_counts_hits_both_ways():
    images = torch.eye(3)  # (I=3, D=3)
    texts = F.normalize(torch.tensor([[1.0, 0.1, 0], [0, 1, 0.2], [0.9, 0, 0.1], [0, 0.2, 1]]), dim=-1)
    index = torch.tensor([0, 1, 2, 2])  # caption 2 points at the wrong image
    metrics = recall_at_k(texts, images, index, ks=(1, 2))
    assert metrics["t2i_r1"] == pytest.approx(0.75) and metrics["t2i_r2"] == pytest.approx(1.0)
    assert metrics["i2t_r1"] == pytest.approx(1.0)  # image 2's other caption (3) is its nearest text


def test_warmup_then_cosine_to_zero():
    factor = warmup_cosine(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0)


@pytest.mark.parametrize("text, expected", [("whole", TrainMode("whole")), ("last:2", TrainMode("last", 2)),
                                            ("lora", TrainMode("lora")), ("head", TrainMode("head"))])
def test_train_modes_parse(text, expected):
    assert TrainMode.parse(text) == expected and str(expected) == text


@pytest.mark.parametrize("bad", ["last", "last:0", "all", "head:1"])
def test_bad_train_modes_are_errors(bad):
    with pytest.raises(ValueError, match="--train"):
        TrainMode.parse(bad)


def test_config_validates_and_round_trips(tmp_path):
    with pytest.raises(ValueError, match="--batch-size"):
        TrainConfig(batch_size=1)
    config = TrainConfig(captions=tmp_path / "c.csv", train="lora", lr=None)
    assert config.peak_lr == 5e-4
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_json(config.to_json() | {"typo": 1})
