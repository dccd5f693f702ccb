"""Which text-tower parameters a run trains (`--train whole|last:N|lora|head`), and the optimizer groups.

The image tower is never among them (LiT's locked image tower, Zhai et al. 2022). The temperature `logit_scale` always
trains, as in CLIP/LiT. Parameters a preset froze on purpose (e.g. a fixed softmax temperature in a head) stay frozen.
"""

from __future__ import annotations

import logging

from torch import nn

from models.model import LitModel
from models.train.config import TrainMode
from models.train.lora import add_lora, lora_parameters

log = logging.getLogger(__name__)


def select_trainable(model: LitModel, mode: TrainMode, *, lora_rank: int = 8, lora_alpha: float = 16.0
                     ) -> list[nn.Parameter]:
    """Set `requires_grad` for `mode` (adding LoRA adapters for 'lora') and return the trainable parameters."""
    text = model.text_tower
    frozen_by_preset = {id(p) for p in text.parameters() if not p.requires_grad}
    text.requires_grad_(False)
    if mode.kind == "lora":
        add_lora(text.encoder, lora_rank, lora_alpha)
    chosen = _chosen_parameters(text, mode)
    for p in chosen:
        if id(p) not in frozen_by_preset:
            p.requires_grad_(True)
    model.logit_scale.requires_grad_(True)
    model.assert_locked()
    params = [p for p in model.parameters() if p.requires_grad]
    log.info("training %s: %d parameter tensors, %d values (text side only; image tower locked)",
             mode, len(params), sum(p.numel() for p in params))
    return params


def _chosen_parameters(text: nn.Module, mode: TrainMode) -> list[nn.Parameter]:
    head = list(text.head.parameters()) if text.head is not None else []
    if mode.kind == "whole":
        return list(text.parameters())
    if mode.kind == "lora":
        return lora_parameters(text.encoder) + head
    if not head:
        raise ValueError(f"this text tower has no head, so --train {mode} has nothing to train beyond the encoder; "
                         "use --train whole or lora")
    if mode.kind == "head":
        return head
    layers = encoder_layers(text.encoder)
    if mode.layers > len(layers):
        raise ValueError(f"--train {mode}: the text encoder has only {len(layers)} layers")
    return [p for layer in layers[-mode.layers:] for p in layer.parameters()] + head


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer blocks: its longest ModuleList (BERT `encoder.layer`, CLIP `layers`…)."""
    stacks = [m for m in encoder.modules() if isinstance(m, nn.ModuleList)]
    if not stacks:
        raise ValueError("cannot find the transformer layers of this text encoder; use --train whole, lora or head")
    return max(stacks, key=len)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices only; biases, norms and temperatures are not shrunk towards zero."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2]
    no_decay = [p for n, p in named if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
