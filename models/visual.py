"""The visual vector: what a photo looks like, for near-duplicates and "more like this", beside the text-aligned one.

Three parts, each unit-norm and weighted 1/sqrt(3), concatenated (so the whole is a unit vector and its cosine is
the mean of the three parts' cosines, which is what a "more like this" query ranks by):

* `features`: the backbone's pooled pre-logit features, L2-normalised. They survive crops, small shifts and
  rotations and brightness changes, but a 25-50% resize of a small photo (upscaled back, so blurred) drops them
  to cos 0.4-0.8, and distinct photos of the same class reach cos 0.94 (measured, bench/dedupe_fit.py).
* `layout` (4x4) and `fine` (8x8): the preprocessed pixels averaged down to a coarse colour thumbnail, minus its
  mean (brightness-invariant) and L2-normalised (contrast-invariant). A resize or re-encode leaves the 8x8 thumbnail
  at cos >= 0.99 where distinct photos stay below ~0.97; the 4x4 one tells two shots of one scene from two framings.

"More like this" ranks by `like_vector(query)`: the same stored vectors, the query's parts reweighted by
`LIKE_WEIGHTS`. The thumbnails say "same picture", not "same subject": with all three parts at equal weight, 36% of
a photo's 5 nearest neighbours showed its subject on the photo set's dev half (bench/like_fit.py, offline-lite image
space 2); with the weights fitted there (features 1, fine thumbnail 0.25, layout 0), 55% (held-out: 30% → 47%).
Image space 3 refitted them to features alone (`LIKE_WEIGHTS`' comment has its figures). Reweighting the
query (not the stored vectors) keeps one index for near-duplicates and neighbours alike: the score of a stored
vector against the reweighted query is Σ w_part·cos_part / norm.

All of it comes out of the one forward pass that computes the text-aligned vector (`LitModel.encode_images(...,
with_visual=True)`), for any timm backbone; search.dedupe reads the parts back with `split`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is made: search's fold rule (split) runs on numpy alone
    import torch

LAYOUT_SIDE, FINE_SIDE = 4, 8
PART_WEIGHT = 1 / math.sqrt(3)
PARTS = ("features", "layout", "fine")
# What "more like this" weighs each part's cosine by: chosen on the photo set's dev half by bench/like_fit.py (best
# neighbour precision@5 on a grid), reported on its held-out half there. Image space 3 (offline-lite's squash): features
# alone, dev P@5 0.574 / held-out 0.549 (space 2's fit, fine 0.25, gives 0.559 / 0.516 there). What it costs: the
# query photo's near-duplicates all rank first for 15 of 20 held-out families instead of 18 (dev 19/20 either way);
# they are still folded into one result by search.dedupe.
LIKE_WEIGHTS = {"features": 1.0, "layout": 0.0, "fine": 0.0}


def layout_dims(channels: int = 3) -> tuple[int, int]:
    return channels * LAYOUT_SIDE**2, channels * FINE_SIDE**2


def visual_dim(feature_dim: int, channels: int = 3) -> int:
    return feature_dim + sum(layout_dims(channels))


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / (x.norm(dim=-1, keepdim=True) + 1e-8)


def thumbnail(pixels: torch.Tensor, side: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3*side*side): average-pooled, mean removed, unit norm."""
    import torch.nn.functional as F

    small = F.adaptive_avg_pool2d(pixels.float(), side).flatten(1)
    return _unit(small - small.mean(dim=1, keepdim=True))


def visual_vector(features: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """(N, V) unit visual vectors from pooled features (N, F) and the pixels they were computed from."""
    parts = [_unit(features), thumbnail(pixels, LAYOUT_SIDE), thumbnail(pixels, FINE_SIDE)]
    import torch

    return torch.cat([PART_WEIGHT * p for p in parts], dim=1)


def split(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """{'features', 'layout', 'fine'}: the unit parts of (N, V) or (V,) visual vectors."""
    vectors = np.asarray(vectors, np.float32)
    layout, fine = layout_dims()
    cut = vectors.shape[-1] - layout - fine
    if cut <= 0:
        raise ValueError(f"a visual vector has more than {layout + fine} values, not {vectors.shape[-1]}")
    scale = 1 / PART_WEIGHT
    return {"features": vectors[..., :cut] * scale, "layout": vectors[..., cut:cut + layout] * scale,
            "fine": vectors[..., cut + layout:] * scale}


def like_vector(visual: np.ndarray, weights: dict[str, float] | None = None) -> np.ndarray:
    """(V,) or (N, V): a visual query reweighted part by part (`LIKE_WEIGHTS` by default), unit length again. Dotted
    with stored visual vectors it ranks by Σ weight·part cosine; the fold rule still reads the raw query."""
    weights = LIKE_WEIGHTS if weights is None else weights
    parts = split(visual)
    scaled = np.concatenate([PART_WEIGHT * weights[name] * parts[name] for name in PARTS], axis=-1)
    norm = np.linalg.norm(scaled, axis=-1, keepdims=True)
    if np.any(norm < 1e-8):
        raise ValueError("a visual query with every part weighted 0 (or a zero vector) ranks nothing")
    return (scaled / norm).astype(np.float32)
