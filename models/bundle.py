"""`ModelBundle`: what `models.create` returns — the model, its image preprocessing and its tokenizer, together.

Keeping the three in one object is the point: a preprocessing or tokenizer that does not match its tower is the
most common silent bug in CLIP-style code (wrong mean/std, an extra [SEP]).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from models.model import LitModel


@dataclass
class ModelBundle:
    name: str  # preset name (or saved-model path) this was built from
    model: LitModel
    preprocess: Callable[[Image.Image], torch.Tensor]  # PIL image -> (3, H, W) float tensor
    spec: dict = field(default_factory=dict)  # {"preset": ..., "options": {...}}: enough to rebuild the base
    metadata: dict = field(default_factory=dict)  # e.g. a tuned tower's metrics and provenance

    @property
    def tokenizer(self) -> Callable[[list[str]], dict[str, torch.Tensor]]:
        return self.model.text_tower.tokenizer

    @property
    def image_tower_id(self) -> str:
        return self.model.image_tower_id

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def input_size(self) -> int:
        """Square side the image preprocessing produces."""
        size = self.model.image_tower.preprocess_config.get("input_size", (3, 224, 224))
        return int(size[-1])

    @property
    def decode_side(self) -> int:
        """Shorter side the preprocessing resizes to before cropping (timm: input / crop_pct; LiT squashes to the
        input size). Not what the indexer decodes at: drafting JPEGs down to this side moved offline-lite's vectors
        of real photos to cos 0.9989 and changed 14% of top-1 classes (bench/decode_fidelity.py), while a draft to
        2 × the input size stayed at cos 0.9997 with every top-1 unchanged on that set, so the indexer keeps that.
        On 41 large wallpaper JPEGs (>= 2160 px) the same draft measured cos 0.9992 mean and 88% of top-1 classes
        unchanged; a draft to 4 × reached ~0.9998 at ~15% more decode time: open work (issue 14)."""
        config = self.model.image_tower.preprocess_config
        crop_pct = config.get("crop_pct") or 1.0
        resized = config.get("crop_mode", "center") in ("center", "squash")  # timm's modes that resize, then crop
        return int(math.floor(self.input_size / crop_pct)) if resized else self.input_size
