"""Shared builders for presets: timm towers and their preprocessing, bundles, seeded random init.

Every preset module (`models.presets`, `models.offline_lite`, `models.lit_presets`) builds on these, and this module
imports none of them, so preset modules never import each other or the registry.
"""

from __future__ import annotations

import contextlib

import timm
import torch
from timm.data import create_transform, resolve_data_config

from models.bundle import ModelBundle
from models.fast_preprocess import CenterCropPreprocess
from models.model import LitModel
from models.towers import ImageTower


def timm_preprocess(backbone: torch.nn.Module) -> tuple[object, dict]:
    """Eval transform from the backbone's own pretrained config (size, interpolation, crop, mean/std)."""
    config = resolve_data_config({}, model=backbone)
    transform = create_transform(**config, is_training=False)
    jsonable = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    return transform, jsonable


def timm_image_tower(arch: str, *, pretrained: bool, head_dim: int | None = None) -> ImageTower:
    """A timm backbone's pooled features, with a linear head to `head_dim` when given."""
    backbone = _timm_backbone(arch, pretrained)
    head_spec = [{"type": "linear", "in": backbone.num_features, "out": head_dim}] if head_dim else []
    _, preprocess_config = timm_preprocess(backbone)
    return ImageTower(
        backbone, arch=arch, feature_dim=backbone.num_features, head_spec=head_spec,
        preprocess_config=preprocess_config,
    )


def _timm_backbone(arch: str, pretrained: bool) -> torch.nn.Module:
    try:
        return timm.create_model(arch, pretrained=pretrained, num_classes=0)
    except RuntimeError as err:  # unknown arch is a RuntimeError in timm
        raise ValueError(f"timm has no model {arch!r}: {err}") from err
    except OSError as err:  # weights download failed (offline machine)
        raise RuntimeError(
            f"could not fetch pretrained weights for timm:{arch} ({err}). This machine may be offline: "
            "use the 'offline-lite' preset, or pass pretrained=False and load your own checkpoint"
        ) from err


def bundle_for(name: str, model: LitModel, spec_options: dict) -> ModelBundle:
    """Attach the preprocessing that the image tower's own config describes (timm's eval transform, or its faster
    equivalent `CenterCropPreprocess` where that reproduces it)."""
    config = model.image_tower.preprocess_config
    transform = CenterCropPreprocess.from_config(config) or create_transform(**_as_tuples(config), is_training=False)
    return ModelBundle(name=name, model=model, preprocess=transform, spec={"preset": name, "options": spec_options})


def _as_tuples(config: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


@contextlib.contextmanager
def seeded(seed: int):
    """Deterministic random init without disturbing the caller's RNG (test-tiny must be identical everywhere)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
