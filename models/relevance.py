"""Is this photo a *good* match, a *possible* one, or just the least bad? The statistic, its constants, their fit.

The statistic is scale-free, so the same code serves offline-lite, the LiT presets and custom models:

    excess = (score − median_B) / spread_B − √(2 ln N)

- B, the *background*, is the query's scores on a sample of the user's library joined with a fixed per-model
  *reference set* of photos (models/data/reference/, embedded once per image tower and cached). The library alone
  fails on small or one-subject libraries (20 photos with 5 cats: the cats are the median); the reference set alone
  ignores what the library holds. Median and 1.4826·MAD rather than mean and standard deviation: the photos that
  match are the outliers, and must not widen the spread they are measured against.
- √(2 ln N) is where the best of N unrelated photos lands on a normal scale (N = photos in the library): a library
  of 50 000 photos always holds one lucky photo about 4.6 spreads up; one of 20 photos, 2.4. Without it a threshold
  fitted on a 200-photo set flags nonsense in every large library.

Two tiers, each a threshold on `excess` fitted on a dev split (`fit`), never on the held-out one:
- **good** (precision first: what `relevant` means): the lowest threshold where, on dev, at least
  `GOOD_PRECISION` of the flagged top-10 results show the query's subject and at most `NONSENSE_RATE` of
  absent-concept queries flag anything;
- **possible**: the lowest threshold where at least `POSSIBLE_PRECISION` of flagged results are right; the rest is
  not shown by default.
Image queries ("more like this", uploads) have their own pairs of thresholds: image↔image scores follow other laws
(offline-lite puts unrelated photos at cosine 0.9). `visual` is fitted in the space the engine ranks such queries in
when a collection has visual vectors (the query reweighted by models.visual.like_vector, the library's visual
sample as background); `image` in the text-aligned space, for collections without them.

Text queries are embedded with `query_prompts` (prompt ensembling for short queries) here and in the search engine,
so the fit measures exactly what a search computes. Nothing here reorders results: a decision is per score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ENSEMBLE_TEMPLATES = ("{}", "a photo of {}", "a picture of {}")  # prompt ensembling for short queries
SHORT_QUERY_WORDS = 3
GOOD, POSSIBLE, WEAK = "good", "possible", "weak"
GOOD_PRECISION = 0.6  # fit targets (on dev): share of flagged top-10 results that show the query's subject
POSSIBLE_PRECISION = 0.3
NONSENSE_RATE = 0.05  # at most this share of absent-concept queries may get a good match
TOP = 10  # results per query that the fit judges (what a first screen shows)
POSSIBLE_CALIBRATED = 0.2  # `calibrated` at the possible threshold (0.5 at the good one)
MIN_BACKGROUND = 8  # fewer background scores than this cannot be standardised on: nothing is "good"
SHIPPED_DIR = Path(__file__).parent / "data" / "relevance"
REFERENCE_DIR = Path(__file__).parent / "data" / "reference"
FORMAT = "loupe-relevance-1"


def query_prompts(text: str) -> list[str]:
    """The prompts a text query is embedded as (their mean vector, renormalised): CLIP's prompt ensembling for
    queries of up to SHORT_QUERY_WORDS words, the text alone for longer ones."""
    if len(text.split()) <= SHORT_QUERY_WORDS:
        return [template.format(text) for template in ENSEMBLE_TEMPLATES]
    return [text]


def encode_queries(encode_texts: Callable[[list[str]], object], texts: Sequence[str]) -> np.ndarray:
    """(Q, D) unit query vectors, each the normalised mean of its `query_prompts`."""
    rows = []
    for text in texts:
        vectors = _matrix(encode_texts(query_prompts(text)))
        rows.append(_unit(vectors.mean(axis=0)))
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class Thresholds:
    good: float
    possible: float

    def tier(self, excess: float) -> str:
        return GOOD if excess >= self.good else POSSIBLE if excess >= self.possible else WEAK

    def calibrated(self, excess: np.ndarray) -> np.ndarray:
        """0..1, monotone in `excess`: 0.5 at the good threshold, POSSIBLE_CALIBRATED at the possible one."""
        gap = max(self.good - self.possible, 1e-3)
        slope = math.log((1 - POSSIBLE_CALIBRATED) / POSSIBLE_CALIBRATED) / gap
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-slope * (np.asarray(excess, np.float64) - self.good)))


@dataclass(frozen=True)
class Constants:
    """Fitted thresholds for one model, with what they were fitted on (so a report can name its evidence)."""

    text: Thresholds
    image: Thresholds  # image queries ranked in the text-aligned space (a collection without visual vectors)
    visual: Thresholds | None = None  # image queries ranked by visual vectors ("more like this"); None: `image`
    model: str = ""  # preset name or saved-model folder
    image_tower_id: str = ""
    text_tower: str = ""  # text-tower version the text thresholds were fitted with ('' = the preset's own)
    fitted_on: str = ""  # data set (dev split) and its size
    report: dict = field(default_factory=dict)  # dev figures at the chosen thresholds

    def thresholds(self, kind: str) -> Thresholds:
        """'text', 'image' (text-aligned space) or 'visual' (visual vectors, reweighted by models.visual.like_vector;
        constants fitted before that space had its own fall back on 'image')."""
        if kind == "visual":
            return self.visual or self.image
        return self.image if kind == "image" else self.text

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Constants:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a relevance constants file (format {data.get('format')!r})")
        data.pop("format")
        visual = data.pop("visual", None)
        return cls(text=Thresholds(**data.pop("text")), image=Thresholds(**data.pop("image")),
                   visual=Thresholds(**visual) if visual else None, **data)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path


def constants_path(home: Path, image_tower_id: str) -> Path:
    """Where `python -m models.evaluate calibrate` stores constants fitted for one image tower in a data home."""
    return home / "calibration" / f"relevance-{_safe(image_tower_id)}.json"


def load_constants(model: str, image_tower_id: str, home: Path | None = None) -> Constants:
    """Constants for this index: fitted in the data home for its image tower if any, else the ones shipped for the
    preset, else offline-lite's (the statistic is scale-free; refit with `models.evaluate calibrate` to be sure)."""
    candidates = []
    if home is not None:
        candidates.append(constants_path(home, image_tower_id))
    candidates += [SHIPPED_DIR / f"{_safe(model)}.json", SHIPPED_DIR / "offline-lite.json"]
    for path in candidates:
        try:
            return Constants.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return Constants(Thresholds(2.0, 0.0), Thresholds(2.0, 0.0), fitted_on="built-in fallback")


