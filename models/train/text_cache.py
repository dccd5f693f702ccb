"""Cached tuning on the text side: what the frozen part of the text tower says about each caption, computed once.

`--train head` trains a head on a frozen encoder; `--train last:N` trains the top N blocks (and the head) on frozen
lower blocks. For a given caption the frozen part's output never changes during a run — the same reason LiT caches
the locked image tower's vector of a photo (Zhai et al. 2022) — so it is computed once per caption and a step runs
only the trainable layers: a head step costs a small matrix product instead of a transformer forward.

The frozen layers run in eval mode (no dropout), as `--train head` already ran its frozen encoder; trainable layers
keep their dropout. When the cache would not fit `budget_bytes` (long captions, wide encoders, many rows) training
runs uncached, exactly as before, and says so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from models.device import autocast
from models.model import LitModel, l2_normalize
from models.train.config import TrainMode
from models.train.trainable import encoder_layers

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 1 << 30  # 1 GiB of cached activations at most
BUILD_BATCH = 128


class PooledCache:
    """`--train head`: the pooled encoder output (N, H) of every caption; a step is `head(pooled[batch])`."""

    def __init__(self, model: LitModel, pooled: torch.Tensor):
        self.model, self.pooled = model, pooled  # (N, H) on the model's device

    def text_features(self, rows: np.ndarray) -> torch.Tensor:  # (B,) caption indices -> (B, D) unit, with autograd
        picked = self.pooled[torch.as_tensor(rows, device=self.pooled.device)]
        with autocast(self.model.device):
            features = self.model.text_tower.head(picked)
        return l2_normalize(features)


class HiddenCache:
    """`--train last:N`: each caption's hidden states entering the first trainable block (real tokens only).

    A step re-tokenizes the batch (cheap), scatters the cached states into the padded (B, L, H) layout, and runs the
    encoder with the frozen blocks replaced by pass-throughs and the first trainable block fed the cached states.
    Padding positions get zeros: attention masks them out, and pooling ignores them.
    """

    def __init__(self, model: LitModel, captions: Sequence[str], first_trainable: int, rows: list[torch.Tensor],
                 layers_return_tuples: bool):
        self.model, self.captions, self.first = model, captions, first_trainable
        self.rows, self.tuples = rows, layers_return_tuples  # rows[i]: (T_i, H) states of caption i's real tokens

    def text_features(self, rows: np.ndarray) -> torch.Tensor:
        tower, device = self.model.text_tower, self.model.device
        tokens = tower.tokenizer([self.captions[i] for i in rows])
        ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        cached = [self.rows[i] for i in rows]
        hidden = torch.zeros((*mask.shape, cached[0].shape[-1]), dtype=cached[0].dtype, device=device)
        hidden[mask.bool()] = torch.cat(cached)  # row-major order of the mask == caption order, token order
        with _skip_frozen_blocks(encoder_layers(tower.encoder), self.first, hidden, self.tuples), autocast(device):
            features = tower(ids, mask)
        return l2_normalize(features)


def frozen_text_cache(model: LitModel, mode: TrainMode, captions: Sequence[str], *,
                      budget_bytes: int = DEFAULT_BUDGET_BYTES) -> PooledCache | HiddenCache | None:
    """The cache for `mode`, or None when nothing is frozen below the trainable part (whole, lora) or it won't fit."""
    tower = model.text_tower
    if mode.kind == "head" and tower.head is not None:
        return _pooled_cache(model, captions, budget_bytes)
    if mode.kind == "last":
        first = len(encoder_layers(tower.encoder)) - mode.layers
        if first > 0:
            return _hidden_cache(model, captions, first, budget_bytes)
    return None


def _pooled_cache(model: LitModel, captions: Sequence[str], budget_bytes: int) -> PooledCache | None:
    tower = model.text_tower
    if len(captions) * tower.hidden_dim * 4 > budget_bytes:
        log.info("text cache skipped: %d captions × %d would exceed %d MB", len(captions), tower.hidden_dim,
                 budget_bytes >> 20)
        return None
    parts = []
    with _frozen_eval(tower.encoder), torch.no_grad():
        for ids, mask in _token_batches(model, captions):
            with autocast(model.device):
                parts.append(tower.pooled_features(ids, mask))
    log.info("cached the frozen text encoder's output for %d captions", len(captions))
    return PooledCache(model, torch.cat(parts) if parts else torch.empty(0, tower.hidden_dim, device=model.device))


class _Captured(Exception):
    """Raised by the capture hook once the first trainable block's input is known: the rest need not run."""


def _hidden_cache(model: LitModel, captions: Sequence[str], first: int, budget_bytes: int) -> HiddenCache | None:
    tower = model.text_tower
    layers = encoder_layers(tower.encoder)
    seen: dict[str, object] = {}

    def capture(_module, args, kwargs):
        seen["hidden"] = args[0] if args else kwargs["hidden_states"]
        raise _Captured

    def output_kind(_module, _args, output):
        seen["tuples"] = isinstance(output, tuple)

    rows: list[torch.Tensor] = []
    used = 0
    hooks = [layers[first].register_forward_pre_hook(capture, with_kwargs=True),
             layers[0].register_forward_hook(output_kind)]
    try:
        with _frozen_eval(tower.encoder), torch.no_grad():
            for ids, mask in _token_batches(model, captions):
                with contextlib.suppress(_Captured), autocast(model.device):
                    tower(ids, mask)
                hidden = seen.pop("hidden")  # (B, L, H)
                rows.extend(h[m.bool()].clone() for h, m in zip(hidden, mask, strict=True))
                used += int(mask.sum()) * hidden.shape[-1] * hidden.element_size()
                if used > budget_bytes:
                    log.info("text cache skipped: the hidden states of %d captions exceed %d MB", len(captions),
                             budget_bytes >> 20)
                    return None
    finally:
        for hook in hooks:
            hook.remove()
    log.info("cached the %d frozen text blocks' output for %d captions (%d MB)", first, len(captions), used >> 20)
    return HiddenCache(model, captions, first, rows, bool(seen.get("tuples", False)))


def _token_batches(model: LitModel, captions: Sequence[str]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(captions), BUILD_BATCH):
        tokens = model.text_tower.tokenizer(list(captions[start:start + BUILD_BATCH]))
        yield tokens["input_ids"].to(model.device), tokens["attention_mask"].to(model.device)


@contextlib.contextmanager
def _frozen_eval(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


class _PassThrough(nn.Module):
    """Stands in for a frozen block whose output is already cached: hands its input on untouched."""

    def __init__(self, as_tuple: bool):
        super().__init__()
        self.as_tuple = as_tuple

    def forward(self, hidden_states, *args, **kwargs):
        return (hidden_states,) if self.as_tuple else hidden_states


@contextlib.contextmanager
def _skip_frozen_blocks(layers: nn.ModuleList, first: int, hidden: torch.Tensor, as_tuple: bool) -> Iterator[None]:
    """Frozen blocks become pass-throughs and block `first` reads `hidden` instead of what reaches it."""
    frozen = [layers[i] for i in range(first)]

    def feed(_module, args, kwargs):
        return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})

    for i in range(first):
        layers[i] = _PassThrough(as_tuple)
    hook = layers[first].register_forward_pre_hook(feed, with_kwargs=True)
    try:
        yield
    finally:
        hook.remove()
        for i, block in enumerate(frozen):
            layers[i] = block
