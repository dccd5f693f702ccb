"""Built-in presets: `offline-lite`, `test-tiny`, and custom `timm:<arch>+hf:<source>` pairs.

The LiT checkpoint presets (`lit-b16b-2`, `lit-b16b`, `lit-l16l`, `lit-coco-b16b`) are registered in models.lit_presets.
"""

from __future__ import annotations

import contextlib
import logging

import timm
import torch
from timm.data import create_transform, resolve_data_config

from models.bundle import ModelBundle
from models.model import LitModel
from models.registry import register
from models.tokenizers import HFTokenizer
from models.towers import ImageTower, TextTower

log = logging.getLogger(__name__)
TINY_SEED = 1234


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
    """Attach the preprocessing that the image tower's own config describes."""
    transform = create_transform(**_as_tuples(model.image_tower.preprocess_config), is_training=False)
    return ModelBundle(name=name, model=model, preprocess=transform, spec={"preset": name, "options": spec_options})


def _as_tuples(config: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


@contextlib.contextmanager
def seeded(seed: int):
    """Deterministic random init without disturbing the caller's RNG (test-tiny must be identical everywhere)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@register("test-tiny", "random tiny towers (32-d) for tests; deterministic, no files")
def test_tiny(seed: int = TINY_SEED, dim: int = 32) -> ModelBundle:
    from transformers import BertConfig, BertModel

    from models.offline_lite import minilm_dir

    with seeded(seed):
        image = timm_image_tower("test_efficientnet", pretrained=False, head_dim=dim)
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, hidden_act="gelu_pytorch_tanh")
        encoder = BertModel(config, add_pooling_layer=False)
        text = TextTower(encoder, HFTokenizer(minilm_dir(), max_length=16), source="tiny-bert", hidden_dim=32,
                         pooling="cls", head_spec=[{"type": "linear", "in": 32, "out": dim}])
        model = LitModel(image, text)
    return bundle_for("test-tiny", model, {"seed": seed, "dim": dim})


def custom(name: str, *, pretrained: bool = True, dim: int | None = None, pooling: str = "mean",
           max_length: int = 64) -> ModelBundle:
    """`timm:<arch>+hf:<name or dir>`: any timm image tower with any transformers text encoder and a linear head.

    The image tower keeps its native features (no head) unless `dim` asks for a projection; the text head maps
    into that space and is what `models.train` tunes.
    """
    from transformers import AutoModel

    image_part, _, text_part = name.partition("+")
    if not text_part.startswith("hf:"):
        raise ValueError(f"custom model must look like 'timm:<arch>+hf:<name or dir>', got {name!r}")
    arch, source = image_part[len("timm:"):], text_part[len("hf:"):]
    image = timm_image_tower(arch, pretrained=pretrained, head_dim=dim)
    try:
        encoder = AutoModel.from_pretrained(source)
    except OSError as err:
        raise RuntimeError(f"could not load text encoder {source!r}: {err}. Give a local directory.") from err
    hidden = encoder.config.hidden_size
    text = TextTower(encoder, HFTokenizer(source, max_length), source=source, hidden_dim=hidden, pooling=pooling,
                     head_spec=[{"type": "linear", "in": hidden, "out": image.output_dim}])
    options = {"pretrained": pretrained, "dim": dim, "pooling": pooling, "max_length": max_length}
    return bundle_for(name, LitModel(image, text), options)


import models.lit_presets  # noqa: E402,F401  (registers lit-b16b-2, lit-b16b, lit-l16l, lit-coco-b16b)
import models.offline_lite  # noqa: E402,F401  (registers offline-lite)
