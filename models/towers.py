"""The two towers as thin adapters: a timm image backbone and a transformers text encoder, each with an optional head.

Both return *unnormalised* features; `LitModel.encode_*` is the one place that normalises.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import torch
from torch import nn

from models.heads import build_head, head_output_dim
from models.visual import visual_dim, visual_vector


class ImageTower(nn.Module):
    """timm backbone built with `num_classes=0` (pooled features) followed by an optional head.

    `arch` names the backbone, `head_spec` the head, `preprocess_config` the exact pixel pipeline: together with the
    weights they define the embedding space, and so the `image_tower_id` that names a vector collection.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        arch: str,
        feature_dim: int,
        head_spec: list[dict] | None = None,
        preprocess_config: dict | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.arch = arch
        self.head_spec = head_spec or []
        self.head = build_head(self.head_spec)
        self.feature_dim = feature_dim
        self.output_dim = head_output_dim(self.head_spec, feature_dim)
        self.preprocess_config = preprocess_config or {}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, D)
        features = self.backbone(pixels)
        return self.head(features) if self.head is not None else features

    @property
    def visual_dim(self) -> int:
        """Width of `forward_with_visual`'s second output (models.visual: pre-logit features + two thumbnails)."""
        return visual_dim(int(getattr(self.backbone, "num_features", self.feature_dim)))

    def forward_with_visual(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the embedding (N, D), the visual vector (N, V), unit) from one pass through the backbone.

        The visual vector (models.visual) is what the photo *looks like*: the backbone's pooled pre-logit features,
        before any head maps them into the text-aligned space, and a coarse thumbnail of the pixels. It tells a
        re-encode or resize of a photo from another photo of the same kind of thing, which a text-aligned space can
        be too coarse for (offline-lite's 1000-class distribution puts unrelated photos at cos 0.9). Measured in
        bench/dedupe_fit.py.
        """
        backbone = self.backbone
        if hasattr(backbone, "forward_features") and hasattr(backbone, "forward_head"):
            feature_map = backbone.forward_features(pixels)
            features = backbone.forward_head(feature_map)  # == backbone(pixels)
            pre_logits = backbone.forward_head(feature_map, pre_logits=True)
        else:
            features = pre_logits = backbone(pixels)
        embedding = self.head(features) if self.head is not None else features
        return embedding, visual_vector(pre_logits, pixels)

    def fingerprint(self) -> str:
        """`<arch>-<12 hex>`: a digest of every weight and buffer plus the head and preprocessing specs.

        Two towers with the same id embed every image identically, so their vectors can share a collection.
        """
        digest = hashlib.sha256()
        digest.update(json.dumps([self.arch, self.head_spec, self.preprocess_config], sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            data = tensor.detach().cpu().contiguous()
            if data.dtype == torch.bfloat16:
                data = data.float()
            digest.update(data.numpy().tobytes())
        safe_arch = self.arch.replace("/", "_").replace(":", "_")
        return f"{safe_arch}-{digest.hexdigest()[:12]}"


class TextTower(nn.Module):
    """transformers encoder → pooling ('cls' or attention-masked 'mean') → optional head.

    The tokenizer travels with the tower because the pair must match (vocabulary, length, special tokens).
    """

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer: Callable[[list[str]], dict[str, torch.Tensor]],
        *,
        source: str,
        hidden_dim: int,
        pooling: str = "cls",
        head_spec: list[dict] | None = None,
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', not {pooling!r}")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.source = source
        self.pooling = pooling
        self.head_spec = head_spec or []
        self.head = build_head(self.head_spec)
        self.hidden_dim = hidden_dim
        self.output_dim = head_output_dim(self.head_spec, hidden_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # (N, L) -> (N, D)
        pooled = self.pooled_features(input_ids, attention_mask)
        return self.head(pooled) if self.head is not None else pooled

    def pooled_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        hidden_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Encoder + pooling, before the head: (N, L) -> (N, H). What `--train head` caches per caption.
        `hidden_dtype` casts the encoder's output before pooling (a bf16 encoder pools in fp32: models.runtime)."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state  # (N, L, H)
        if hidden_dtype is not None:
            hidden = hidden.to(hidden_dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return pooled
