"""Near-duplicate collapse: bursts, re-encodes and resized copies show up once, with their twins attached.

Greedy in rank order: a hit that is a near-duplicate of a better hit already kept is folded into it (the most
similar such hit). Identical files never get here (they share one point); this is for *different* bytes of the same
picture.

The test reads the photos' *visual* vectors (models.visual: pooled backbone features + two coarse thumbnails),
because a text-aligned space is too coarse to tell a re-encode from a different photo of the same kind of thing:
offline-lite's puts distinct same-class photos at up to cos 0.995 and a 25% resize of one photo as low as 0.84.
`FoldRule` says when two photos are one picture: their 8x8 thumbnails agree (a resize or re-encode leaves them at
cos >= 0.99), or their features and 4x4 layout both agree (a crop, a burst shot). Its constants are fitted by
bench/dedupe_fit.py on the photo set's dev families (resize 25-50%, JPEG q40-70, crop 4-10%, burst-like shots)
against its dev distinct same-class pairs, and reported on the held-out side.

A result without a visual vector (an older index not upgraded yet) is never folded: no fold beats a wrong one. A
collection with no visual vectors at all (`--no-visual-vectors`) folds by the text-aligned vectors at
`SEMANTIC_THRESHOLD`, the rule from before the visual vector, which does fold some distinct photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.visual import split

SEMANTIC_THRESHOLD = 0.97  # text-aligned cosine, for collections without visual vectors


@dataclass(frozen=True)
class FoldRule:
    """Near-duplicates: `fine` cosine >= fine, or both `features` >= features and `layout` >= layout."""

    fine: float
    features: float
    layout: float

    def matches(self, parts: dict[str, np.ndarray], heads: dict[str, np.ndarray]) -> np.ndarray:
        """(K,) bool: is the photo with `parts` a near-duplicate of each of the K heads (parts stacked)?"""
        sims = {name: heads[name] @ parts[name] for name in ("fine", "features", "layout")}
        return (sims["fine"] >= self.fine) | ((sims["features"] >= self.features) & (sims["layout"] >= self.layout))


# Fitted by `python -m bench.dedupe_fit` (offline-lite image space 3, photo set v2 seed 0, dev side: 18/20 families,
# 0/604 distinct pairs; held-out: 20/20, 5/560). Image space 2 (center crop) fitted fine=0.97, features=0.82,
# layout=0.86 (dev 20/20, 0/604; held-out 20/20, 6/560, all six between Stellarium star-cluster photos).
DEFAULT_RULE = FoldRule(fine=0.976, features=0.85, layout=0.9)


def collapse(vectors: Sequence[np.ndarray | None] | np.ndarray,
             rule: FoldRule | float = DEFAULT_RULE) -> list[list[int]]:
    """Groups of row indices (rows in rank order); each group's first index is the one to show.

    A row joins the group holding a near-duplicate of it (any member, not only the shown one: which copy of a
    photo ranks first depends on the query, the grouping should not). A row that is a near-duplicate of members of
    several groups links them, and they become one (single linkage): a crop that matched none of the copies ranked
    after it started a group of its own, and the original that matches both would otherwise leave the family shown
    twice. (So a row deep in the candidates can merge two groups an earlier, shallower page showed apart, and the
    next page's results then start one later; a member that passes only deeper could already do the same.)

    `rule` is a `FoldRule` over visual vectors, or a plain cosine threshold (text-aligned vectors). A row that is
    None has no vector to compare: it is a group of its own and never absorbs another."""
    order: list[int] = []  # group heads, in rank order
    member_vectors: list[np.ndarray] = []  # rows with a vector seen so far, aligned with `member_group`
    member_group: list[int] = []
    groups: dict[int, list[int]] = {}
    for i, vector in enumerate(vectors):
        if vector is not None:
            vector = np.asarray(vector, np.float32)
            if member_vectors:
                stacked = np.stack(member_vectors)  # (K, V)
                ok = rule.matches(split(vector), split(stacked)) if isinstance(rule, FoldRule) else \
                    stacked @ vector >= rule
                if ok.any():
                    heads = sorted({member_group[j] for j in np.flatnonzero(ok)})
                    head = heads[0]  # the best-ranked of the linked groups shows them all
                    for other in heads[1:]:
                        groups[head] = sorted(groups[head] + groups.pop(other))
                        order.remove(other)
                        member_group = [head if g == other else g for g in member_group]
                    groups[head].append(i)  # the last row so far: the group stays in rank order
                    member_vectors.append(vector)
                    member_group.append(head)
                    continue
            member_vectors.append(vector)
            member_group.append(i)
        order.append(i)
        groups[i] = [i]
    return [groups[k] for k in order]
