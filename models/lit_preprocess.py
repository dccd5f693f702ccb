"""LiT's exact image preprocessing: RGB → squash to 224×224 (TF bilinear, half-pixel, no antialias) → uint8 → [-1, 1].

The released towers were trained and evaluated with `tf.image.resize(img, (224, 224), 'bilinear')` on the whole
image (no crop, aspect ratio squashed), a cast back to uint8 (truncation) and `x / 255 * 2 - 1`
(shared/docs/lit-checkpoints.md §4). PIL's BILINEAR antialiases when shrinking and ImageNet mean/std is a different
range, so either silently moves every image vector.

Why our own resize rather than `F.interpolate(..., 'bilinear', align_corners=False, antialias=False)`: that matches
the reference formula on ~99.99% of values, and the remaining ones differ by one uint8 step after truncation. The
numpy version below replays TF's `resize_bilinear` kernel (half-pixel centres, float32, horizontal lerp then
vertical, in TF's operation order) and is exact; it only gathers the 4 × 224² source pixels it needs, so it costs
about as much as the interpolate call.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

LIT_IMAGE_SIZE = 224


def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: lower and upper source index and the lerp weight, as TF computes them in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    centre = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)  # (out,)
    floor = np.floor(centre)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(centre), in_size - 1).astype(np.int64)
    return lower, upper, (centre - floor).astype(np.float32)


def tf_bilinear_resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) uint8 → (height, width, C) float32, bit-exact with TF's half-pixel bilinear resize (no antialias)."""
    y_lo, y_hi, y_lerp = _axis_weights(pixels.shape[0], height)
    x_lo, x_hi, x_lerp = _axis_weights(pixels.shape[1], width)
    rows_lo, rows_hi = pixels[y_lo], pixels[y_hi]  # (height, W, C) each, still uint8
    top_left, top_right = rows_lo[:, x_lo].astype(np.float32), rows_lo[:, x_hi].astype(np.float32)
    bottom_left, bottom_right = rows_hi[:, x_lo].astype(np.float32), rows_hi[:, x_hi].astype(np.float32)
    x_lerp = x_lerp[None, :, None]  # (1, width, 1)
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    return top + (bottom - top) * y_lerp[:, None, None]  # (height, width, C)


def lit_pixels(image: Image.Image, size: int = LIT_IMAGE_SIZE) -> np.ndarray:
    """PIL image → (size, size, 3) uint8 exactly as LiT feeds it before scaling (alpha dropped, squashed)."""
    if image.mode != "RGB":
        image = image.convert("RGB")  # RGBA/LA: alpha dropped, not composited, like decoding with channels=3
    resized = tf_bilinear_resize(np.asarray(image), size, size)
    return np.clip(resized, 0, 255).astype(np.uint8)  # truncation, as tf.cast(float → uint8)


class LitPreprocess:
    """Callable PIL image → (3, size, size) float32 tensor in [-1, 1]; the bundle's `preprocess` for LiT presets."""

    def __init__(self, size: int = LIT_IMAGE_SIZE):
        self.size = size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        scaled = lit_pixels(image, self.size).astype(np.float32) / np.float32(255) * np.float32(2) - np.float32(1)
        return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))  # (3, S, S)

    def config(self) -> dict:
        """What `ImageTower.preprocess_config` records (it is part of the image tower's identity)."""
        return {"type": "lit", "input_size": [3, self.size, self.size], "resize": "squash-bilinear-halfpixel-tf",
                "antialias": False, "value_range": [-1, 1]}

    def __repr__(self) -> str:
        return f"LitPreprocess(size={self.size})"
