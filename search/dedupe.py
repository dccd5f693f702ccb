"""Near-duplicate collapse: bursts, re-encodes and resized copies show up once, with their twins attached.

Greedy in rank order: a hit whose vector is within `threshold` cosine of a better hit already kept is folded into
it. Identical files never get here (they share one point); this is for *different* bytes of the same picture.

The vectors are the photos' *visual* vectors (the image tower's pooled features, indexer.stores.vectors), because a
text-aligned space can be too coarse to tell a re-encode from a different photo of the same kind of thing:
offline-lite's puts distinct photos of one class at up to cos 0.987 and a 25% resize of one photo as low as 0.84.
`DEFAULT_THRESHOLD` is fitted by bench/dedupe_fit.py on real variants (resize 25-50%, JPEG q40-70, crop <= 10%,
burst-like shifts) against distinct same-class photos, on its dev split, and reported on the held-out split.
A result without a visual vector (an older index not upgraded yet) is never folded: no fold beats a wrong one.
A collection with no visual vectors at all (`--no-visual-vectors`) folds by the text-aligned vectors at
`SEMANTIC_THRESHOLD`, the rule from before the visual vector, which does fold some distinct photos.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.75  # visual-vector cosine; fitted in bench/dedupe_fit.py (see its table)
SEMANTIC_THRESHOLD = 0.97  # text-aligned cosine, for collections without visual vectors


def collapse(vectors: Sequence[np.ndarray | None] | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> list[list[int]]:
    """Groups of row indices (rows in rank order); each group's first index is the one to show. A row that is
    None has no vector to compare: it is a group of its own and never absorbs another."""
    order: list[int] = []  # group heads, in rank order
    heads: list[int] = []  # heads that have a vector, aligned with `head_vectors`
    head_vectors: list[np.ndarray] = []
    groups: dict[int, list[int]] = {}
    for i, vector in enumerate(vectors):
        if vector is not None and head_vectors:
            sims = np.stack(head_vectors) @ vector  # (K,)
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                groups[heads[best]].append(i)
                continue
        order.append(i)
        groups[i] = [i]
        if vector is not None:
            heads.append(i)
            head_vectors.append(vector)
    return [groups[k] for k in order]
