"""Scores people can trust: is this photo a good match, a possible one, or just the least bad one?

The decision itself lives in `models.relevance` (a scale-free statistic with two fitted tiers, the same code the
fit in `python -m models.evaluate calibrate` measures); this module feeds it what only a search knows: a sample of
the user's library, the model's reference photos (embedded once per image tower through the backend, so also
through a running owner, and cached in the data home), the library's size (best-of-n), and whether the query is a
text or an image. The CLI, `--json`, the owner API and the UI's search, similar and detail views all read the one
`Decision` this returns; nothing here reorders results.

History: the first rule flagged z ≥ 3 over the library's scores; on held-out photos that flagged the best of ~500
unrelated photos about half the time (issue 11), and said "no good match" to "a cat" in a 20-photo library with 5
cats. The statistic now uses a robust spread, the reference set and a best-of-n allowance, fitted for precision.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.relevance import GOOD, POSSIBLE, WEAK, Constants, excess

log = logging.getLogger(__name__)
TIERS = (GOOD, POSSIBLE, WEAK)


@dataclass(frozen=True)
class Decision:
    """Per result, in rank order: its tier, a calibrated 0..1 (0.5 at the good threshold) and `relevant`."""

    tiers: list[str]
    calibrated: np.ndarray  # (N,)
    excess: np.ndarray  # (N,) the statistic, for reports

    @property
    def relevant(self) -> list[bool]:
        return [tier == GOOD for tier in self.tiers]


@dataclass(frozen=True, eq=False)
class Calibrator:
    library_sample: np.ndarray  # (S, D) unit vectors sampled from the collection (may be empty)
    reference: np.ndarray  # (R, D) the model's reference photos (may be empty)
    library_size: int
    constants: Constants

    def decide(self, query: np.ndarray, scores: np.ndarray, kind: str = "text") -> Decision:
        """`kind` is 'text' or 'image' (queries made only of images: "more like this", uploads)."""
        background = np.concatenate([self.library_sample @ query, self.reference @ query]) \
            if len(self.reference) else self.library_sample @ query
        values = excess(scores, background, max(self.library_size, len(scores)))
        thresholds = self.constants.thresholds(kind)
        return Decision([thresholds.tier(float(v)) for v in values], thresholds.calibrated(values), values)


def reference_vectors(files: list, encode: Callable[[bytes], np.ndarray], dim: int,
                      encode_many: Callable[[list[bytes]], np.ndarray] | None = None) -> np.ndarray:
    """(R, D) vectors of the reference photos; one that fails to encode is skipped (logged), never fatal.
    `encode_many` (a local backend's batched path) is tried first; photo by photo is the fallback."""
    if encode_many is not None:
        try:
            return np.asarray(encode_many([path.read_bytes() for path in files]), np.float32)
        except Exception as err:  # one bad file or a device error: go photo by photo
            log.info("batched reference embedding failed (%s); one photo at a time", err)
    rows = []
    for path in files:
        try:
            rows.append(np.asarray(encode(path.read_bytes()), np.float32))
        except Exception as err:  # a decoder or an owner error: the library sample still works alone
            log.warning("reference photo %s not embedded: %s", path.name, err)
    return np.stack(rows) if rows else np.zeros((0, dim), np.float32)


def reference_key(files: list) -> str:
    """Changes when the shipped reference photos change (a new release), so a cached matrix is rebuilt."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()[:12]
