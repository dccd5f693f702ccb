"""`SearchEngine`: text → image, image → image, weighted/negative prompts, filters, calibrated scores, paging.

One ranking path: the query terms become one unit vector (weighted sum of positive terms minus negative ones,
rclip-style arithmetic), the vector store ranks by cosine under the payload filter, and the page is calibrated and
de-duplicated from the hits' own vectors. `models.evaluate retrieval` and the UI rank through this same method.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from indexer.stores.vectors import Hit, VectorFilter, point_id
from models.relevance import GOOD, POSSIBLE, load_constants, query_prompts, reference_files
from search.backend import Backend
from search.calibration import Calibrator, reference_key, reference_vectors
from search.dedupe import DEFAULT_THRESHOLD, collapse
from search.query import Query, Term

log = logging.getLogger(__name__)

LIBRARY_SAMPLE = 512
SAMPLE_MAX_AGE = 3600.0  # seconds a cached library sample is trusted (calibration statistics change slowly)
POOL_FACTOR = 3  # candidates fetched per result shown, to refill a page after collapsing duplicates


@dataclass(frozen=True)
class SearchResult:
    path: str  # first live path of the content
    paths: list[str]
    score: float  # raw cosine similarity to the query vector
    calibrated: float  # 0..1, 0.5 at the good-match threshold, 0.2 at the possible one (models.relevance)
    relevant: bool  # a good match: the precision-first verdict
    content_hash: str
    thumbnail: str | None
    taken_at: str | None  # ISO 8601
    tags: list[str]
    width: int | None
    height: int | None
    camera: str | None
    duplicates: list[str] = field(default_factory=list)  # near-duplicates folded into this result
    tier: str = GOOD  # 'good' (= relevant), 'possible' (shown, not vouched for) or 'weak' (only with min_score)

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SearchPage:
    query: str
    results: list[SearchResult]
    no_good_match: bool  # nothing is a good match: `results` then holds possible ones, or the closest when asked
    offset: int
    limit: int

    def to_json(self) -> dict:
        return {"query": self.query, "no_good_match": self.no_good_match, "offset": self.offset,
                "limit": self.limit, "results": [r.to_json() for r in self.results]}


class SearchEngine:
    """Loads what it needs once (model or owner connection, background prompts) and answers many queries."""

    def __init__(self, backend: Backend, thumbnails_dir: Path | None = None):
        self.backend = backend
        self.thumbnails_dir = thumbnails_dir or backend.home / "thumbnails"
        self._calibrator: Calibrator | None = None

    @classmethod
    def open(cls, home: Path, **options) -> SearchEngine:
        from search.backend import open_backend

        return cls(open_backend(home, **options))

    def close(self) -> None:
        self.backend.close()

    @property
    def collection(self) -> str:
        return self.backend.collection.name

    # -- vectors -------------------------------------------------------------------------------------------------

    def text_vector(self, text: str) -> np.ndarray:
        """(D,) unit vector; short queries are averaged over a few prompt templates (CLIP's prompt ensembling,
        `models.relevance.query_prompts`: the relevance fit embeds its captions the same way)."""
        vectors = self.backend.encode_texts(query_prompts(text))  # (P, D)
        return _unit(vectors.mean(axis=0))

    def image_vector(self, path: Path | None = None, data: bytes | None = None) -> tuple[np.ndarray, str | None]:
        """(D,) vector of an image and its content hash. A photo already indexed costs no model call."""
        from indexer.scan.hashing import content_hash

        raw = data if data is not None else Path(path).expanduser().read_bytes()
        digest = content_hash(raw)
        found = self.backend.store.retrieve(self.collection, [point_id(digest)], with_vectors=True)
        if found and found[0].vector is not None:
            return np.asarray(found[0].vector, np.float32), digest
        return self.backend.encode_image(data=raw), digest

    def query_vector(self, query: Query) -> tuple[np.ndarray, tuple[str, ...]]:
        """Weighted sum of the terms (negatives subtract), normalised; plus hashes of query images to exclude."""
        total, exclude = None, []
        for term in query.terms:
            vector = self._term_vector(term, exclude)
            total = term.weight * vector if total is None else total + term.weight * vector
        return _unit(total), tuple(exclude)

    def _term_vector(self, term: Term, exclude: list[str]) -> np.ndarray:
        if term.text is not None:
            return self.text_vector(term.text)
        vector, digest = self.image_vector(term.image)
        if digest and term.weight > 0:
            exclude.append(digest)  # "more like this" should not answer with this very photo
        return vector

    # -- search --------------------------------------------------------------------------------------------------

    def search(self, query: Query, *, filter: VectorFilter | None = None, limit: int = 20, offset: int = 0,
               min_score: float | None = None, collapse_duplicates: bool = True,
               duplicate_threshold: float = DEFAULT_THRESHOLD) -> SearchPage:
        """A page of results. `min_score=None` keeps good and possible matches (each result says which);
        a number keeps calibrated ≥ it (0 = the closest photos, whatever they are)."""
        vector, exclude = self.query_vector(query)
        flt = _with_exclusions(filter, exclude)
        pool = (offset + limit) * (POOL_FACTOR if collapse_duplicates else 1)
        hits = self.backend.store.query(self.collection, vector, limit=pool, filter=flt)
        kind = "image" if all(t.image is not None for t in query.positive) else "text"
        scored = self._score(vector, hits, kind)  # [(result, vector)] in rank order
        any_relevant = any(r.relevant for r, _ in scored)
        if min_score is None:
            scored = [(r, v) for r, v in scored if r.tier in (GOOD, POSSIBLE)]
        else:
            scored = [(r, v) for r, v in scored if r.calibrated >= min_score]
        results = _collapsed(scored, duplicate_threshold) if collapse_duplicates else [r for r, _ in scored]
        return SearchPage(query.describe(), results[offset:offset + limit], not any_relevant, offset, limit)

    def _score(self, query: np.ndarray, hits: list[Hit], kind: str = "text"
               ) -> list[tuple[SearchResult, np.ndarray]]:
        if not hits:
            return []
        points = self.backend.store.retrieve(self.collection, [h.id for h in hits], with_vectors=True)
        vectors = {p.id: p.vector for p in points}
        hits = [h for h in hits if vectors.get(h.id) is not None]
        matrix = np.stack([vectors[h.id] for h in hits]).astype(np.float32)  # (N, D)
        scores = np.array([h.score for h in hits], np.float32)
        decision = self.calibrator().decide(query, scores, kind)
        rows = zip(hits, decision.calibrated, decision.tiers, matrix, strict=True)
        return [(self._result(h, float(p), t), v) for h, p, t, v in rows]

    def calibrator(self) -> Calibrator:
        """A sample of the library's vectors (cached in the data home for an hour, so a CLI query through the owner
        does not pull 2 MB of vectors over its API every time), the model's reference photos (embedded once per
        collection, cached), the library's size and the relevance constants of this model."""
        if self._calibrator is None:
            cache = self.backend.home / "cache" / f"library-sample-{self.collection}.npy"
            matrix = _fresh_sample(cache)
            if matrix is None:
                matrix = self._read_sample()
                _save_sample(cache, matrix)
            ref = self.backend.collection
            constants = load_constants(ref.model, ref.image_tower_id, self.backend.home)
            size = self.backend.store.count(self.collection)
            self._calibrator = Calibrator(matrix, self.reference(), size, constants)
        return self._calibrator

    def reference(self) -> np.ndarray:
        """(R, D) the shipped reference photos' vectors for this collection's model: embedded once, then cached."""
        files = reference_files()
        cache = self.backend.home / "cache" / f"reference-{self.collection}-{reference_key(files)}.npy"
        try:
            matrix = np.load(cache)
            if matrix.shape == (len(files), self.backend.collection.dim):
                return matrix.astype(np.float32)
        except (OSError, ValueError):
            pass
        matrix = reference_vectors(files, lambda raw: self.backend.encode_image(data=raw), self.backend.collection.dim,
                                   getattr(self.backend, "encode_images", None))
        if len(matrix) == len(files):
            _save_sample(cache, matrix)
        return matrix

    def _read_sample(self) -> np.ndarray:
        sample = []
        for point in self.backend.store.scroll(self.collection, with_vectors=True):
            sample.append(point.vector)
            if len(sample) >= LIBRARY_SAMPLE:
                break
        dim = self.backend.collection.dim
        return np.stack(sample).astype(np.float32) if sample else np.zeros((0, dim), np.float32)

    def _result(self, hit: Hit, probability: float, tier: str) -> SearchResult:
        payload = hit.payload
        digest = payload.get("content_hash", "")
        paths = list(payload.get("paths", []))
        return SearchResult(
            path=paths[0] if paths else "", paths=paths, score=float(hit.score), calibrated=probability,
            relevant=tier == GOOD, tier=tier, content_hash=digest, thumbnail=self._thumbnail(digest),
            taken_at=_iso(payload.get("taken_at")), tags=list(payload.get("tags", [])),
            width=payload.get("width"), height=payload.get("height"), camera=payload.get("camera"),
        )

    def _thumbnail(self, digest: str) -> str | None:
        if not digest:
            return None
        path = self.thumbnails_dir / digest[:2] / f"{digest}.jpg"
        return str(path) if path.exists() else None


