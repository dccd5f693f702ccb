"""Captions file(s) + an image-vector source → train and validation `PairSet`s, with every skipped row accounted for."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from models.train.captions import CaptionsError, Problem, read_captions
from models.train.config import TrainConfig
from models.train.image_vectors import ImageVectorSource
from models.train.pairs import PairSet, assemble, resolve_keys, split_by_image

log = logging.getLogger(__name__)
MAX_LOGGED_PROBLEMS = 50


class NoUsableRows(CaptionsError):
    """Raised when a captions file yields zero (image, caption) pairs with an image vector."""


@dataclass
class FileReport:
    path: str
    format: str
    rows_read: int  # rows that parsed (before image lookup)
    rows_used: int
    images_used: int
    problems: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"path": self.path, "format": self.format, "rows_read": self.rows_read, "rows_used": self.rows_used,
                "images_used": self.images_used, "skipped": len(self.problems),
                "problems": [{"line": p.line, "reason": p.reason} for p in self.problems]}


@dataclass
class TrainingData:
    train: PairSet
    val: PairSet | None
    reports: list[FileReport]

    @property
    def fingerprint(self) -> str:
        """Of all used rows, train and validation (the validation set decides which epoch is kept)."""
        parts = [self.train.fingerprint(), self.val.fingerprint() if self.val is not None else "-"]
        return hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]


def load_pairs(path: Path, config: TrainConfig, source: ImageVectorSource) -> tuple[PairSet, FileReport]:
    """Parse one captions file and attach image vectors; zero usable rows raises `NoUsableRows`."""
    parsed = read_captions(path)
    root = config.images_root or parsed.path.parent
    keyed, problems = resolve_keys(parsed.rows, root, keys_are_paths=config.image_vectors is None)
    pairs, missing = assemble(keyed, source)
    problems = sorted(parsed.problems + problems + missing, key=lambda p: p.line)
    report = FileReport(str(parsed.path), parsed.format, len(parsed.rows), len(pairs), pairs.n_images, problems)
    _log_report(report)
    if not len(pairs):
        first = "; ".join(str(p) for p in problems[:5])
        raise NoUsableRows(f"{path}: no usable (image, caption) rows" + (f" — {first}" if first else " (empty file)")
                           + _hint(config))
    return pairs, report


def load_training_data(config: TrainConfig, source: ImageVectorSource) -> TrainingData:
    """The training pairs and, from `--val FILE` or a seeded split by image, the validation pairs."""
    if config.captions is None:
        raise CaptionsError("no captions file given")
    pairs, report = load_pairs(config.captions, config, source)
    reports = [report]
    if config.val is not None:
        val, val_report = load_pairs(config.val, config, source)
        reports.append(val_report)
        overlap = set(val.image_keys) & set(pairs.image_keys)
        if overlap:
            log.warning("%d validation images also appear in the training captions: recall will look better than it "
                        "is", len(overlap))
        return TrainingData(pairs, val, reports)
    train, val = split_by_image(pairs, config.val_fraction, config.seed)
    if val is None and config.val_fraction > 0:
        log.warning("too few images (%d) to hold any out: training without validation", pairs.n_images)
    return TrainingData(train, val, reports)


def _log_report(report: FileReport) -> None:
    name = Path(report.path).name
    for problem in report.problems[:MAX_LOGGED_PROBLEMS]:
        log.warning("%s:%d: skipped: %s", name, problem.line, problem.reason)
    if len(report.problems) > MAX_LOGGED_PROBLEMS:
        log.warning("%s: … and %d more skipped rows", name, len(report.problems) - MAX_LOGGED_PROBLEMS)
    log.info("%s (%s): %d rows used, %d images; %d rows skipped", name, report.format, report.rows_used,
             report.images_used, len(report.problems))


def _hint(config: TrainConfig) -> str:
    if config.image_vectors is not None:
        return f". Rows must name keys present in {config.image_vectors}"
    return (f". Image paths are read relative to {config.images_root or 'the captions file folder'}; "
            "pass --images-root DIR if they are relative to another folder")
