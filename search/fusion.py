"""One ranking from two: the semantic ranking (cosine) and the words ranking (BM25), by reciprocal-rank fusion.

RRF (Cormack, Clarke & Büttcher, SIGIR 2009) adds `weight / (k + rank)` over the lists a photo appears in. It needs
no score calibration between cosine and BM25, and when the words ranking is empty the fused order *is* the semantic
order, so a query whose words appear nowhere gets exactly the semantic results. `WORDS_WEIGHT` is the words list's
weight relative to the semantic one, and a photo's words-list contribution is further scaled by the share of the
query's words it holds to the power `COVERAGE_POWER` (so "red car" finding a keyword "red pyramid" weighs less
than a photo holding both words); both are fitted on the photoset's dev split by `python -m bench.hybrid`
(held-out numbers in README.md); k = 60 is the paper's constant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MODES = ("hybrid", "semantic", "words")  # what ranks a text query: both fused, the vector alone, the words alone
RRF_K = 60.0
WORDS_WEIGHT = 4.0  # bench.hybrid: fitted on the photoset dev half (best hybrid R@5, then R@1, over a grid); README
COVERAGE_POWER = 1.0  # bench.hybrid: fitted with WORDS_WEIGHT


def fuse(semantic: Sequence[str], words: Sequence[str], *, words_weight: float = WORDS_WEIGHT,
         coverage: Mapping[str, float] | None = None, coverage_power: float = COVERAGE_POWER,
         k: float = RRF_K) -> list[str]:
    """Ids of both rankings in fused order; ties keep the semantic order, then the words order. `coverage`: share
    of the query's words each photo of the words ranking holds (1 when not given)."""
    coverage = coverage or {}
    score: dict[str, float] = {}
    for rank, item in enumerate(semantic, start=1):
        score[item] = score.get(item, 0.0) + 1.0 / (k + rank)
    for rank, item in enumerate(words, start=1):
        share = coverage.get(item, 1.0) ** coverage_power
        score[item] = score.get(item, 0.0) + words_weight * share / (k + rank)
    first: dict[str, int] = {}
    for item in [*semantic, *words]:
        first.setdefault(item, len(first))
    return sorted(score, key=lambda item: (-score[item], first[item]))
