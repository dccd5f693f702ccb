"""Loupe's embedding space: the two towers, presets, preprocessing, tokenization, saving and loading.

Pure ML, no app I/O: `models.create(name) -> ModelBundle(model, preprocess, tokenizer)`.

Attributes are imported on first use (PEP 562) so that light modules such as `models.home` and `models.versions`
can be used without importing torch — a CLI query through a running indexer must not pay for it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LitModel": "models.model", "assert_unit_norm": "models.model", "l2_normalize": "models.model",
    "ModelBundle": "models.bundle", "create": "models.registry", "list_presets": "models.registry",
    "register": "models.registry", "load": "models.registry", "save": "models.saved",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
