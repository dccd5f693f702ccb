"""The frozen-text cache gives the same vectors, gradients and training as running the whole text tower each step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from models.train.config import TrainConfig, TrainMode
from models.train.loop import Trainer
from models.train.pairs import PairSet
from models.train.text_cache import HiddenCache, PooledCache, frozen_text_cache
from models.train.trainable import select_trainable

CAPTIONS = ["a dog", "a red car parked in a narrow street at night", "soup", "sunset over the snowy mountains",
            "two children playing football on the grass", "cat"]


def _model(mode: str):
    model = models.create("test-tiny", device="cpu").model
    select_trainable(model, TrainMode.parse(mode))
    model.eval()  # dropout off on both paths, so they must agree exactly
    return model


@pytest.mark.parametrize("mode, kind", [("head", PooledCache), ("last:1", HiddenCache)])
def test_cached_vectors_and_gradients_match_the_full_tower(mode, kind):
    model = _model(mode)
    cache = frozen_text_cache(model, TrainMode.parse(mode), CAPTIONS)
    assert isinstance(cache, kind)
    rows = np.array([4, 1, 0, 5])  # mixed lengths: padding differs from the cached batches
    params = [p for p in model.parameters() if p.requires_grad]

    def vectors_and_grads(fn):
        for p in params:
            p.grad = None
        vectors = fn()
        (vectors * torch.linspace(-1, 1, vectors.shape[1])).sum().backward()
        return vectors.detach(), [p.grad.clone() for p in params if p.grad is not None]

    cached, cached_grads = vectors_and_grads(lambda: cache.text_features(rows))
    full, full_grads = vectors_and_grads(lambda: model.text_features([CAPTIONS[i] for i in rows]))
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    assert len(cached_grads) == len(full_grads) > 0
    for a, b in zip(cached_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_encoder_is_intact_after_a_cached_step():
    model = _model("last:1")
    layers_before = list(model.text_tower.encoder.encoder.layer)
    frozen_text_cache(model, TrainMode("last", 1), CAPTIONS).text_features(np.array([0, 1]))
    assert list(model.text_tower.encoder.encoder.layer) == layers_before
    assert model.encode_texts(["a dog"]).shape == (1, model.dim)


@pytest.mark.parametrize("mode", ["whole", "lora", "last:2"])
def test_nothing_frozen_below_means_no_cache(mode):
    model = _model(mode)  # test-tiny has 2 blocks: last:2 leaves only the embeddings frozen
    assert frozen_text_cache(model, TrainMode.parse(mode), CAPTIONS) is None


def test_a_cache_over_budget_falls_back_to_the_full_tower():
    model = _model("last:1")
    assert frozen_text_cache(model, TrainMode("last", 1), CAPTIONS, budget_bytes=64) is None
    assert frozen_text_cache(model, TrainMode("head"), CAPTIONS, budget_bytes=64) is None


def _pairs(dim: int = 32) -> PairSet:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return PairSet(list(CAPTIONS), np.arange(6), [f"k{i}" for i in range(6)], vectors)


def test_head_training_with_and_without_the_cache_ends_at_the_same_weights():
    """Head mode already ran its frozen encoder in eval mode, so caching changes nothing but the cost."""
    heads = []
    for cache_text in (True, False):
        torch.manual_seed(0)
        bundle = models.create("test-tiny", device="cpu")
        config = TrainConfig(train="head", batch_size=3, epochs=2, lr=1e-2, cache_text=cache_text)
        select_trainable(bundle.model, config.mode)
        trainer = Trainer(bundle.model, config, _pairs(), progress=False)
        trainer.train_epoch(1)
        trainer.train_epoch(2)
        assert (trainer.text_cache is not None) == cache_text
        heads.append({k: v.clone() for k, v in bundle.model.text_tower.head.state_dict().items()})
    for key in heads[0]:
        torch.testing.assert_close(heads[0][key], heads[1][key], atol=1e-5, rtol=1e-4)
