"""Near-duplicate collapse: bursts, re-encodes and resized copies show up once, with their twins attached.

Greedy in rank order: a hit whose vector is within `threshold` cosine of a better hit already kept is folded into
it. Identical files never get here (they share one point); this is for *different* bytes of the same picture.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.97


def collapse(vectors: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> list[list[int]]:
    """Groups of row indices (rows in rank order); each group's first index is the one to show."""
    kept: list[int] = []
    groups: dict[int, list[int]] = {}
    for i in range(len(vectors)):
        if kept:
            sims = vectors[kept] @ vectors[i]  # (K,)
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                groups[kept[best]].append(i)
                continue
        kept.append(i)
        groups[i] = [i]
    return [groups[k] for k in kept]
