"""The fast center-crop and squash preprocessing reproduce timm's eval transform (within one uint8 level, on few
pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform

from models.fast_preprocess import CenterCropPreprocess

CONFIG = {"input_size": (3, 224, 224), "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406),
          "std": (0.229, 0.224, 0.225), "crop_pct": 0.875, "crop_mode": "center"}


def _photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth gradients plus grain: textured like a photo, so resampling differences would show."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.stack([128 + 90 * np.sin(x / w * 7 + c) * np.cos(y / h * 5 - c) for c in range(3)], -1)
    a += rng.normal(0, 20, (h, w, 1))
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("crop", [{"crop_mode": "center", "crop_pct": 0.875}, {"crop_mode": "squash", "crop_pct": 1.0},
                                  {"crop_mode": "squash", "crop_pct": 0.9}])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [(1000, 750), (750, 1000), (640, 640), (333, 257), (256, 300), (97, 61), (5, 3),
                                  (1200, 200)])
def test_matches_timms_eval_transform(size, interpolation, crop):
    config = {**CONFIG, "interpolation": interpolation, **crop}
    fast = CenterCropPreprocess.from_config(config)
    reference = create_transform(**config, is_training=False)
    image = _photo(size)
    got, want = fast(image), reference(image)
    assert got.shape == want.shape == (3, 224, 224) and got.dtype == torch.float32
    steps = 1 if min(size) >= 256 else 2  # downscaling: one uint8 level; a blow-up (5x3 px, a squashed 200 px side):
    # two
    level = 1 / 255 / min(CONFIG["std"]) + 1e-5  # one uint8 step after normalisation
    diff = (got - want).abs()
    if crop["crop_mode"] == "squash" and size[0] != size[1]:
        # two scale factors: Pillow and torch may take the two resize passes in the other order (module docstring)
        assert float(diff.max()) <= 8 * level and float(diff.mean()) < 0.5 * level
        return
    assert float(diff.max()) <= steps * level
    assert float((diff > 1e-5).float().mean()) < 0.01  # almost every value identical


def test_non_rgb_images_are_converted():
    fast = CenterCropPreprocess.from_config(CONFIG)
    rgb = _photo((400, 300))
    assert torch.equal(fast(rgb.convert("L")), fast(rgb.convert("L").convert("RGB")))
    assert fast(rgb.convert("RGBA")).shape == (3, 224, 224)


@pytest.mark.parametrize("change", [{"crop_mode": "border"}, {"interpolation": "lanczos"}, {"crop_pct": 1.2},
                                    {"input_size": (3, 224, 192)}, {"crop_border_pixels": 2}])
def test_other_configs_keep_timms_transform(change):
    assert CenterCropPreprocess.from_config({**CONFIG, **change}) is None


def test_offline_lite_uses_it(lite_bundle):
    """Image space 3 squashes the whole photo into the square (a wide photo keeps its subject)."""
    assert isinstance(lite_bundle.preprocess, CenterCropPreprocess) and lite_bundle.preprocess.squash


def test_arrays_give_the_same_tensor_as_images():
    fast = CenterCropPreprocess.from_config(CONFIG)
    image = _photo((640, 480))
    pixels = np.asarray(image)  # read-only: copied, never written
    assert fast.accepts_arrays and torch.equal(fast(pixels), fast(image)) and torch.equal(fast(np.array(image)),
                                                                                          fast(image))
