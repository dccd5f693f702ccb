"""Versions of tuned text towers under `<home>/text_towers/`, and which one is active per image tower.

Each version is an immutable `models.saved` directory. `active.json` keeps, per `image_tower_id`, the history of
promotions; the last entry is active, `rollback` pops it. The history is per image tower because a text tower only
reads the space it was tuned against (LiT, Zhai et al. 2022): promoting a tower for one collection must not change
another's. Writes go through a temp file and `os.replace` (readers never see half a file) under an advisory lock.

Long-running processes (the indexer that owns the data home, the UI) poll `active_stamp(home)` — one `stat` — and
reload `active(home, tower_id)` when it changes, swapping text towers without a restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from models.home import text_towers_dir
from models.saved import read_config

log = logging.getLogger(__name__)
ACTIVE_FILE = "active.json"
ACTIVE_FORMAT = "loupe-active-text-towers"
MIN_PROMOTE_PAIRS = 100  # below this, validation on a 10% split is a handful of captions: too few to judge
MIN_PROMOTE_VAL_PAIRS = 10  # a validation of fewer captions (a --val file, or a split) cannot tell a gain from luck


class PromoteRefused(ValueError):
    """A version whose benefit was never measured (no validation, too few pairs, or worse than its base)."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    path: Path
    image_tower_id: str
    base: str  # preset the tower was built on
    created: str | None
    metrics: dict | None  # validation metrics of the kept epoch (None when trained without validation)
    active: bool
    metrics_before: dict | None = None  # validation metrics of the base model, same split
    train_pairs: int | None = None  # None: not recorded (versions saved by older Loupe)
    val_pairs: int | None = None
    val_shared: int | None = None  # validation images the training captions hold too (None: not recorded)

    def promote_problems(self) -> list[str]:
        """Why promoting this version is a gamble (empty when its validation says it helps)."""
        problems = []
        if not self.metrics:
            problems.append("it was trained without validation, so nobody measured whether it helps")
        if self.train_pairs is not None and self.train_pairs < MIN_PROMOTE_PAIRS:
            problems.append(f"it was trained on only {self.train_pairs} caption pairs (fewer than "
                            f"{MIN_PROMOTE_PAIRS}: too few to learn from, and its validation split too small to judge)")
        if self.metrics and self.val_pairs is not None and self.val_pairs < MIN_PROMOTE_VAL_PAIRS:
            problems.append(f"it was validated on only {self.val_pairs} captions (fewer than {MIN_PROMOTE_VAL_PAIRS}: "
                            "a gain that small a sample shows may be luck)")
        if self.metrics and self.val_shared:
            problems.append(f"{self.val_shared} of its validation images are also in its training captions, so its "
                            "validation recall says little about photos it never saw")
        if self.metrics and self.metrics_before and \
                self.metrics.get("t2i_r1", 0.0) < self.metrics_before.get("t2i_r1", 0.0):
            problems.append(f"its validation T→I R@1 fell from {100 * self.metrics_before['t2i_r1']:.1f} to "
                            f"{100 * self.metrics['t2i_r1']:.1f}")
        return problems

    def to_json(self) -> dict:
        return {**self.__dict__, "path": str(self.path)}


def list_versions(home: Path) -> list[VersionInfo]:
    """Every saved text tower, oldest first."""
    root = text_towers_dir(home)
    if not root.is_dir():
        return []
    towers = _read_active(home)["towers"]
    active_names = {history[-1]["name"] for history in (t["history"] for t in towers.values()) if history}
    out = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            config = read_config(path)
        except (OSError, ValueError) as err:
            log.warning("skipping %s: %s", path, err)
            continue
        meta = config.get("metadata", {})
        out.append(VersionInfo(path.name, path, config["image_tower_id"], config["base"]["preset"],
                               meta.get("created"), meta.get("metrics_after"), path.name in active_names,
                               meta.get("metrics_before"), (meta.get("train_size") or {}).get("pairs"),
                               (meta.get("val_size") or {}).get("pairs"),
                               (meta.get("val_size") or {}).get("images_also_trained_on")))
    return sorted(out, key=lambda v: (v.created or "", v.name))


def promote(home: Path, name: str, *, force: bool = False) -> VersionInfo:
    """Make version `name` the active text tower for its image tower.

    Refuses (`PromoteRefused`) a version whose validation does not show that it helps — trained without
    validation, on fewer than MIN_PROMOTE_PAIRS pairs, validated on fewer than MIN_PROMOTE_VAL_PAIRS captions or on
    images it also trained on, or worse than its base on validation T→I R@1 — unless
    `force`; a forced promote of such a version is logged as a warning.
    """
    version = next((v for v in list_versions(home) if v.name == name), None)
    if version is None:
        known = ", ".join(v.name for v in list_versions(home)) or "none"
        raise KeyError(f"no text tower version {name!r} in {text_towers_dir(home)} (known: {known})")
    problems = version.promote_problems()
    if problems and not force:
        raise PromoteRefused(f"not promoting {name}: " + "; ".join(problems) + ". Search would change without "
                             "evidence that it gets better; retrain with more captions and validation, or promote "
                             "anyway with --force")
    if problems:
        log.warning("promoting %s although %s", name, "; ".join(problems))
    with _locked(home):
        state = _read_active(home)
        history = state["towers"].setdefault(version.image_tower_id, {"history": []})["history"]
        if not history or history[-1]["name"] != name:
            history.append({"name": name, "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        _write_active(home, state)
    return version


def rollback(home: Path, image_tower_id: str) -> str | None:
    """Deactivate the current version; returns the previous one, now active again (None: back to the base model)."""
    with _locked(home):
        state = _read_active(home)
        history = state["towers"].get(image_tower_id, {}).get("history", [])
        if not history:
            raise LookupError(f"nothing to roll back: no promoted text tower for image tower {image_tower_id}")
        history.pop()
        _write_active(home, state)
    return history[-1]["name"] if history else None


def active(home: Path, image_tower_id: str) -> Path | None:
    """Directory of the active text tower for this image tower, or None (use the base model's own)."""
    history = _read_active(home)["towers"].get(image_tower_id, {}).get("history", [])
    if not history:
        return None
    path = text_towers_dir(home) / history[-1]["name"]
    if not (path / "config.json").is_file():
        log.warning("active text tower %s is missing on disk; using the base model's", path)
        return None
    return path


def active_stamp(home: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of active.json, or None: one stat to poll; every write is a new file (new inode)."""
    try:
        stat = os.stat(text_towers_dir(home) / ACTIVE_FILE)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def promoted_tower_ids(home: Path) -> list[str]:
    """Image tower ids that currently have an active tuned text tower."""
    return [tid for tid, tower in _read_active(home)["towers"].items() if tower.get("history")]


def _read_active(home: Path) -> dict:
    path = text_towers_dir(home) / ACTIVE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return {"format": ACTIVE_FORMAT, "version": 1, "towers": {}}
    except ValueError as err:
        raise ValueError(f"{path} is corrupt ({err}); fix or delete it (versions themselves are untouched)") from err
    if state.get("format") != ACTIVE_FORMAT:
        raise ValueError(f"{path} is not a Loupe active-versions file")
    return state


def _write_active(home: Path, state: dict) -> None:
    root = text_towers_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".active.", suffix=".json", dir=root)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out, indent=2, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, root / ACTIVE_FILE)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise read-modify-write of active.json between processes (advisory; POSIX only)."""
    root = text_towers_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: os.replace still keeps readers safe
        yield
        return
    with open(root / ".active.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
