"""LoRA adapters on the text encoder's attention query/value projections (Hu et al., "LoRA", 2021).

`W x` becomes `W x + (alpha / r) · B A x` with A (r, in) random and B (out, r) zero, so training starts exactly at the
base model and moves only r · (in + out) numbers per projection. Before a tuned tower is saved the adapters are
*merged* back (`W ← W + (alpha / r) · B A`): the saved weights then have the base architecture's keys and shapes,
so `models.create(<saved dir>)` rebuilds the plain base preset and loads them with no LoRA code at all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# q/v projection names across transformers encoders: BERT/RoBERTa/MiniLM, CLIP/BART/LLaMA-likes, DistilBERT, T5
QUERY_VALUE_NAMES = frozenset({"query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "q", "v"})


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises, and as the paper's code

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        update = (x.to(self.lora_a.dtype) @ self.lora_a.T) @ self.lora_b.T
        return self.base(x) + (self.scale * update).to(x.dtype)

    def merged(self) -> nn.Linear:
        """The plain Linear that computes the same function (fp32 merge, then the base dtype)."""
        linear = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                           device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            delta = self.scale * (self.lora_b.float() @ self.lora_a.float())
            linear.weight.copy_((self.base.weight.float() + delta).to(linear.weight.dtype))
            if self.base.bias is not None:
                linear.bias.copy_(self.base.bias)
        return linear


def add_lora(encoder: nn.Module, rank: int, alpha: float, names: frozenset[str] = QUERY_VALUE_NAMES) -> int:
    """Wrap every `nn.Linear` child named like a query/value projection; returns how many were wrapped."""
    targets = [(parent, name, child) for parent in encoder.modules() for name, child in parent.named_children()
               if name in names and isinstance(child, nn.Linear)]
    if not targets:
        raise ValueError("no attention query/value projections found in this text encoder for LoRA "
                         f"(looked for Linear layers named {sorted(names)}); use --train last:N or whole")
    for parent, name, child in targets:
        setattr(parent, name, LoRALinear(child, rank, alpha))
    return len(targets)


def merge_lora(module: nn.Module) -> int:
    """Replace every LoRALinear by its merged Linear, in place; returns how many were merged."""
    targets = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if isinstance(child, LoRALinear)]
    for parent, name, child in targets:
        setattr(parent, name, child.merged())
    return len(targets)


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for m in module.modules() if isinstance(m, LoRALinear) for p in (m.lora_a, m.lora_b)]
