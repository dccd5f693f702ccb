"""Where the towers run: CUDA when present, CPU otherwise, with reduced-precision autocast on GPU.

One place decides so that the indexer, search, training and benchmarks all agree, and `--device` can force it.
"""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None`/'auto' picks CUDA when available; anything else is taken literally (e.g. 'cpu', 'cuda:1')."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} was asked for but CUDA is not available here; use --device cpu")
    return resolved


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it (no loss scaling needed), fp16 on older GPUs, none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on GPU; a no-op on CPU, where fp32 is both faster and exact."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
