"""Scores people can trust: is this photo a *good* match, or just the least bad one?

A raw cosine means little on its own (its scale differs per model and per query), so each hit gets two references:

* **background prompts** — generic captions ("a photo", "an image of something"). A photo matches a query when the
  query describes it better than a caption that says nothing: p = σ(τ·(s_query − softmax-mean s_background)).
  This is the zero-shot-classification view of LiT/CLIP: the query competes with "nothing in particular".
* **the library** — the query's score distribution over a sample of the library (z-score), so a query that scores
  everything alike (nonsense, or a concept absent from the library) does not flag its top hits as relevant.

A hit is *relevant* when both agree; a query with no relevant hit answers "no good match".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND_PROMPTS = (
    "a photo", "a picture", "an image", "a photo of something", "a photo of an object", "a photo of a thing",
    "a snapshot", "a random photo", "a photo of stuff", "an ordinary photo", "a picture of something", "a scene",
)
TEMPERATURE = 30.0  # τ: score differences of ~0.1 become confident (σ(3) ≈ 0.95) for unit vectors
MIN_PROBABILITY = 0.5  # beats the background prompts
MIN_LIBRARY_Z = 1.5  # stands out from the query's scores across the library


@dataclass(frozen=True)
class Calibrator:
    background: np.ndarray  # (B, D) unit vectors of BACKGROUND_PROMPTS
    library_sample: np.ndarray  # (S, D) unit vectors sampled from the collection (may be empty)

    def probability(self, scores: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """(N,) P(query beats the background) for hits with raw `scores` (N,) and `vectors` (N, D)."""
        bg = vectors @ self.background.T  # (N, B)
        soft_bg = np.log(np.exp(TEMPERATURE * bg).mean(axis=1)) / TEMPERATURE  # (N,) smooth max of background
        return 1.0 / (1.0 + np.exp(-TEMPERATURE * (scores - soft_bg)))

    def library_z(self, query: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(N,) how many standard deviations above the library's typical score for this query."""
        if len(self.library_sample) < 8:
            return np.full(scores.shape, np.inf)  # too small a library to judge: background decides alone
        sample = self.library_sample @ query  # (S,)
        return (scores - sample.mean()) / max(float(sample.std()), 1e-6)

    def relevant(self, probability: np.ndarray, z: np.ndarray) -> np.ndarray:
        return (probability >= MIN_PROBABILITY) & (z >= MIN_LIBRARY_Z)
