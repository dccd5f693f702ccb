"""Save and load models: `model.safetensors` + `config.json` naming the towers, dims, preprocessing and version.

A tuned text tower is saved with `parts="text"`: only the text tower and temperature are written (megabytes, not
the image tower's weights), and the config records the base preset and the `image_tower_id` it was tuned against.
Loading rebuilds the base and checks that id, so a text tower can never be paired with an image space it was not
trained to read.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the functions that move tensors: `read_config` (versions, status) is light
    import torch

    from models.bundle import ModelBundle
    from models.model import LitModel

FORMAT = "loupe-model"
FORMAT_VERSION = 1
CONFIG, WEIGHTS = "config.json", "model.safetensors"
TEXT_PREFIXES = ("text_tower.", "logit_scale")


def describe(bundle: ModelBundle) -> dict:
    """The JSON config of a bundle (also what `status --json` shows about a model)."""
    model = bundle.model
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": bundle.name,
        "base": bundle.spec,
        "image_tower_id": model.image_tower_id,
        "dim": model.dim,
        "towers": {
            "image": {"arch": model.image_tower.arch, "feature_dim": model.image_tower.feature_dim,
                      "head": model.image_tower.head_spec},
            "text": {"source": model.text_tower.source, "pooling": model.text_tower.pooling,
                     "hidden_dim": model.text_tower.hidden_dim, "head": model.text_tower.head_spec,
                     "tokenizer": getattr(model.text_tower.tokenizer, "spec", lambda: {})()},
        },
        "preprocess": model.image_tower.preprocess_config,
        "metadata": bundle.metadata,
    }


def save(bundle: ModelBundle, directory: str | os.PathLike, *, parts: str = "text",
         metadata: dict | None = None) -> Path:
    """Write the model atomically (a temp dir renamed into place). `parts`: 'text' (tuned towers) or 'all'."""
    if parts not in ("text", "all"):
        raise ValueError("parts must be 'text' or 'all'")
    from safetensors.torch import save_file

    target = Path(directory).expanduser()
    state = bundle.model.state_dict()
    if parts == "text":
        state = {k: v for k, v in state.items() if k.startswith(TEXT_PREFIXES)}
    config = describe(bundle) | {"parts": parts}
    config["metadata"] = {**bundle.metadata, **(metadata or {})}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(staging / WEIGHTS))
    (staging / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    if target.exists():
        raise FileExistsError(f"{target} already exists; saved models are immutable, pick a new name")
    os.replace(staging, target)
    return target


def read_config(directory: str | os.PathLike) -> dict:
    path = Path(directory).expanduser() / CONFIG
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path} is not a Loupe model config")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer Loupe (format {config['format_version']}); upgrade Loupe")
    return config


def load_saved(directory: str | os.PathLike, *, create: Callable[..., ModelBundle],
               device: torch.device | str | None = None) -> ModelBundle:
    """Rebuild the base preset with `create` (the registry's), apply the saved tensors, verify the image tower.

    The registry passes its own `create` in, so this module never imports the registry (which imports it).
    """
    from safetensors.torch import load_file

    config = read_config(directory)
    base = config["base"]
    bundle = create(base["preset"], device="cpu", **base.get("options", {}))
    load_partial_state(bundle.model, load_file(str(Path(directory).expanduser() / WEIGHTS)),
                       require_all=config.get("parts") == "all")
    if bundle.model.image_tower_id != config["image_tower_id"]:
        raise ValueError(
            f"{directory} was tuned against image tower {config['image_tower_id']} but {base['preset']} now builds "
            f"{bundle.model.image_tower_id}; its text tower cannot read this image space"
        )
    bundle.name = str(directory)
    bundle.metadata = config.get("metadata", {})
    bundle.model.to(device if device is not None else "cpu")
    return bundle


def load_partial_state(model: LitModel, tensors: dict[str, torch.Tensor], *, require_all: bool = False) -> None:
    """Copy `tensors` into `model`; unknown keys or shape mismatches are errors that list them (big_vision style)."""
    own = model.state_dict()
    unknown = sorted(set(tensors) - set(own))
    if unknown:
        raise KeyError(f"saved weights have keys this model lacks (a typo or another architecture?): {unknown[:10]}")
    mismatched = [k for k, v in tensors.items() if v.shape != own[k].shape]
    if mismatched:
        raise ValueError("shape mismatch: " + ", ".join(f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
                                                         for k in mismatched[:10]))
    missing = sorted(set(own) - set(tensors))
    if require_all and missing:
        raise KeyError(f"saved weights are missing keys: {missing[:10]}")
    locked = any(k.startswith("image_tower.") for k in tensors)
    model.load_state_dict(tensors, strict=False)
    if locked:
        model.lock_image_tower()
