"""`SearchEngine`: text → image, image → image, weighted/negative prompts, filters, calibrated scores, paging.

One ranking path: the query terms become one unit vector (weighted sum of positive terms minus negative ones,
rclip-style arithmetic), the vector store ranks by cosine under the payload filter, and the page is calibrated and
de-duplicated from the hits' own vectors. `models.evaluate retrieval` and the UI rank through this same method.

Two spaces (indexer.stores.vectors): a query made of images only ("more like this", uploads) ranks by the *visual*
vector when the collection has one for every photo, because what a photo looks like is what such a query asks for and
the text-aligned space can be too coarse for it (offline-lite's puts unrelated photos at cos 0.9), with its parts
reweighted for neighbours (`models.visual.like_vector`: features over thumbnails) and judged by the `visual`
relevance thresholds fitted in that same space; a query with any text ranks in the text-aligned space.
Near-duplicates are folded by their visual vectors (search.dedupe), so a resized copy folds and a different photo of
the same kind of thing does not. An index whose photos do not all have a visual vector yet (an older index being
upgraded) keeps answering image queries in the text-aligned space.

Words (`mode`): a text query also looks for its words among the words people gave their photos (search.lexical:
folder names, file names, keywords, captions, manual tags) under the same filter, and the two rankings are fused
(search.fusion) before the same scoring, collapse and paging. `mode="semantic"` is the vector ranking alone,
`mode="words"` the words ranking alone. Every result is still judged by its cosine (models.relevance); a photo that
holds every query word is also a good match (a person said so), one holding some of them at least a possible one.
With no word found the fused ranking is the semantic one, so such a query's answer equals semantic mode's.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from indexer.stores.vectors import SEMANTIC, VISUAL, Hit, VectorFilter, point_id
from models.relevance import GOOD, POSSIBLE, load_constants, query_prompts, reference_files
from models.visual import like_vector
from models.visual import split as split_visual
from search.backend import Backend
from search.calibration import Calibrator, reference_key, reference_vectors
from search.dedupe import DEFAULT_RULE, SEMANTIC_THRESHOLD, FoldRule, collapse
from search.fusion import COVERAGE_POWER, MODES, WORDS_WEIGHT, fuse
from search.lexical import WordHit, query_words, search_words
from search.query import Query, QueryError, Term

log = logging.getLogger(__name__)

LIBRARY_SAMPLE = 512
SAMPLE_MAX_AGE = 3600.0  # seconds a cached library sample is trusted (calibration statistics change slowly)
POOL_FACTOR = 3  # candidates fetched per result shown, to refill a page after collapsing duplicates
FUSION_DEPTH = 100  # each ranking is read this deep at least before fusing, so pages within it never disagree


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
    matched: list[str] = field(default_factory=list)  # why, in words: 'folder "Egypt 2019"', 'keyword "Anna"'

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
        self._visual_calibrator: Calibrator | None = None
        self._visual_dim: int | None | bool = False  # False: not looked up yet
        self.words_weight = WORDS_WEIGHT  # the words ranking's weight in the fusion (bench.hybrid fits it on dev)
        self.coverage_power = COVERAGE_POWER  # how much holding only some query words counts less (fitted too)

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
        vector, _, digest = self.image_vectors(path, data, need_visual=False)
        return vector, digest

    def image_vectors(self, path: Path | None = None, data: bytes | None = None,
                      need_visual: bool = True) -> tuple[np.ndarray, np.ndarray | None, str]:
        """(text-aligned (D,), visual (V,) or None, content hash) of an image. An indexed photo costs no model call
        (its stored vectors are read back, unless `need_visual` and it has no visual one yet); any other image takes
        one forward pass for both."""
        from indexer.scan.hashing import content_hash

        raw = data if data is not None else Path(path).expanduser().read_bytes()
        digest = content_hash(raw)
        found = self.backend.store.retrieve(self.collection, [point_id(digest)], with_vectors=True)
        if found and found[0].vector is not None and (
                found[0].visual is not None or not need_visual or not self.visual_dim):
            point = found[0]
            visual = None if point.visual is None else np.asarray(point.visual, np.float32)
            return np.asarray(point.vector, np.float32), visual, digest
        vector, visual = self.backend.encode_image_both(data=raw)
        if visual is not None and self.visual_dim and len(visual) != self.visual_dim:
            visual = None  # a serving model whose tower is not the collection's: its visual space differs
        return vector, visual, digest

    @property
    def visual_dim(self) -> int | None:
        """Size of the collection's visual vector, None when it has none (read once per engine)."""
        if self._visual_dim is False:
            self._visual_dim = self.backend.store.vector_dims(self.collection).get(VISUAL)
        return self._visual_dim

    def visual_complete(self) -> bool:
        """True when every photo of the collection has its visual vector (an upgrade may still be filling them)."""
        if not self.visual_dim:
            return False
        return self.backend.store.count(self.collection, VectorFilter(has_visual=False)) == 0

    def visual_query_vector(self, query: Query) -> tuple[np.ndarray, tuple[str, ...]] | None:
        """The query in the visual space when it is made of images only and every photo has a visual vector;
        None otherwise (the query then runs in the text-aligned space)."""
        if any(term.image is None for term in query.terms) or not self.visual_complete():
            return None
        total, exclude = None, []
        for term in query.terms:
            _, visual, digest = self.image_vectors(term.image)
            if visual is None:
                return None
            if term.weight > 0:
                exclude.append(digest)  # "more like this" should not answer with this very photo
            total = term.weight * visual if total is None else total + term.weight * visual
        return _unit(total), tuple(exclude)

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
               duplicates: FoldRule = DEFAULT_RULE, mode: str = "hybrid") -> SearchPage:
        """A page of results. `min_score=None` keeps good and possible matches (each result says which);
        a number keeps calibrated ≥ it (0 = the closest photos, whatever they are). `mode` is one of `MODES`.

        `duplicates` is the near-duplicate rule on visual vectors; a collection without them folds by the
        text-aligned vectors at `SEMANTIC_THRESHOLD`."""
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
        visual = self.visual_query_vector(query)
        using = VISUAL if visual is not None else SEMANTIC
        near_query = None  # the raw visual query: what the fold rule compares (ranking reweights its parts)
        if visual is not None:
            near_query, exclude = visual
            vector = like_vector(near_query)
        else:
            vector, exclude = self.query_vector(query)
        flt = _with_exclusions(filter, exclude)
        pool = (offset + limit) * (POOL_FACTOR if collapse_duplicates else 1)
        wanted = query_words(t.text for t in query.positive if t.text is not None) if mode != "semantic" else []
        depth = max(pool, FUSION_DEPTH)  # fused ranks depend on how deep each list goes: read both to a fixed depth
        found = {h.id: h for h in search_words(self.backend.store, self.collection, wanted, flt, depth)}
        depth = depth if found else pool  # no word found: exactly the semantic query
        hits = [] if mode == "words" else self.backend.store.query(self.collection, vector, limit=depth, filter=flt,
                                                                    using=using)
        if found:
            hits = self._fused(vector, hits, list(found.values()), using, frozenset(wanted))
        kind = VISUAL if using == VISUAL else "image" if all(t.image is not None for t in query.positive) else "text"
        scored = self._score(vector, hits, using, kind, found, frozenset(wanted), near_query)  # [(result, fold vector)]
        any_relevant = any(r.relevant for r, _ in scored)
        rule = duplicates if self.visual_dim else SEMANTIC_THRESHOLD
        groups = collapse([v for _, v in scored], rule) if collapse_duplicates else [[i] for i in range(len(scored))]
        results = _shown(scored, groups, min_score)
        return SearchPage(query.describe(), results[offset:offset + limit], not any_relevant, offset, limit)

    def _fused(self, query: np.ndarray, hits: list[Hit], found: list[WordHit], using: str,
               wanted: frozenset[str]) -> list[Hit]:
        """The semantic hits and the word hits in fused order, each with its cosine to the query (read from its
        stored vector for a photo only the words found)."""
        cosine = {h.id: h.score for h in hits}
        missing = [h.id for h in found if h.id not in cosine]
        for point in self.backend.store.retrieve(self.collection, missing, with_vectors=True) if missing else []:
            vector = point.visual if using == VISUAL else point.vector
            if vector is not None:
                cosine[str(point.id)] = float(np.dot(np.asarray(vector, np.float32), query))
        payloads = {**{h.id: h.payload for h in found}, **{h.id: h.payload for h in hits}}
        coverage = {h.id: len(h.words) / max(len(wanted), 1) for h in found}
        order = fuse([h.id for h in hits], [h.id for h in found], words_weight=self.words_weight, coverage=coverage,
                     coverage_power=self.coverage_power)
        return [Hit(i, cosine[i], payloads[i]) for i in order if i in cosine]

    def _score(self, query: np.ndarray, hits: list[Hit], using: str = SEMANTIC, kind: str = "text",
               word_hits: dict[str, WordHit] | None = None,
               wanted: frozenset[str] = frozenset(), near_query: np.ndarray | None = None
               ) -> list[tuple[SearchResult, np.ndarray | None]]:
        """Results with the vector each is folded by: its visual one when the collection has them (None for a
        photo still without one: it is never folded), else its text-aligned one. `word_hits`: the photos the query's
        words matched (`wanted`): each says why, and is at least a possible match (a good one holding them all)."""
        if not hits:
            return []
        points = self.backend.store.retrieve(self.collection, [h.id for h in hits], with_vectors=True)
        found = {p.id: p for p in points}
        hits = [h for h in hits if h.id in found and found[h.id].vector is not None]
        scores = np.array([h.score for h in hits], np.float32)
        decision = self.calibrator(using).decide(query, scores, kind)
        tiers = list(decision.tiers)
        probability = np.asarray(decision.calibrated, np.float32)
        visual = bool(self.visual_dim)
        folds = [found[h.id].visual if visual else found[h.id].vector for h in hits]
        if near_query is not None and hits and all(f is not None for f in folds):
            # A near-duplicate of the query image is a good match whatever the library looks like: the fold rule's
            # verdict (fitted for zero distinct photos folded, bench/dedupe_fit.py) needs no library statistics, and
            # a small library full of one photo's copies is exactly where a library z-score cannot tell.
            near = DEFAULT_RULE.matches(split_visual(near_query), split_visual(np.stack(folds)))
            tiers = [GOOD if n else t for t, n in zip(tiers, near, strict=True)]
            probability = np.where(near, np.maximum(probability, 0.5), probability)
        word_hits = word_hits or {}
        probability = np.array(probability, np.float32)  # a copy: word matches raise some entries
        for i, hit in enumerate(hits):
            word_hit = word_hits.get(hit.id)
            if word_hit is not None and tiers[i] != GOOD:
                tiers[i] = GOOD if word_hit.words >= wanted else POSSIBLE
                probability[i] = max(float(probability[i]), 0.5 if tiers[i] == GOOD else 0.2)
        rows = zip(hits, probability, tiers, folds, strict=True)
        return [(self._result(h, float(p), t, word_hits[h.id].matched if h.id in word_hits else []),
                 None if v is None else np.asarray(v, np.float32)) for h, p, t, v in rows]

    def calibrator(self, using: str = SEMANTIC) -> Calibrator:
        """A sample of the library's vectors (cached in the data home for an hour, so a CLI query through the owner
        does not pull 2 MB of vectors over its API every time), the model's reference photos (embedded once per
        collection, cached), the library's size and the relevance constants of this model. Image queries that rank
        in the visual space (`using=VISUAL`) are judged against a visual sample of the library (no reference set:
        the shipped reference photos are embedded in the text-aligned space)."""
        current = self._visual_calibrator if using == VISUAL else self._calibrator
        if current is None:
            kind = "visual-" if using == VISUAL else ""
            cache = self.backend.home / "cache" / f"library-sample-{kind}{self.collection}.npy"
            matrix = _fresh_sample(cache)
            if matrix is None:
                matrix = self._read_sample(using)
                _save_sample(cache, matrix)
            ref = self.backend.collection
            constants = load_constants(ref.model, ref.image_tower_id, self.backend.home)
            size = self.backend.store.count(self.collection)
            reference = self.reference() if using == SEMANTIC else np.zeros((0, matrix.shape[1]), np.float32)
            current = Calibrator(matrix, reference, size, constants)
            if using == VISUAL:
                self._visual_calibrator = current
            else:
                self._calibrator = current
        return current

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

    def _read_sample(self, using: str = SEMANTIC) -> np.ndarray:
        sample = []
        flt = VectorFilter(has_visual=True) if using == VISUAL else None
        for point in self.backend.store.scroll(self.collection, flt, with_vectors=True):
            vector = point.visual if using == VISUAL else point.vector
            if vector is not None:
                sample.append(vector)
            if len(sample) >= LIBRARY_SAMPLE:
                break
        dim = (self.visual_dim or 0) if using == VISUAL else self.backend.collection.dim
        return np.stack(sample).astype(np.float32) if sample else np.zeros((0, dim), np.float32)

    def _result(self, hit: Hit, probability: float, tier: str, matched: list[str] | None = None) -> SearchResult:
        payload = hit.payload
        digest = payload.get("content_hash", "")
        paths = list(payload.get("paths", []))
        return SearchResult(
            path=paths[0] if paths else "", paths=paths, score=float(hit.score), calibrated=probability,
            relevant=tier == GOOD, tier=tier, content_hash=digest, thumbnail=self._thumbnail(digest),
            taken_at=_iso(payload.get("taken_at")), tags=list(payload.get("tags", [])),
            width=payload.get("width"), height=payload.get("height"), camera=payload.get("camera"),
            matched=list(matched or []),
        )

    def _thumbnail(self, digest: str) -> str | None:
        if not digest:
            return None
        path = self.thumbnails_dir / digest[:2] / f"{digest}.jpg"
        return str(path) if path.exists() else None


TIER_ORDER = {GOOD: 0, POSSIBLE: 1}  # a folded family takes its best member's tier


def _shown(scored: list[tuple[SearchResult, np.ndarray | None]], groups: list[list[int]],
           min_score: float | None) -> list[SearchResult]:
    """One result per group of near-duplicates (its best-ranked member, the others' paths as `duplicates`), kept
    when any member passes: a good or possible match (`min_score=None`) or calibrated >= min_score. Folding before
    filtering keeps a family together whichever copy the query happens to match best."""
    out = []
    for group in groups:
        members = [scored[i][0] for i in group]
        passing = [m.tier in (GOOD, POSSIBLE) if min_score is None else m.calibrated >= min_score for m in members]
        if not any(passing):
            continue
        head = members[0]
        twins = [p for m in members[1:] for p in m.paths]
        if twins:
            best = min(members, key=lambda m: TIER_ORDER.get(m.tier, len(TIER_ORDER))).tier
            head = SearchResult(**{**head.__dict__, "duplicates": twins, "relevant": best == GOOD, "tier": best,
                                   "calibrated": max(m.calibrated for m in members)})
        out.append(head)
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
        raise QueryError("the query cancels itself out (positive and negative terms are the same)")
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
