"""Tune the text tower against the locked image tower (LiT, Zhai et al. 2022): `python -m models.train --help`.

Library use (the CLI in `__main__` is the composition root that picks the image-vector source):

    from models.train import TrainConfig, train
    result = train(TrainConfig(captions=Path("captions.csv"), model="offline-lite"), image_vectors=my_source)

Modules, by concept: captions (file parsing), image_vectors / vector_cache (where locked vectors come from),
pairs (split, batching without false negatives), trainable + lora (what moves), loop (loss, optimizer, schedule),
fit (epochs, validation, early stopping), metrics (Recall@K), checkpoint (resume), run (the whole run).
"""

from __future__ import annotations

import importlib

# Names are imported on first use (PEP 562): `python -m models.train --help` runs this file first and must not pay
# for torch (the loop and the checkpoint code need it; the parser does not).
_EXPORTS = {
    "CaptionRow": "models.train.captions", "CaptionsError": "models.train.captions",
    "Problem": "models.train.captions", "read_captions": "models.train.captions",
    "TrainConfig": "models.train.config", "TrainMode": "models.train.config",
    "NoUsableRows": "models.train.data",
    "ChainedSource": "models.train.image_vectors", "ImageVectorSource": "models.train.image_vectors",
    "NpzVectorSource": "models.train.image_vectors",
    "contrastive_loss": "models.train.loop", "recall_at_k": "models.train.metrics",
    "TrainResult": "models.train.run", "train": "models.train.run",
    "CachedTowerSource": "models.train.vector_cache",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models.train' has no attribute {name!r}")
