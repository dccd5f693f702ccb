"""Zero-shot tagging: a tag vocabulary × prompt templates → a calibrated (T, D) tag matrix → the tags a photo has.

Each tag is the mean of the normalised text vectors of its prompt ensemble (its name and synonyms × templates),
re-normalised — the recipe of CLIP/LiT zero-shot classifiers (`models.zeroshot`), without big_vision's text
canonicalisation: that strips punctuation ("t-shirt" → "tshirt"), which only reproducing LiT's ImageNet numbers
needs, and tags may bring their own prompts.

Calibration. A raw cosine is comparable across photos for one text, not across texts for one photo: with
`offline-lite` (Hellinger space, image temperature 2) the caption "a photo" scores 0.50 on scikit-image's cat while
"cat" scores 0.38, and broad tags ("still life") out-score the right one on every photo. So every score is first
standardised per text over the library being tagged — z = (s − median) / spread, spread = 1.4826·MAD floored at the
vocabulary's median spread (robust: the photos that *have* a tag are the outliers, so median and MAD describe the
ones that don't; the floor stops a rare concept with a tiny spread from calling noise significant). Then each tag
competes, in a two-way softmax, with the generic background prompts standardised the same way, with prior log-odds
−k:  P(tag) = σ(z_tag − k − log-mean-exp z_background).  P ≥ 0.5 means the tag stands k robust standard deviations
above its library median *and* above how generic-caption-like the photo is (flat, ambiguous photos — textures,
diagrams — lift everything a little). Each tag competes with the background only, not with the other tags: "cat",
"pet" and "animal" may all apply. A library under MIN_LIBRARY photos is too small to standardise on: no tags.

Precision first (issue 11: with the z-rule alone 20% of given tags were right on held-out photos, a saw got 16
tags). A `TagPolicy`, fitted per model on a labelled dev set (`fit_policy`; shipped in models/data/tagging/),
sets the cut on P for a target precision (TAG_PRECISION), the most tags a photo gets (a handful), and the tags that
model cannot tell apart on dev (measured per tag: given on dev photos and rarely right), which are not offered by
default. Every writer — `search.tag --write/--xmp`, the indexer's tag-on-arrival, the UI — goes through `assign`,
so nothing below the bar is ever written; summaries count only tags at or above it.

The calibration (per-text medians and spreads) is stored as JSON so tag-on-arrival reuses a collection's last one;
a fingerprint of the tag matrix ties it to the vocabulary *and* the text tower that produced it.
No app I/O here: callers pass `encode_texts` and the library's vectors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

BACKGROUND_PROMPTS = (
    "a photo", "a picture", "an image", "a photo of something", "a photo of an object", "a photo of a thing",
    "a snapshot", "a random photo", "a photo of stuff", "an ordinary photo", "a picture of something", "a scene",
)
# k: robust standard deviations a tag must stand out by. Measured with offline-lite on scikit-image's photos (cat,
# coffee, rocket, horse, motorcycle among textures and micrographs): 6 lets textures pick up look-alike tags
# ("window" on bricks, "street lights" on a clock), 10 loses "horse"; the same k holds at image temperature 1 and 2.
LIBRARY_K = 8.0
MIN_PROBABILITY = 0.5  # default cut on P(tag): k deviations above the median and the background
MIN_LIBRARY = 8  # fewer photos than this cannot be standardised on (8 already separate the scikit-image set)
LIBRARY_SAMPLE = 5000  # vectors used to calibrate (medians and MADs are stable long before)
CALIBRATION_VERSION = 2
CALIBRATION_META_KEY = "tag_thresholds:{}"  # catalog meta key of a collection's last calibration (.format(name))
DEFAULT_VOCABULARY = Path(__file__).parent / "data" / "tags.txt"
# Short, photo-centric: a tag vocabulary is mostly scenes and things in personal photos, and every template costs a
# text-tower call per name (CLIP's 80 ImageNet templates, models.templates, are an option for the patient).
DEFAULT_TEMPLATES = ("a photo of {}", "a photo of a {}", "{}", "a picture of {}")
_TAG_NAME = re.compile(r"^[^\W_][\w '&.-]*$")  # letters (any script), digits, space, _ ' & . -

TAG_PRECISION = 0.6  # fit target: share of given tags that are right on the dev photos
MAX_TAGS = 3  # a handful per photo
TAG_MIN_GIVEN = 2  # a tag is judged on dev once it was given at least this often ...
TAG_MIN_RIGHT = 0.34  # ... and dropped by default when fewer than this share of those were right
POLICY_DIR = Path(__file__).parent / "data" / "tagging"
POLICY_FORMAT = "loupe-tag-policy-1"

EncodeTexts = Callable[[list[str]], object]  # list of prompts → (N, D) unit vectors (numpy array or torch tensor)


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used; the message names every bad line."""


