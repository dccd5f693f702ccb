"""Small projection heads described by JSON-able specs, so a saved model can rebuild its exact head.

A head is a list of layers, e.g. `[{"type": "l2norm"}, {"type": "linear", "in": 384, "out": 1000},
{"type": "sqrt_softmax", "temperature": 0.05}]`. `sqrt_softmax` maps logits onto the unit sphere as the square
root of a probability vector: cosine similarity between two such vectors is the Bhattacharyya coefficient of the
two distributions, which is how `offline-lite` compares ImageNet class distributions (Hellinger matching).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class L2Norm(nn.Module):
    """Unit-normalises features before a head (sentence-transformers models are trained that way)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class SqrtSoftmax(nn.Module):
    """sqrt(softmax(x / T)): a point on the unit sphere whose squares are class probabilities."""

    def __init__(self, temperature: float = 1.0, learnable: bool = False):
        super().__init__()
        log_t = torch.tensor(math.log(temperature))
        self.log_temperature = nn.Parameter(log_t, requires_grad=learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(x.float() / self.log_temperature.exp(), dim=-1)
        return probs.clamp_min(0).sqrt()


def _build_layer(spec: dict) -> nn.Module:
    kind = spec["type"]
    if kind == "linear":
        return nn.Linear(spec["in"], spec["out"], bias=spec.get("bias", True))
    if kind == "l2norm":
        return L2Norm()
    if kind == "sqrt_softmax":
        return SqrtSoftmax(spec.get("temperature", 1.0), spec.get("learnable", False))
    raise ValueError(f"unknown head layer type {kind!r} (known: linear, l2norm, sqrt_softmax)")


def build_head(layers: list[dict] | None) -> nn.Module | None:
    """An `nn.Sequential` for a non-empty spec, `None` for no head."""
    if not layers:
        return None
    return nn.Sequential(*(_build_layer(layer) for layer in layers))


def head_output_dim(layers: list[dict] | None, input_dim: int) -> int:
    """Width after the head: the last linear layer's `out`, else the input width."""
    dim = input_dim
    for layer in layers or []:
        if layer["type"] == "linear":
            dim = layer["out"]
    return dim
