"""`ActiveModel`: a base bundle whose text tower follows the promoted version for its image tower.

A long-running process (the indexer that owns the data home, the UI, a search engine) keeps one of these. Before
text is encoded it stats `active.json` (see models.versions); when a promotion or rollback happened, it swaps the
text tower in place. The image tower — and so every stored vector — is untouched, which is the LiT property that
lets tuning take effect without re-indexing.
"""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path

import torch
from safetensors.torch import load_file

from models import versions
from models.bundle import ModelBundle
from models.saved import WEIGHTS, read_config
from models.towers import TextTower

log = logging.getLogger(__name__)


def load_text_tower(directory: Path, bundle: ModelBundle) -> TextTower:
    """A copy of `bundle`'s text tower with a saved version's weights (checked against the image tower id)."""
    config = read_config(directory)
    if config["image_tower_id"] != bundle.image_tower_id:
        raise ValueError(f"{directory} reads image tower {config['image_tower_id']}, not {bundle.image_tower_id}")
    prefix = "text_tower."
    tensors = {k[len(prefix):]: v for k, v in load_file(str(directory / WEIGHTS)).items() if k.startswith(prefix)}
    tower = copy.deepcopy(bundle.model.text_tower)
    own = tower.state_dict()
    unknown = sorted(set(tensors) - set(own))
    if unknown:
        raise KeyError(f"{directory} has text weights this model lacks: {unknown[:10]}")
    tower.load_state_dict(tensors, strict=False)
    return tower.to(bundle.model.device).eval()


class ActiveModel:
    """Thread-safe holder of a bundle whose text tower tracks `versions.active(home, image_tower_id)`."""

    def __init__(self, bundle: ModelBundle, home: Path | None):
        self.bundle = bundle
        self.home = home
        self._base_text = bundle.model.text_tower
        self._stamp: object = object()  # never equal to a real stamp: the first call checks
        self._lock = threading.Lock()
        self.text_version: str | None = None  # name of the tuned version in use, None for the base tower

    def refresh(self) -> bool:
        """Swap the text tower if the promoted version changed. Returns True when it swapped."""
        if self.home is None:
            return False
        stamp = versions.active_stamp(self.home)
        if stamp == self._stamp:
            return False
        with self._lock:
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            path = versions.active(self.home, self.bundle.image_tower_id)
            name = path.name if path else None
            if name == self.text_version:
                return False
            tower = load_text_tower(path, self.bundle) if path else self._base_text
            self.bundle.model.text_tower = tower
            self.text_version = name
            log.info("text tower now %s", name or "the base model's")
            return True

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        self.refresh()
        return self.bundle.model.encode_texts(texts)

    def encode_images(self, pixels: torch.Tensor, with_visual: bool = False):
        return self.bundle.model.encode_images(pixels, with_visual=with_visual)