@dataclass(frozen=True)
class Tag:
    name: str  # what is stored and filtered on
    synonyms: tuple[str, ...] = ()  # more names for the same concept, in the prompt ensemble
    prompts: tuple[str, ...] = ()  # this tag's templates ('{}' = a name) or literal prompts, instead of the default

    def prompts_for(self, templates: Sequence[str]) -> list[str]:
        """The tag's prompt ensemble: every name in every template (literal prompts once), without repeats."""
        out: dict[str, None] = {}
        for template in self.prompts or templates:
            for name in (self.name, *self.synonyms) if "{}" in template else (template,):
                out[template.replace("{}", name)] = None
        return list(out)


@dataclass(frozen=True)
class Vocabulary:
    tags: tuple[Tag, ...]
    source: str  # 'default' or the file it came from

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(tag.name for tag in self.tags)

    @classmethod
    def load(cls, spec: str | Path | None = None) -> Vocabulary:
        """The shipped vocabulary (None or 'default') or a text file in the same format (see models/data/tags.txt)."""
        if spec is None or str(spec) == "default":
            return cls.parse(DEFAULT_VOCABULARY.read_text(encoding="utf-8"), "default")
        path = Path(spec).expanduser()
        if not path.is_file():
            raise VocabularyError(f"no vocabulary file {path}: give a text file (one tag a line) or 'default'")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise VocabularyError(f"cannot read vocabulary {path}: {err}") from err
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "<text>") -> Vocabulary:
        """Every bad line is reported at once, with its number, so a long file is fixed in one pass."""
        tags: list[Tag] = []
        seen: dict[str, int] = {}
        errors: list[str] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                tag = _parse_line(line)
            except ValueError as err:
                errors.append(f"line {number}: {err}: {line!r}")
                continue
            if tag.name in seen:
                errors.append(f"line {number}: tag {tag.name!r} is already defined on line {seen[tag.name]}")
                continue
            seen[tag.name] = number
            tags.append(tag)
        if errors:
            shown = "\n  ".join(errors[:20]) + (f"\n  … and {len(errors) - 20} more" if len(errors) > 20 else "")
            raise VocabularyError(f"{source}: {len(errors)} bad line(s):\n  {shown}")
        if not tags:
            raise VocabularyError(f"{source} holds no tags (one tag a line; '#' starts a comment)")
        return cls(tuple(tags), source)


def _parse_line(line: str) -> Tag:
    """'tag: synonym, synonym | template | prompt' → Tag; ValueError says what is wrong."""
    head, *prompts = (part.strip() for part in line.split("|"))
    name, colon, rest = head.partition(":")
    name = " ".join(name.lower().split())
    if not name:
        raise ValueError("no tag name")
    if not _TAG_NAME.match(name):
        raise ValueError("a tag name may hold only letters, digits, spaces and _ - ' & . (synonyms go after ':')")
    synonyms = tuple(s.strip() for s in rest.split(",")) if colon else ()
    if colon and not all(synonyms):
        raise ValueError("empty synonym (synonyms are separated by commas after ':')")
    if any(":" in s for s in synonyms):
        raise ValueError("more than one ':'")
    for prompt in prompts:
        if not prompt:
            raise ValueError("empty prompt after '|'")
        if prompt.count("{}") > 1 or prompt.replace("{}", "").count("{") or prompt.replace("{}", "").count("}"):
            raise ValueError(f"prompt {prompt!r} may hold at most one '{{}}' (where the tag's names go)")
    return Tag(name, synonyms, tuple(prompts))


