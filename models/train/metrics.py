"""Validation: text→image and image→text Recall@K on held-out pairs, before training and after every epoch.

The counting is `models.retrieval.recall_at_k` (COCO protocol, as LiT and CLIP report it): a caption hits at K when
its own image is among the K most similar images; an image hits when any of its captions is among its K most
similar captions. This module flattens it into the `t2i_r1 … i2t_r10, mean_recall` keys that runs record.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from models.model import LitModel
from models.retrieval import recall_at_k as retrieval_recall
from models.train.pairs import PairSet

KS = (1, 5, 10)


def recall_at_k(text_vectors: torch.Tensor, image_vectors: torch.Tensor, image_index: torch.Tensor,
                ks: tuple[int, ...] = KS) -> dict[str, float]:
    """T→I and I→T recall for unit text (N, D) and image (I, D) vectors; caption n describes image image_index[n]."""
    nested = retrieval_recall(image_vectors, text_vectors, image_index.tolist(), ks=ks)
    out = {}
    for k in ks:
        out[f"t2i_r{k}"] = nested["text_to_image"][f"R@{k}"]
        out[f"i2t_r{k}"] = nested["image_to_text"][f"R@{k}"]
    out["mean_recall"] = float(np.mean([out[f"{d}_r{k}"] for d in ("t2i", "i2t") for k in ks]))
    return out


@torch.no_grad()
def evaluate(model: LitModel, pairs: PairSet, batch_size: int = 256) -> dict[str, float]:
    """Recall@K plus the T→I cross-entropy over all held-out images (a smooth tie-breaker for model selection)."""
    was_training = model.training
    model.eval()
    texts = torch.cat([model.encode_texts(pairs.captions[i:i + batch_size])
                       for i in range(0, len(pairs), batch_size)]).cpu()  # (N, D)
    images = torch.from_numpy(pairs.image_vectors)  # (I, D)
    index = torch.from_numpy(pairs.image_index)
    metrics = recall_at_k(texts, images, index)
    logits = model.logit_scale.detach().float().exp().clamp(max=100.0).cpu() * texts @ images.T  # (N, I)
    metrics["t2i_loss"] = float(F.cross_entropy(logits, index))
    model.train(was_training)
    return metrics


def score(metrics: dict[str, float]) -> tuple[float, float]:
    """Model selection key: higher text→image recall (mean of R@1/5/10: what search does), then lower T→I loss.

    Image→text recall is reported but not selected on: a tuned head that matches captions to photos better can
    score lower on I→T (hub captions), and an epoch chosen by a mean with I→T could make search worse.
    """
    return float(np.mean([metrics[f"t2i_r{k}"] for k in KS])), -metrics["t2i_loss"]
