"""One ranking from two: the semantic ranking (cosine) and the words ranking (BM25), by reciprocal-rank fusion.

RRF (Cormack, Clarke & Büttcher, SIGIR 2009) adds `weight / (k + rank)` over the lists a photo appears in. It needs
no score calibration between cosine and BM25, and when the words ranking is empty the fused order *is* the semantic
order, so a query whose words appear nowhere gets exactly the semantic results. `WORDS_WEIGHT` is the words list's
weight relative to the semantic one, fitted on the photoset's dev split by `python -m bench.hybrid` (held-out
numbers in README.md); k = 60 is the paper's constant.
"""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60.0
WORDS_WEIGHT = 2.0  # bench.hybrid: fitted on the photoset dev half (best hybrid R@5 of 0.25…4); README


def fuse(semantic: Sequence[str], words: Sequence[str], *, words_weight: float = WORDS_WEIGHT,
         k: float = RRF_K) -> list[str]:
    """Ids of both rankings in fused order; ties keep the semantic order, then the words order."""
    score: dict[str, float] = {}
    for ranking, weight in ((semantic, 1.0), (words, words_weight)):
        for rank, item in enumerate(ranking, start=1):
            score[item] = score.get(item, 0.0) + weight / (k + rank)
    first: dict[str, int] = {}
    for item in [*semantic, *words]:
        first.setdefault(item, len(first))
    return sorted(score, key=lambda item: (-score[item], first[item]))