@dataclass(frozen=True)
class Calibration:
    """Where each text's scores sit across a library: (median, spread) per tag and per background prompt."""

    fingerprint: str  # TagClassifier.fingerprint at calibration time
    library_size: int  # photos measured
    tags: dict[str, tuple[float, float]]  # tag → (median, spread) of its cosine scores
    background: tuple[tuple[float, float], ...]  # the same per BACKGROUND_PROMPTS entry
    k: float = LIBRARY_K

    def threshold(self, tag: str) -> float:
        """The cosine score a tag needs on a photo of average background-likeness (for people reading JSON)."""
        median, spread = self.tags[tag]
        return median + self.k * spread

    def stale(self, library_size: int) -> bool:
        """The library has more than doubled since: worth measuring again (cheap, and early tags used few photos)."""
        return library_size > 2 * self.library_size

    def to_json(self) -> str:
        return json.dumps({"version": CALIBRATION_VERSION, "fingerprint": self.fingerprint, "k": self.k,
                           "library_size": self.library_size, "tags": {t: list(v) for t, v in self.tags.items()},
                           "background": [list(v) for v in self.background]}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        if data.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"unknown tag calibration version {data.get('version')!r}")
        tags = {str(tag): (float(m), float(s)) for tag, (m, s) in data["tags"].items()}
        background = tuple((float(m), float(s)) for m, s in data["background"])
        return cls(str(data["fingerprint"]), int(data["library_size"]), tags, background, float(data["k"]))


@dataclass(frozen=True)
class TagPolicy:
    """What a model's tags must clear to be written: fitted per model on labelled dev photos (`fit_policy`)."""

    threshold: float = MIN_PROBABILITY  # cut on P(tag)
    max_tags: int = MAX_TAGS
    disabled: tuple[str, ...] = ()  # tags this model could not tell apart on dev: not offered by default
    model: str = ""
    fitted_on: str = ""
    report: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": POLICY_FORMAT, **asdict(self), "disabled": sorted(self.disabled)}, indent=2,
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TagPolicy:
        data = json.loads(text)
        if data.pop("format", None) != POLICY_FORMAT:
            raise ValueError("not a tag policy file")
        return cls(**{**data, "disabled": tuple(data.get("disabled", ()))})

    @classmethod
    def for_model(cls, model: str) -> TagPolicy:
        """The policy shipped for a preset (models/data/tagging/<name>.json), else offline-lite's, else the
        built-in default (P ≥ 0.5, three tags)."""
        own, fallback = POLICY_DIR / f"{_safe(model)}.json", POLICY_DIR / "offline-lite.json"
        for path in (own, fallback):
            try:
                policy = cls.from_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError):
                continue
            # another model's disabled tags say nothing about this one; its cut is a fair start
            return policy if path == own else replace(policy, disabled=(), model=model, fitted_on="")
        return cls()


def fit_policy(probabilities: np.ndarray, right: np.ndarray, names: Sequence[str], *,
               precision: float = TAG_PRECISION, max_tags: int = MAX_TAGS, **meta) -> TagPolicy:
    """A policy from dev photos: `probabilities` (N, T) from `TagClassifier.probabilities`, `right` (N, T) whether
    each tag fits each photo (its labels). First the tags given on dev (top `max_tags` per photo above the base cut)
    that are rarely right are disabled; then the lowest cut on P whose given tags reach `precision`."""
    probabilities, right = np.asarray(probabilities, np.float64), np.asarray(right, bool)
    names = list(names)

    def given(cut: float, allowed: np.ndarray) -> np.ndarray:
        masked = np.where(allowed[None, :] & (probabilities >= cut), probabilities, -1.0)
        order = np.argsort(-masked, axis=1)[:, :max_tags]
        out = np.zeros_like(right)
        rows = np.arange(len(masked))[:, None]
        out[rows, order] = masked[rows, order] >= 0
        return out

    allowed = np.ones(len(names), bool)
    base = given(MIN_PROBABILITY, allowed)
    counts, hits = base.sum(axis=0), (base & right).sum(axis=0)
    poor = (counts >= TAG_MIN_GIVEN) & (hits < TAG_MIN_RIGHT * counts)
    allowed &= ~poor
    best_cut, figures = None, {}
    cuts = np.concatenate([[MIN_PROBABILITY], probabilities[probabilities >= MIN_PROBABILITY]])
    for cut in np.unique(np.round(cuts, 4)):
        chosen = given(float(cut), allowed)
        if chosen.sum() and (chosen & right).sum() / chosen.sum() >= precision:
            best_cut = float(cut)
            break
    best_cut = best_cut if best_cut is not None else 1.0
    chosen = given(best_cut, allowed)
    figures = {"given": int(chosen.sum()), "precision": float((chosen & right).sum() / max(chosen.sum(), 1)),
               "coverage": float(chosen.any(axis=1).mean()) if len(chosen) else 0.0, "photos": int(len(chosen))}
    disabled = tuple(sorted(n for n, ok in zip(names, allowed, strict=True) if not ok))
    return TagPolicy(round(best_cut, 4), max_tags, disabled, report=figures, **meta)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


