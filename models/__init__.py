"""Loupe's embedding space: the two towers, presets, preprocessing, tokenization, saving and loading.

Pure ML, no app I/O: `models.create(name) -> ModelBundle(model, preprocess, tokenizer)`.
"""

from models.bundle import ModelBundle
from models.model import LitModel, assert_unit_norm, l2_normalize
from models.registry import create, list_presets, register
from models.saved import load, save

__all__ = [
    "LitModel", "ModelBundle", "assert_unit_norm", "create", "l2_normalize", "list_presets", "load", "register", "save",
]
