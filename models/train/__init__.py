"""Tune the text tower against the locked image tower (LiT, Zhai et al. 2022): `python -m models.train --help`.

Library use (the CLI in `__main__` is the composition root that picks the image-vector source):

    from models.train import TrainConfig, train
    result = train(TrainConfig(captions=Path("captions.csv"), model="offline-lite"), image_vectors=my_source)

Modules, by concept: captions (file parsing), image_vectors / vector_cache (where locked vectors come from),
pairs (split, batching without false negatives), trainable + lora (what moves), loop (loss, optimizer, schedule),
fit (epochs, validation, early stopping), metrics (Recall@K), checkpoint (resume), run (the whole run).
"""

from models.train.captions import CaptionRow, CaptionsError, Problem, read_captions
from models.train.config import TrainConfig, TrainMode
from models.train.data import NoUsableRows
from models.train.image_vectors import ChainedSource, ImageVectorSource, NpzVectorSource
from models.train.loop import contrastive_loss
from models.train.metrics import recall_at_k
from models.train.run import TrainResult, train
from models.train.vector_cache import CachedTowerSource

__all__ = [
    "CachedTowerSource", "CaptionRow", "CaptionsError", "ChainedSource", "ImageVectorSource", "NoUsableRows",
    "NpzVectorSource", "Problem", "TrainConfig", "TrainMode", "TrainResult", "contrastive_loss", "read_captions",
    "recall_at_k", "train",
]
