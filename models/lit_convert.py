"""LiT `.npz` → Loupe `LitModel` tensors (timm ViT + transformers BERT + text head + temperature), and their cache.

The mapping is a table of rules `(torch name, npz keys, transform)` built from the architecture, so the set of keys
a checkpoint must hold is known before anything is copied: a missing or a leftover key is an error that lists them
(big_vision's "You probably got a typo"), never a silently random or ignored tensor. Mapping facts: shared/docs/
lit-checkpoints.md §2–3 (kernels are `(in, out)` and get transposed; q/k/v `(D, H, 64)` are flattened and
concatenated into timm's fused qkv; big_vision's 196-row position table gets a zero row for the CLS token, which
big_vision adds *after* the position embedding).

Converting a released file takes a while (hundreds of MB of float32), so the result is cached as safetensors in
the model cache, keyed by the npz's sha256: the second start reads one file and never parses the npz.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.lit_arch import LitArch, bert_heads
from models.lit_npz import read_npz

log = logging.getLogger(__name__)

Rule = tuple[str, tuple[str, ...], Callable[..., np.ndarray]]
CONVERTED_VERSION = 1  # bump when the mapping changes: old caches are then ignored and converted again
CONVERTED_FORMAT = f"loupe-lit-converted-{CONVERTED_VERSION}"
VIT_JAX_POS, BIG_VISION_POS = "img/Transformer/posembed_input/pos_embedding", "img/pos_embedding"
TEXT = "txt/BertEncoder_0/"


class LitCheckpointError(ValueError):
    """The npz is not a LiT checkpoint of a shape Loupe knows; the message lists what is missing or left over."""


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _dense_t(kernel: np.ndarray) -> np.ndarray:  # (in, out…) -> (out, in) torch Linear weight
    return kernel.reshape(kernel.shape[0], -1).T


def _shape(flat: dict[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in flat:
        raise LitCheckpointError(f"not a LiT checkpoint: missing {key!r}. Keys present: {sorted(flat)[:20]}")
    return flat[key].shape


def _count(flat: dict[str, np.ndarray], pattern: str) -> int:
    indices = [int(m.group(1)) for key in flat if (m := re.match(pattern, key))]
    return max(indices) + 1 if indices else 0  # gaps surface later as missing keys


def infer_arch(flat: dict[str, np.ndarray]) -> tuple[LitArch, str]:
    """Architecture and position-embedding layout ('vit_jax' 197 rows with CLS, 'big_vision' 196 without)."""
    patch, _, _, width = _shape(flat, "img/embedding/kernel")  # (p, p, 3, D)
    if (VIT_JAX_POS in flat) == (BIG_VISION_POS in flat):
        raise LitCheckpointError(f"expected exactly one of {VIT_JAX_POS!r} (vit_jax) or {BIG_VISION_POS!r} "
                                 f"(big_vision) in the checkpoint; keys present: {sorted(flat)[:20]}")
    layout = "vit_jax" if VIT_JAX_POS in flat else "big_vision"
    tokens = flat[VIT_JAX_POS].shape[1] - 1 if layout == "vit_jax" else flat[BIG_VISION_POS].shape[1]
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise LitCheckpointError(f"position table has {tokens} patch rows, not a square grid")
    block = "img/Transformer/encoderblock_0/"
    text_layer = TEXT + "encoder_block/layer_sequence/layers_0/"
    vocab, text_width = _shape(flat, TEXT + "embedder/embedders_token_ids/embedding")
    text_query = _shape(flat, text_layer + "attention_block/attention_layer/query/kernel")
    arch = LitArch(
        image_width=width, image_depth=_count(flat, r"img/Transformer/encoderblock_(\d+)/"),
        image_heads=_shape(flat, block + "MultiHeadDotProductAttention_0/query/kernel")[1],  # (D, H, hd)
        image_mlp=_shape(flat, block + "MlpBlock_0/Dense_0/kernel")[1], patch=patch, image_size=grid * patch,
        image_head=flat["img/head/kernel"].shape[1] if "img/head/kernel" in flat else 0,
        text_width=text_width, text_depth=_count(flat, TEXT + r"encoder_block/layer_sequence/layers_(\d+)/"),
        text_heads=text_query[1] if len(text_query) == 3 else bert_heads(text_width),
        text_mlp=_shape(flat, text_layer + "mlp_block/mlp/dense_layer/kernel")[1], vocab_size=vocab,
        text_positions=_shape(flat, TEXT + "embedder/embedders_position_ids/embedding")[0],
        embed_dim=_shape(flat, "txt/head/kernel")[1],
    )
    return arch, layout


def _linear(torch_name: str, npz_name: str) -> list[Rule]:
    """flax Dense / DenseGeneral → nn.Linear: kernel (in, out…) transposed, bias flattened."""
    return [(f"{torch_name}.weight", (f"{npz_name}/kernel",), _dense_t),
            (f"{torch_name}.bias", (f"{npz_name}/bias",), lambda b: b.reshape(-1))]


def _norm(torch_name: str, npz_name: str) -> list[Rule]:
    """flax LayerNorm → nn.LayerNorm: `scale` is torch's `weight`."""
    return [(f"{torch_name}.weight", (f"{npz_name}/scale",), _same),
            (f"{torch_name}.bias", (f"{npz_name}/bias",), _same)]


