"""timm's eval transform (resize → center crop → to tensor → normalize), at a third of its CPU cost.

Two of timm's crop modes: `center` (the shorter side is resized to size / crop_pct, aspect kept, then the center is
cropped) and `squash` (both sides resized to size / crop_pct, aspect not kept; with crop_pct 1 the whole photo is
seen, which offline-lite uses since image space 3: a wide photo's subject is not cut away). A squash that scales
the two sides by different factors is resized in two passes, rounded to uint8 between them, and Pillow and torch do
not always take the passes in the same order: up to ~6 levels apart on a quarter of the pixels there (mean < 1
level; the tests bound it), where an aspect-keeping resize is within one level on ~0.3%.

The indexer preprocesses every photo in its decode pool, so this is per-image worker time. timm's transform resizes
the whole image with Pillow (no SIMD), crops, then converts and normalises in three tensor passes. Here:

* the resize is torch's antialiased uint8 resize (`F.interpolate(..., antialias=True)`), vectorised (AVX2), with
  Pillow's own filter: it differs from Pillow's result by at most one level on ~0.3% of the pixels (tested below
  that bound against timm's transform), i.e. nothing a model can see;
* to-float and normalisation are one table lookup per channel (256 precomputed values, built with the same float32
  operations as ToTensor + Normalize, so each value is bit-identical to theirs).

Measured (bench/decode.py --worker, one thread, a 1000x750 reduced decode of a 12 MP JPEG): 7.8 ms → 3.0 ms, of
which ~1.5 ms is Pillow's export of the pixels (the indexer shares that export with the thumbnail). Torch runs
these ops on the calling thread only when that thread is not torch's main thread, which is where the indexer calls
it (its decode pool); the model's intra-op threads are not disturbed.

Only the configurations the fast path reproduces take it (center or squash crop, bilinear or bicubic, square input,
no border trim); anything else keeps timm's transform.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_MODES = {"bicubic": "bicubic", "bilinear": "bilinear"}


def resize_uint8(pixels: np.ndarray, width: int, height: int, mode: str = "bicubic") -> np.ndarray:
    """(H, W, 3) uint8 → (height, width, 3) uint8 by torch's antialiased resize (Pillow's filter, vectorised).
    `pixels` must be writable (torch.from_numpy warns on read-only arrays)."""
    nchw = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # a channels-last view: the vectorised uint8 path
    small = F.interpolate(nchw, size=(height, width), mode=mode, antialias=True, align_corners=False)
    return small[0].permute(1, 2, 0).numpy()


class CenterCropPreprocess:
    """PIL image → (3, size, size) float32 tensor, as timm's `transforms_imagenet_eval` for a center or squash crop
    config (`squash`: both sides resized to size / crop_pct before the center crop)."""

    def __init__(self, size: int, crop_pct: float, interpolation: str, mean, std, squash: bool = False):
        self.size = int(size)
        self.squash = bool(squash)
        self.crop_pct = float(crop_pct)
        self.scale_size = math.floor(self.size / self.crop_pct)
        self.interpolation = interpolation
        self.mode = _MODES[interpolation]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(3, 1)
        levels = torch.arange(256, dtype=torch.float32).view(1, 256).div(255)  # ToTensor: float, then / 255
        self._lut = levels.sub(mean_t).div(std_t).numpy()  # (3, 256): Normalize's (x - mean) / std per level

    @classmethod
    def from_config(cls, config: dict) -> CenterCropPreprocess | None:
        """The fast equivalent of timm's eval transform for `config`, or None where it would not be identical."""
        size = config.get("input_size", (3, 224, 224))
        if (len(size) != 3 or size[0] != 3 or size[1] != size[2]
                or config.get("crop_mode", "center") not in ("center", "squash")
                or config.get("interpolation", "bilinear") not in _MODES or config.get("crop_border_pixels")
                or len(config.get("mean", ())) != 3 or len(config.get("std", ())) != 3):
            return None
        crop_pct = config.get("crop_pct") or 0.875  # timm's DEFAULT_CROP_PCT
        if math.floor(size[2] / crop_pct) < size[2]:
            return None  # the crop would pad
        return cls(size[2], crop_pct, config.get("interpolation", "bilinear"), config["mean"], config["std"],
                   squash=config.get("crop_mode") == "squash")

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """torchvision's Resize(int): the shorter side becomes scale_size, the longer one is truncated; squash:
        Resize((scale_size, scale_size))."""
        if self.squash:
            return self.scale_size, self.scale_size
        if width <= height:
            return self.scale_size, int(self.scale_size * height / width)
        return int(self.scale_size * width / height), self.scale_size

    accepts_arrays = True  # also takes an (H, W, 3) uint8 RGB array (the indexer's `DecodedImage.pixels`)

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        if isinstance(image, np.ndarray):
            pixels = image if image.flags.writeable else image.copy()  # torch.from_numpy warns on read-only arrays
        else:
            pixels = np.array(image if image.mode == "RGB" else image.convert("RGB"))  # (H, W, 3) uint8
        height, width = pixels.shape[:2]
        new_w, new_h = self.resized_size(width, height)
        if (new_w, new_h) != (width, height):
            pixels = resize_uint8(pixels, new_w, new_h, self.mode)
        top = int(round((new_h - self.size) / 2.0))  # torchvision CenterCrop's rounding
        left = int(round((new_w - self.size) / 2.0))
        crop = pixels[top:top + self.size, left:left + self.size]
        out = np.empty((3, self.size, self.size), np.float32)
        for c in range(3):
            np.take(self._lut[c], crop[..., c], out=out[c])
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        resize = "squash" if self.squash else "resize_shorter"
        return (f"CenterCropPreprocess(size={self.size}, {resize}={self.scale_size}, "
                f"interpolation={self.interpolation})")
