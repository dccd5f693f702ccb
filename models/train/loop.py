"""The training loop: symmetric InfoNCE on (cached image vector, caption) pairs, AdamW, warmup + cosine, epochs.

Only the text tower runs here. The image side of every pair is a constant vector from the locked tower (LiT, Zhai et
al. 2022), looked up, never recomputed: that is where LiT's speed-up comes from (bench/train.py measures it). The
frozen part of the text tower under `--train head` / `last:N` is cached per caption the same way (text_cache.py).
Gradient accumulation sums micro-batch losses before one optimizer step; note that, unlike a larger batch, it does
not add negatives (each micro-batch's loss only contrasts within itself).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from models.device import autocast_dtype
from models.model import LitModel
from models.train.config import TrainConfig
from models.train.pairs import PairSet, epoch_batches
from models.train.text_cache import frozen_text_cache
from models.train.trainable import parameter_groups

GRAD_CLIP_NORM = 1.0  # as in the LiT and CLIP training configs


class TrainingDiverged(RuntimeError):
    """The loss stopped being a number: the run ends before its weights (NaN by then) can be saved or promoted."""


DIVERGED_ADVICE = ("nothing of this epoch was saved. Try a lower --lr, or check the image vectors and captions it "
                   "trained on")


def contrastive_loss(model: LitModel, image_vectors: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP, Radford et al. 2021; LiT): cross-entropy image→text and text→image, averaged.

    Row i of both inputs is a matching pair; every other row of the batch is a negative.
    """
    logits = model.contrastive_logits(image_vectors, text_vectors)  # (B, B): exp(t) · zimg @ ztxtᵀ
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warmup from ~0 to 1, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@dataclass
class EpochStats:
    epoch: int
    loss: float  # mean contrastive loss over the epoch's batches
    pairs: int  # caption-image pairs seen
    seconds: float
    lr: float  # learning rate at the end of the epoch

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / max(self.seconds, 1e-9)


class Trainer:
    """Owns the optimizer, schedule and (fp16 only) grad scaler; `train_epoch` runs one pass over `pairs`."""

    def __init__(self, model: LitModel, config: TrainConfig, pairs: PairSet, *, progress: bool = True):
        self.model, self.config, self.pairs, self.progress = model, config, pairs, progress
        device = model.device
        self.image_vectors = torch.from_numpy(pairs.image_vectors).to(device)  # (I, D), constant
        self.optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.peak_lr)
        batches_per_epoch = math.ceil(len(pairs) / config.batch_size)
        total = config.epochs * math.ceil(batches_per_epoch / config.accum_steps)
        warmup = max(1, int(config.warmup_fraction * total)) if config.warmup_fraction > 0 else 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(total, warmup))
        self.scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.text_cache = None  # built on the first epoch, after a resumed run restored its weights
        self._text_cache_built = not config.cache_text

    def train_epoch(self, epoch: int) -> EpochStats:
        """One pass; the batch order depends only on (seed, epoch), so a resumed run sees the same batches."""
        self._set_modes()
        if not self._text_cache_built:
            self.text_cache = frozen_text_cache(self.model, self.config.mode, self.pairs.captions)
            self._text_cache_built = True
        batches = epoch_batches(self.pairs.image_index, self.config.batch_size,
                                np.random.default_rng([self.config.seed, epoch]))
        bar = tqdm(batches, desc=f"epoch {epoch}/{self.config.epochs}", unit="batch", leave=False,
                   disable=None if self.progress else True)
        total_loss, pairs, start = 0.0, 0, time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            loss = self._micro_step(batch)
            if not math.isfinite(loss):
                bar.close()
                raise TrainingDiverged(f"the loss became {loss} in epoch {epoch} (batch {i + 1} of {len(batches)}); "
                                       + DIVERGED_ADVICE)
            if (i + 1) % self.config.accum_steps == 0 or i + 1 == len(batches):
                self._optimizer_step()
            total_loss += loss * len(batch)
            pairs += len(batch)
            bar.set_postfix(loss=f"{loss:.3f}", pairs_s=f"{pairs / (time.perf_counter() - start):.0f}")
        bar.close()
        if not all(bool(torch.isfinite(p).all()) for p in self.params):  # a last step with inf gradients
            raise TrainingDiverged(f"the weights stopped being numbers in epoch {epoch}; " + DIVERGED_ADVICE)
        lr = self.optimizer.param_groups[0]["lr"]
        return EpochStats(epoch, total_loss / max(pairs, 1), pairs, time.perf_counter() - start, lr)

    def _set_modes(self) -> None:
        self.model.train()
        if self.config.mode.kind == "head":  # a frozen encoder should not add dropout noise to the head's input
            self.model.text_tower.encoder.eval()

    def _micro_step(self, batch: np.ndarray) -> float:
        images = self.image_vectors[torch.from_numpy(self.pairs.image_index[batch]).to(self.image_vectors.device)]
        if self.text_cache is not None:
            text_vectors = self.text_cache.text_features(batch)  # (B, D): only the trainable layers run
        else:
            text_vectors = self.model.text_features([self.pairs.captions[j] for j in batch])  # (B, D) unit fp32
        loss = contrastive_loss(self.model, images, text_vectors)
        self.scaler.scale(loss / self.config.accum_steps).backward()
        return float(loss.detach())

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.params, GRAD_CLIP_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
