"""LoRA adapters (start as the identity, merge exactly) and what each `--train` mode makes trainable."""

from __future__ import annotations

import pytest
import torch

import models
from models.saved import TEXT_PREFIXES
from models.train.config import TrainMode
from models.train.lora import LoRALinear, add_lora, merge_lora
from models.train.trainable import select_trainable

TEXTS = ["a red square", "the colour blue", "something green"]


@pytest.fixture()
def bundle():
    return models.create("test-tiny", device="cpu")


def _encode(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.text_features(TEXTS)


def test_lora_starts_as_the_base_and_merges_exactly(bundle):
    model = bundle.model
    before, keys = _encode(model), set(model.state_dict())
    assert add_lora(model.text_tower.encoder, rank=4, alpha=8) == 4  # q and v in each of 2 layers
    assert torch.allclose(_encode(model), before, atol=1e-6)
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_b, std=0.5)
    tuned = _encode(model)
    assert not torch.allclose(tuned, before, atol=1e-3)
    assert merge_lora(model.text_tower) == 4
    assert set(model.state_dict()) == keys  # base keys: the base preset reloads it with no LoRA code
    assert torch.allclose(_encode(model), tuned, atol=1e-5)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("mode", ["whole", "last:1", "lora", "head"])
def test_modes_train_only_text_side(bundle, mode):
    model = bundle.model
    params = select_trainable(model, TrainMode.parse(mode), lora_rank=2, lora_alpha=4)
    names = _trainable(model)
    assert len(params) == len(names) and "logit_scale" in names
    assert all(n.startswith(TEXT_PREFIXES) for n in names)
    assert any(n.startswith("text_tower.head.") for n in names)
    model.assert_locked()
    layer0 = {n for n in names if ".layer.0." in n}
    layer1 = {n for n in names if ".layer.1." in n}
    embeddings = {n for n in names if ".embeddings." in n}
    if mode == "whole":
        assert layer0 and layer1 and embeddings
    elif mode == "last:1":
        assert layer1 and not layer0 and not embeddings
    elif mode == "lora":
        assert names - {"logit_scale"} == {n for n in names if "lora_" in n or ".head." in n}
        assert layer0 and all("lora_" in n for n in layer0 | layer1)
    else:
        assert names == {"logit_scale"} | {n for n in names if n.startswith("text_tower.head.")}


def test_parameters_frozen_by_the_preset_stay_frozen(bundle):
    from models.heads import SqrtSoftmax

    model = bundle.model
    model.text_tower.head.append(SqrtSoftmax(0.1, learnable=False))
    select_trainable(model, TrainMode("whole"))
    assert not model.text_tower.head[-1].log_temperature.requires_grad


def test_last_n_larger_than_the_encoder_is_an_error(bundle):
    with pytest.raises(ValueError, match="only 2 layers"):
        select_trainable(bundle.model, TrainMode("last", 5))
