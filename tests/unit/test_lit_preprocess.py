"""LiT preprocessing matches the reference formula exactly (doc §4), including odd sizes, up- and down-scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from models.lit_preprocess import LitPreprocess, lit_pixels


def reference_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """The doc's per-pixel formula, written as a plain loop: c=(i+0.5)*in/out-0.5; lo=clamp(floor c);
    hi=clamp(ceil c); f=c-floor c; rows of the four neighbours lerped along x, then along y (TF's order, float32);
    then truncation to uint8."""
    f32 = np.float32
    height, width = pixels.shape[:2]
    out = np.zeros((size, size, 3), np.uint8)

    def axis(i, n):
        c = (f32(i) + f32(0.5)) * (f32(n) / f32(size)) - f32(0.5)
        lo, hi = max(math.floor(c), 0), min(math.ceil(c), n - 1)
        return lo, hi, f32(c - f32(math.floor(c)))

    for y in range(size):
        y0, y1, fy = axis(y, height)
        for x in range(size):
            x0, x1, fx = axis(x, width)
            tl, tr = pixels[y0, x0].astype(f32), pixels[y0, x1].astype(f32)
            bl, br = pixels[y1, x0].astype(f32), pixels[y1, x1].astype(f32)
            top, bottom = tl + (tr - tl) * fx, bl + (br - bl) * fx
            out[y, x] = (top + (bottom - top) * fy).astype(np.uint8)
    return out


@pytest.mark.parametrize(("height", "width", "size"), [(301, 157, 224), (37, 23, 224), (97, 211, 61)])
def test_resize_matches_the_reference_formula_exactly(height, width, size):
    rng = np.random.default_rng(height)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = reference_resize(pixels, size)
    assert np.array_equal(lit_pixels(Image.fromarray(pixels), size), expected)
    tensor = LitPreprocess(size)(Image.fromarray(pixels))
    assert tensor.shape == (3, size, size) and tensor.dtype == torch.float32
    scaled = expected.astype(np.float32) / np.float32(255) * np.float32(2) - np.float32(1)
    assert torch.equal(tensor, torch.from_numpy(scaled.transpose(2, 0, 1)))


def test_alpha_is_dropped_and_grey_is_replicated():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)
    preprocess = LitPreprocess()
    assert torch.equal(preprocess(Image.fromarray(rgba, "RGBA")), preprocess(Image.fromarray(rgba[..., :3])))
    grey = preprocess(Image.fromarray(rgba[..., 0], "L"))
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert -1.0 <= grey.min() and grey.max() <= 1.0


def test_torch_interpolate_agrees_on_almost_every_value_but_is_not_exact():
    """Why Loupe carries its own resize: F.interpolate(align_corners=False, antialias=False) is close, not equal."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ours = lit_pixels(Image.fromarray(pixels))
    source = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
    theirs = torch.nn.functional.interpolate(source, (224, 224), mode="bilinear", align_corners=False,
                                             antialias=False)[0].permute(1, 2, 0).floor().clamp(0, 255).byte().numpy()
    agreement = (ours == theirs).mean()
    assert 0.999 < agreement < 1.0 and np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_config_describes_the_pipeline():
    config = LitPreprocess().config()
    assert config["type"] == "lit" and config["input_size"] == [3, 224, 224] and config["antialias"] is False