def _image_block_rules(i: int) -> list[Rule]:
    npz, tt = f"img/Transformer/encoderblock_{i}/", f"image_tower.backbone.blocks.{i}."
    attn = npz + "MultiHeadDotProductAttention_0/"
    qkv_kernels = tuple(f"{attn}{p}/kernel" for p in ("query", "key", "value"))  # (D, H, hd) each
    qkv_biases = tuple(f"{attn}{p}/bias" for p in ("query", "key", "value"))  # (H, hd) each
    return [
        *_norm(tt + "norm1", npz + "LayerNorm_0"),
        (tt + "attn.qkv.weight", qkv_kernels, lambda *ks: np.concatenate([_dense_t(k) for k in ks])),  # (3D, D)
        (tt + "attn.qkv.bias", qkv_biases, lambda *bs: np.concatenate([b.reshape(-1) for b in bs])),
        (tt + "attn.proj.weight", (attn + "out/kernel",), lambda k: k.reshape(-1, k.shape[-1]).T),  # (H,hd,D)->(D,D)
        (tt + "attn.proj.bias", (attn + "out/bias",), _same),
        *_norm(tt + "norm2", npz + "LayerNorm_1"),
        *_linear(tt + "mlp.fc1", npz + "MlpBlock_0/Dense_0"),
        *_linear(tt + "mlp.fc2", npz + "MlpBlock_0/Dense_1"),
    ]


def image_rules(arch: LitArch, layout: str) -> list[Rule]:
    tt = "image_tower.backbone."
    if layout == "vit_jax":
        pos: Rule = (tt + "pos_embed", (VIT_JAX_POS,), _same)  # (1, 1+N, D), CLS row first
    else:  # (1, N, D) added before the CLS token is prepended: the CLS token gets no position (a zero row)
        pos = (tt + "pos_embed", (BIG_VISION_POS,), lambda p: np.concatenate([np.zeros_like(p[:, :1]), p], axis=1))
    rules = [
        (tt + "patch_embed.proj.weight", ("img/embedding/kernel",), lambda k: k.transpose(3, 2, 0, 1)),  # HWIO->OIHW
        (tt + "patch_embed.proj.bias", ("img/embedding/bias",), _same),
        (tt + "cls_token", ("img/cls",), _same),
        pos,
        *(rule for i in range(arch.image_depth) for rule in _image_block_rules(i)),
        *_norm(tt + "norm", "img/Transformer/encoder_norm"),
    ]
    if arch.image_head:
        rules += _linear(tt + "head", "img/head")
    return rules