# -- the statistic ---------------------------------------------------------------------------------------------


def excess(scores: np.ndarray, background: np.ndarray, library_size: int) -> np.ndarray:
    """(N,) robust z of `scores` over the `background` scores (same query), minus the best-of-n allowance
    √(2 ln library_size). −inf when the background is too small to judge."""
    scores = np.asarray(scores, np.float64)
    background = np.asarray(background, np.float64)
    if background.size < MIN_BACKGROUND:
        return np.full(scores.shape, -np.inf)
    median = float(np.median(background))
    spread = max(1.4826 * float(np.median(np.abs(background - median))), 1e-6)
    return (scores - median) / spread - math.sqrt(2.0 * math.log(max(library_size, 2)))


def decide(scores: np.ndarray, background: np.ndarray, library_size: int, thresholds: Thresholds
           ) -> tuple[list[str], np.ndarray]:
    """(tier per score, calibrated 0..1 per score)."""
    values = excess(scores, background, library_size)
    return [thresholds.tier(float(v)) for v in values], thresholds.calibrated(values)


# -- fitting ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """The top results of many queries on simulated libraries: excess per result, whether it is right, and for
    each query whether it is an absent concept (nothing right exists) — what thresholds are chosen on."""

    excess: np.ndarray  # (R,) every judged result
    right: np.ndarray  # (R,) bool
    query: np.ndarray  # (R,) query index of each result
    absent: np.ndarray  # (Q,) bool, per query

    def at(self, threshold: float) -> dict:
        flagged = self.excess >= threshold
        present = ~self.absent[self.query]
        hit = flagged & present
        queries_flagging = np.zeros(len(self.absent), bool)
        queries_flagging[self.query[flagged]] = True
        n_absent = int(self.absent.sum())
        return {"threshold": round(float(threshold), 4), "flagged": int(hit.sum()),
                "precision": float(self.right[hit].mean()) if hit.any() else None,  # (JSON has no NaN)
                "recall": float(self.right[hit].sum() / max(self.right[present].sum(), 1)),
                "nonsense_flagged": float(queries_flagging[self.absent].mean()) if n_absent else 0.0}

    def lowest(self, precision: float, nonsense_rate: float = 1.0) -> float:
        """The lowest threshold meeting both targets (fewest right answers lost); the highest excess seen + 0.01
        when none does (nothing is flagged: honest, and visible in the report)."""
        candidates = np.unique(self.excess[np.isfinite(self.excess)])
        for t in candidates:
            figures = self.at(float(t))
            if figures["nonsense_flagged"] > nonsense_rate:
                continue
            if figures["flagged"] and figures["precision"] >= precision:
                # the precision of a threshold is noisy at the very top; require it to hold from here up
                higher = [self.at(float(u)) for u in candidates[candidates > t][:: max(len(candidates) // 50, 1)]]
                if all(h["flagged"] == 0 or h["precision"] >= precision * 0.9 for h in higher):
                    return float(t)
        return float(candidates.max() + 0.01) if candidates.size else 0.0


def judge(library: np.ndarray, labels: Sequence[str], queries: np.ndarray, query_labels: Sequence[str | None],
          reference: np.ndarray, *, exclude: Sequence[int | None] | None = None, sizes: Sequence[int] = (0, 20),
          seed: int = 0) -> Judged:
    """Each query against the whole `library` (size 0 = all) and against random sub-libraries of the other sizes
    (holding the query's right photos when it has any): so thresholds see both a full library and a tiny one.

    `labels[i]` is photo i's subject; a result is right when it equals the query's label; a query whose label is
    None or held by no photo is an absent concept. `exclude[q]` is a photo left out of query q's library (the query
    photo itself, for image queries)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, object)
    rows_excess, rows_right, rows_query, absent = [], [], [], []
    q_index = 0
    for q, vector in enumerate(queries):
        label = query_labels[q]
        pool = np.arange(len(library))
        if exclude is not None and exclude[q] is not None:
            pool = pool[pool != exclude[q]]
        matches = pool[labels[pool] == label] if label is not None else pool[:0]
        for size in sizes:
            chosen = pool
            if size and size < len(pool):
                own = matches[:max(1, size // 4)]
                rest = rng.choice(np.setdiff1d(pool, own), size - len(own), replace=False)
                chosen = np.concatenate([own, rest])
            scores = library[chosen] @ vector
            background = np.concatenate([scores, reference @ vector]) if len(reference) else scores
            values = excess(scores, background, len(chosen))
            top = np.argsort(-scores, kind="stable")[:TOP]
            rows_excess.append(values[top])
            rows_right.append(labels[chosen[top]] == label)
            rows_query.append(np.full(len(top), q_index))
            absent.append(len(matches) == 0)
            q_index += 1
    return Judged(np.concatenate(rows_excess), np.concatenate(rows_right).astype(bool), np.concatenate(rows_query),
                  np.asarray(absent, bool))


def fit_thresholds(judged: Judged) -> tuple[Thresholds, dict]:
    good = judged.lowest(GOOD_PRECISION, NONSENSE_RATE)
    possible = min(judged.lowest(POSSIBLE_PRECISION), good)
    return Thresholds(round(good, 4), round(possible, 4)), {"good": judged.at(good), "possible": judged.at(possible)}


def fit(images: np.ndarray, labels: Sequence[str], text_queries: np.ndarray, text_labels: Sequence[str | None],
        reference: np.ndarray, visual: np.ndarray | None = None, **meta) -> Constants:
    """Constants from a captioned dev set: `images` (N, D) with a subject label each, caption query vectors with
    their subject (None for absent-concept queries), the model's reference-set vectors, and the photos' visual
    vectors (N, V) when the model has them.

    Image queries: every photo queries the others; photos whose subject no other photo shares act as the absent
    concept (any neighbour flagged good is wrong). In the visual space the query is reweighted as the engine does
    (`models.visual.like_vector`) and there is no reference set (the engine's visual background is the library's
    visual sample alone)."""
    text_judged = judge(images, labels, text_queries, text_labels, reference)
    image_judged = judge(images, labels, images, list(labels), reference, exclude=list(range(len(images))))
    text, text_report = fit_thresholds(text_judged)
    image, image_report = fit_thresholds(image_judged)
    report = {"text": text_report, "image": image_report}
    fitted_visual = None
    if visual is not None and len(visual):
        from models.visual import like_vector

        visual = np.asarray(visual, np.float32)
        visual_judged = judge(visual, labels, like_vector(visual), list(labels), np.zeros((0, visual.shape[1])),
                              exclude=list(range(len(visual))))
        fitted_visual, report["visual"] = fit_thresholds(visual_judged)
    return Constants(text, image, visual=fitted_visual, report=report, **meta)


# -- the reference set -----------------------------------------------------------------------------------------


def reference_files() -> list[Path]:
    """The shipped reference photos (small JPEGs of dev-split photos; see models/data/reference/README.md)."""
    return sorted(p for p in REFERENCE_DIR.glob("*.jpg") if p.is_file())


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


def _matrix(vectors: object) -> np.ndarray:
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    matrix = np.asarray(vectors, np.float32)
    return matrix.reshape(1, -1) if matrix.ndim == 1 else matrix


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-8:
        raise ValueError("the query cancels itself out (positive and negative terms are the same)")
    return (vector / norm).astype(np.float32)