def _collapsed(scored: list[tuple[SearchResult, np.ndarray]], threshold: float) -> list[SearchResult]:
    """Fold near-duplicates into the best-ranked member of their group."""
    if len(scored) < 2:
        return [r for r, _ in scored]
    out = []
    for group in collapse(np.stack([v for _, v in scored]), threshold):
        head = scored[group[0]][0]
        twins = [p for i in group[1:] for p in scored[i][0].paths]
        out.append(SearchResult(**{**head.__dict__, "duplicates": twins}) if twins else head)
    return out


def _fresh_sample(path: Path) -> np.ndarray | None:
    """The cached library sample if it is younger than SAMPLE_MAX_AGE and readable."""
    try:
        if time.time() - path.stat().st_mtime > SAMPLE_MAX_AGE:
            return None
        return np.load(path)
    except (OSError, ValueError):
        return None


def _save_sample(path: Path, matrix: np.ndarray) -> None:
    """Atomic write; a read-only or full data home just means no cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
        np.save(tmp, matrix)
        os.replace(tmp, path)
    except OSError as err:
        log.debug("not caching the library sample: %s", err)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-8:
        raise ValueError("the query cancels itself out (positive and negative terms are the same)")
    return (vector / norm).astype(np.float32)


def _with_exclusions(flt: VectorFilter | None, hashes: tuple[str, ...]) -> VectorFilter | None:
    if not hashes:
        return flt
    base = flt or VectorFilter()
    return VectorFilter(**{**base.__dict__, "exclude_hashes": tuple(base.exclude_hashes) + hashes})


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(float(timestamp), tz=timezone.utc).isoformat()
