"""Read a released LiT `.npz` into one flat `{"img/…": float32 array}` dict with today's (Linen) names.

Three differences between the released files are normalised here so the converter sees one key tree
(shared/docs/lit-checkpoints.md §1–2):
- big_vision checkpoints (coco_B16B) keep the model under `params/` next to optimizer and clock state (`opt/…`,
  `chrono/…`); we keep `params/` only and drop the prefix;
- older vit_jax files use pre-Linen module numbering (`LayerNorm_2`, `MultiHeadDotProductAttention_1`,
  `MlpBlock_3`); we renumber like flax's `convert_pre_linen` (per dict, natural key order, per-prefix counters),
  which leaves Linen names unchanged;
- bfloat16 arrays come back from numpy as 2-byte `void`; we view them as `ml_dtypes.bfloat16` and cast to float32.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

PARAMS_PREFIX = "params/"
_MODULE_NUM = re.compile(r"(.*)_\d+$")  # flax's MODULE_NUM_RE
_DIGITS = re.compile(r"(\d+)")


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All model parameters of a LiT checkpoint, float32, keys like `img/Transformer/encoderblock_0/…`."""
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if any(name.startswith(PARAMS_PREFIX) for name in names):  # big_vision: ignore opt/…, chrono/…
            names = [name for name in names if name.startswith(PARAMS_PREFIX)]
            flat = {name[len(PARAMS_PREFIX):]: to_float32(archive[name]) for name in names}
        else:
            flat = {name: to_float32(archive[name]) for name in names}
    return flatten(convert_pre_linen(unflatten(flat)))


def to_float32(array: np.ndarray) -> np.ndarray:
    """float32 copy; 2-byte `void` arrays are bfloat16 that numpy could not name (doc §1, 'Dtype')."""
    if array.dtype.kind == "V" and array.dtype.itemsize == 2:
        import ml_dtypes

        array = array.view(ml_dtypes.bfloat16)
    elif array.dtype.kind not in "fiu" and array.dtype.name != "bfloat16":
        raise TypeError(f"unexpected array dtype {array.dtype} in a LiT checkpoint")
    return np.asarray(array, dtype=np.float32)


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"checkpoint key {key!r} nests under an array")
        node[leaf] = value
    return tree


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


def convert_pre_linen(tree: Any) -> Any:
    """flax's `convert_pre_linen`: renumber `Name_N` per name from 0 in natural order, recursively.

    Pre-Linen numbered submodules across classes (`LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2,
    MlpBlock_3`); Linen counts per class (`LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0`).
    Natural order matters: `encoderblock_10` must come after `encoderblock_9`.
    """
    if not isinstance(tree, dict):
        return tree
    renamed: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for name in sorted(tree, key=_natural_key):
        match = _MODULE_NUM.match(name)
        new_name = name
        if match:
            module = match.group(1)
            new_name = f"{module}_{counts.get(module, 0)}"
            counts[module] = counts.get(module, 0) + 1
        renamed[new_name] = convert_pre_linen(tree[name])
    return renamed