def _text_layer_rules(j: int) -> list[Rule]:
    npz, tt = f"{TEXT}encoder_block/layer_sequence/layers_{j}/", f"text_tower.encoder.encoder.layer.{j}."
    return [
        *(rule for p in ("query", "key", "value")
          for rule in _linear(f"{tt}attention.self.{p}", f"{npz}attention_block/attention_layer/{p}")),
        *_linear(tt + "attention.output.dense", npz + "attention_block/dense_layer"),
        *_norm(tt + "attention.output.LayerNorm", npz + "attention_block/layer_norm"),
        *_linear(tt + "intermediate.dense", npz + "mlp_block/mlp/dense_layer"),
        *_linear(tt + "output.dense", npz + "mlp_block/dense_layer"),
        *_norm(tt + "output.LayerNorm", npz + "mlp_block/layer_norm"),
    ]


def text_rules(arch: LitArch) -> list[Rule]:
    emb, tt = f"{TEXT}embedder/", "text_tower.encoder.embeddings."
    return [
        (tt + "word_embeddings.weight", (emb + "embedders_token_ids/embedding",), _same),
        (tt + "position_embeddings.weight", (emb + "embedders_position_ids/embedding",), _same),
        (tt + "token_type_embeddings.weight", (emb + "embedders_segment_ids/embedding",), _same),
        *_norm(tt + "LayerNorm", TEXT + "layer_norm"),
        *(rule for j in range(arch.text_depth) for rule in _text_layer_rules(j)),
        *_linear("text_tower.head.0", "txt/head"),
        ("logit_scale", ("t",), lambda t: t.reshape(())),  # LiT's logits are exp(t) · zimg @ ztxtᵀ
    ]


def convert_params(flat: dict[str, np.ndarray]) -> tuple[LitArch, dict[str, torch.Tensor]]:
    """Normalised npz arrays (see models.lit_npz) → (architecture, LitModel state dict).

    Consumes `flat` (each array is dropped once converted) so a ViT-L + BERT-large conversion peaks near one copy
    of the weights in memory instead of two.
    """
    arch, layout = infer_arch(flat)
    rules = image_rules(arch, layout) + text_rules(arch)
    expected = {key for _, keys, _ in rules for key in keys}
    missing, leftover = sorted(expected - set(flat)), sorted(set(flat) - expected)
    if missing or leftover:
        raise LitCheckpointError(
            f"the checkpoint does not match the LiT key tree for {arch.timm_arch} ({layout} layout). "
            f"Missing keys ({len(missing)}): {missing[:20]}. Unused keys ({len(leftover)}; you probably got a typo "
            f"or another model): {leftover[:20]}"
        )
    state = {name: torch.from_numpy(np.ascontiguousarray(fn(*(flat.pop(k) for k in keys)), dtype=np.float32))
             for name, keys, fn in rules}
    return arch, state


def converted_path(cache_dir: Path, sha256: str) -> Path:
    return cache_dir / "converted" / f"{sha256[:20]}-v{CONVERTED_VERSION}.safetensors"


def load_converted(path: Path) -> tuple[LitArch, dict[str, torch.Tensor]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != CONVERTED_FORMAT:
        raise LitCheckpointError(f"{path} is not a converted LiT checkpoint of this Loupe version; delete it")
    return LitArch.from_json(metadata["arch"]), load_file(str(path))


def save_converted(path: Path, arch: LitArch, state: dict[str, torch.Tensor], sha256: str) -> None:
    """Atomic: written to a temp file in the same folder and renamed, so no reader ever sees half a file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        metadata = {"format": CONVERTED_FORMAT, "arch": arch.to_json(), "source_sha256": sha256}
        save_file(state, staging, metadata=metadata)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def load_or_convert(npz: Path, sha256: str, cache_dir: Path) -> tuple[LitArch, dict[str, torch.Tensor]]:
    """The converted tensors of `npz` (whose checksum is `sha256`), converting and caching them the first time."""
    cached = converted_path(cache_dir, sha256)
    if cached.is_file():
        return load_converted(cached)
    log.info("converting %s to torch (once; cached at %s)", npz, cached)
    arch, state = convert_params(read_npz(npz))
    try:
        save_converted(cached, arch, state, sha256)
    except OSError as err:  # a read-only cache still gives a working model, just a slower next start
        log.warning("could not cache the converted weights at %s: %s", cached, err)
    return arch, state
