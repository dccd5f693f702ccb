"""Scores people can trust: is this photo a *good* match, or just the least bad one?

A raw cosine means little on its own: its scale differs per model and per query. So each query is calibrated
against the library itself: its scores over a sample of the collection give a typical score and spread, and a hit
counts as relevant when it stands `MIN_LIBRARY_Z` spreads above that. A query that scores everything alike
(nonsense, or a concept the library does not hold) then flags nothing and answers "no good match".

Comparing against generic captions ("a photo", "an image") was tried first and dropped: in offline-lite's space a
specific query is a peaked class distribution and a generic caption a broad one, so the broad caption overlaps every
photo more and the test ran backwards (right photos got P 0.00-0.05, nonsense up to 0.96). The library z-score
separated them on the real-photo dev set: with z ≥ 3, right photos were flagged 21% (dev) / 71% (eval) of the time
against 4% before, and nonsense matched 0/20 (dev) and 3/20 (eval) queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_LIBRARY_Z = 3.0  # chosen on the real-photo dev set (bench/data/dev_captions.tsv), never on the eval set
SLOPE = 2.0  # how fast the calibrated score rises around the threshold: z = 3 → 0.5, z = 4 → 0.88, z = 2 → 0.12
MIN_SAMPLE = 8  # below this a library is too small to judge: every hit counts as relevant


@dataclass(frozen=True)
class Calibrator:
    library_sample: np.ndarray  # (S, D) unit vectors sampled from the collection (may be empty)

    def library_z(self, query: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(N,) how many standard deviations above the library's typical score for this query."""
        if len(self.library_sample) < MIN_SAMPLE:
            return np.full(scores.shape, np.inf)
        sample = self.library_sample @ query  # (S,)
        return (scores - sample.mean()) / max(float(sample.std()), 1e-6)

    def calibrated(self, query: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(N,) in 0..1: a logistic of the library z-score, 0.5 exactly at the relevance threshold."""
        z = self.library_z(query, scores)
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-SLOPE * (z - MIN_LIBRARY_Z)))

    @staticmethod
    def relevant(calibrated: np.ndarray) -> np.ndarray:
        return calibrated >= 0.5