@dataclass(frozen=True, eq=False)  # arrays inside: identity, not element-wise, equality
class TagClassifier:
    """A vocabulary's tag matrix and background vectors, plus (once calibrated) the library's score statistics."""

    names: tuple[str, ...]  # T tag names, in vocabulary order
    matrix: np.ndarray  # (T, D) unit rows
    background: np.ndarray  # (B, D) unit rows of BACKGROUND_PROMPTS
    calibration: Calibration | None = None
    policy: TagPolicy = field(default_factory=TagPolicy)

    def with_policy(self, policy: TagPolicy) -> TagClassifier:
        return replace(self, policy=policy)

    @classmethod
    def build(cls, encode_texts: EncodeTexts, vocabulary: Vocabulary, templates: Sequence[str] = DEFAULT_TEMPLATES,
              *, batch_size: int = 256, progress: Callable[[int], object] | None = None) -> TagClassifier:
        """Encode every tag's prompt ensemble once; `progress(n)` is called after each batch of n prompts."""
        ensembles = [tag.prompts_for(templates) for tag in vocabulary.tags]
        prompts = [prompt for ensemble in ensembles for prompt in ensemble]
        vectors = _encode(encode_texts, prompts + list(BACKGROUND_PROMPTS), batch_size, progress)  # (P + B, D)
        rows, start = [], 0
        for ensemble in ensembles:
            rows.append(_unit(vectors[start:start + len(ensemble)].mean(axis=0)))  # mean of unit vectors, renormed
            start += len(ensemble)
        return cls(vocabulary.names, np.stack(rows), vectors[len(prompts):])

    @property
    def fingerprint(self) -> str:
        """Changes with the vocabulary and with the text tower (a promoted tuned tower moves every tag vector)."""
        probe = np.round(self.matrix @ self.background.mean(axis=0), 3)  # (T,) robust to float noise
        digest = hashlib.sha256("\n".join(self.names).encode())
        digest.update(probe.astype(np.float32).tobytes())
        return digest.hexdigest()[:16]

    def scores(self, vectors: object) -> np.ndarray:
        """(N, T) cosine scores of (N, D) unit image vectors."""
        return _as_matrix(vectors) @ self.matrix.T

    def calibrate(self, library: object, k: float = LIBRARY_K) -> TagClassifier:
        """A copy standardised on `library` (S, D), e.g. `sample_library(...)`; uncalibrated when it is too small."""
        library = _as_matrix(library)[:LIBRARY_SAMPLE]
        if len(library) < MIN_LIBRARY:
            return replace(self, calibration=None)
        tag_median, tag_spread = _robust(library @ self.matrix.T)  # (T,), (T,)
        floor = float(np.median(tag_spread))  # the vocabulary's typical spread
        bg_median, bg_spread = _robust(library @ self.background.T)  # (B,), (B,)
        tags = {n: (round(float(m), 6), round(max(float(s), floor, 1e-6), 6))
                for n, m, s in zip(self.names, tag_median, tag_spread, strict=True)}
        background = tuple((round(float(m), 6), round(max(float(s), floor, 1e-6), 6))
                           for m, s in zip(bg_median, bg_spread, strict=True))
        return replace(self, calibration=Calibration(self.fingerprint, len(library), tags, background, k))

    def with_calibration(self, calibration: Calibration | str | None) -> TagClassifier | None:
        """A copy using a stored calibration, or None when it belongs to another vocabulary or text tower."""
        if isinstance(calibration, str):
            try:
                calibration = Calibration.from_json(calibration)
            except (ValueError, KeyError, TypeError, AttributeError):
                return None  # unreadable (another version): calibrate again
        if calibration is None or calibration.fingerprint != self.fingerprint:
            return None
        return replace(self, calibration=calibration)

    def to_json(self) -> str | None:
        """The calibration to store (None when uncalibrated); restore it with `with_calibration`."""
        return self.calibration.to_json() if self.calibration else None

    def probabilities(self, vectors: object) -> np.ndarray:
        """(N, T) P(tag applies) = σ(z_tag − k − log-mean-exp z_background); needs a calibration."""
        if self.calibration is None:
            raise ValueError("the classifier is not calibrated: calibrate() it on the library first")
        vectors, cal = _as_matrix(vectors), self.calibration
        tag_stats = np.array([cal.tags[name] for name in self.names], np.float32)  # (T, 2)
        bg_stats = np.array(cal.background, np.float32)  # (B, 2)
        z_tags = (vectors @ self.matrix.T - tag_stats[:, 0]) / tag_stats[:, 1]  # (N, T)
        z_bg = (vectors @ self.background.T - bg_stats[:, 0]) / bg_stats[:, 1]  # (N, B)
        top = z_bg.max(axis=1, keepdims=True)
        soft_bg = top + np.log(np.exp(z_bg - top).mean(axis=1, keepdims=True))  # (N, 1) log-mean-exp
        return 1.0 / (1.0 + np.exp(-np.clip(z_tags - cal.k - soft_bg, -60.0, 60.0)))

    def assign(self, vectors: object, top_k: int | None = None, threshold: float | None = None
               ) -> list[dict[str, float]]:
        """Per photo {tag: P} of the tags with P ≥ `threshold`, most probable first, at most `top_k` — both never
        looser than the policy's bar (its threshold, its handful); the policy's disabled tags are never given.
        Uncalibrated (too small a library): no tags."""
        vectors = _as_matrix(vectors)
        if self.calibration is None:
            return [{} for _ in range(len(vectors))]
        probability = self.probabilities(vectors)
        policy = self.policy
        top_k = policy.max_tags if top_k is None else min(top_k, policy.max_tags)
        cut = policy.threshold if threshold is None else max(threshold, policy.threshold)
        allowed = np.array([name not in policy.disabled for name in self.names])
        keep = (probability >= cut) & allowed[None, :]
        out = []
        for row, mask in zip(probability, keep, strict=True):
            chosen = sorted(np.flatnonzero(mask), key=lambda t: (-row[t], self.names[t]))[:top_k]
            out.append({self.names[t]: round(float(row[t]), 4) for t in chosen})
        return out


def sample_library(vectors: object, limit: int = LIBRARY_SAMPLE) -> np.ndarray:
    """(≤ limit, D) from an iterable of (D,) vectors, e.g. a vector store scroll (ids are hash-derived: a fair
    sample in scroll order)."""
    rows = []
    for vector in vectors:
        if vector is not None:
            rows.append(np.asarray(vector, np.float32))
            if len(rows) >= limit:
                break
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def _encode(encode_texts: EncodeTexts, prompts: list[str], batch_size: int,
            progress: Callable[[int], object] | None) -> np.ndarray:
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths per batch: less padding
    chunks = []
    for start in range(0, len(order), batch_size):
        batch = [prompts[i] for i in order[start:start + batch_size]]
        chunks.append(_as_matrix(encode_texts(batch)))
        if progress is not None:
            progress(len(batch))
    vectors = np.empty((len(prompts), chunks[0].shape[1]), np.float32)
    vectors[order] = np.concatenate(chunks)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _robust(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (S, C) scores: median and 1.4826·MAD (the standard deviation, were the column normal)."""
    median = np.median(scores, axis=0)
    return median, 1.4826 * np.median(np.abs(scores - median), axis=0)


def _as_matrix(vectors: object) -> np.ndarray:
    """numpy (N, D) float32 from an array, a torch tensor (any device) or a list of vectors."""
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    matrix = np.asarray(vectors, dtype=np.float32)
    return matrix.reshape(1, -1) if matrix.ndim == 1 else matrix


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)
