"""Where the (locked) image vectors of a tuning run come from: a pluggable `ImageVectorSource`.

LiT's image tower is locked, so its output for a given photo is a constant (Zhai et al. 2022): the training loop never
needs to run it. Vectors are looked up instead, from
- `NpzVectorSource`: a user-supplied `.npz` of precomputed vectors by key (keys need not be files, e.g.
  `class:n01440764` to tune a text head against class directions);
- `models.train.vector_cache.CachedTowerSource`: computed once with the locked tower and cached under the data home;
- the Loupe index (plugged in by the CLI, which is the composition root; this package never imports indexer).
`ChainedSource` asks several in order. A source may expose `skipped: dict[key, reason]` to say why a key got none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)
UNIT_NORM_TOLERANCE = 1e-3


@runtime_checkable
class ImageVectorSource(Protocol):
    def vectors_for(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Unit float32 vectors (D,) for the keys it knows; keys it cannot serve are simply absent."""
        ...


def skip_reason(source: object, key: str) -> str:
    """Why `source` returned no vector for `key` (sources may keep a `skipped` dict)."""
    return getattr(source, "skipped", {}).get(key, "no image vector for this key")


class NpzVectorSource:
    """Precomputed vectors from `np.savez(path, keys=array_of_str, vectors=float_array(N, D))`.

    Also accepted: one array per key (`np.savez(path, **{"class:n01440764": vec, ...})`).
    """

    def __init__(self, path: str | os.PathLike, dim: int | None = None):
        self.path = Path(path).expanduser()
        self.skipped: dict[str, str] = {}
        self._vectors = _read_npz(self.path)
        self._check(dim)

    def __len__(self) -> int:
        return len(self._vectors)

    def vectors_for(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {k: self._vectors[k] for k in keys if k in self._vectors}
        missing = [k for k in keys if k not in found and k not in self.skipped]  # (bad rows keep their reason)
        self.skipped.update({k: f"key not in {self.path.name}" for k in missing})
        return found

    def _check(self, dim: int | None) -> None:
        for key, vector in self._vectors.items():
            if vector.ndim != 1 or (dim is not None and vector.shape[0] != dim):
                raise ValueError(f"{self.path}: vector {key!r} has shape {vector.shape}, the model needs ({dim},)")
        # A NaN or all-zero row would turn the loss into NaN and every saved weight with it: such a row is one bad
        # row, skipped (and reported with the run's other skips), never trained on.
        for key in [k for k, v in self._vectors.items() if not np.isfinite(v).all()]:
            self.skipped[key] = f"its vector in {self.path.name} is not finite (NaN or inf)"
            del self._vectors[key]
        for key in [k for k, v in self._vectors.items() if float(np.linalg.norm(v)) < 1e-6]:
            self.skipped[key] = f"its vector in {self.path.name} is all zeros"
            del self._vectors[key]
        bad = [k for k, v in self._vectors.items() if abs(float(np.linalg.norm(v)) - 1.0) > UNIT_NORM_TOLERANCE]
        if bad:
            log.info("%s: normalising %d vectors that were not unit length", self.path.name, len(bad))
            for key in bad:
                self._vectors[key] = unit(self._vectors[key])


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read image vectors from {path}: {err}. Expected an .npz with 'keys' and "
                         "'vectors' arrays") from err
    with data:
        if "keys" not in data.files or "vectors" not in data.files:
            return {name: data[name].astype(np.float32) for name in data.files}
        keys, vectors = data["keys"], data["vectors"]
    if vectors.ndim != 2 or len(keys) != len(vectors):
        raise ValueError(f"{path}: 'keys' ({len(keys)}) and 'vectors' {vectors.shape} do not line up")
    return {str(k): v.astype(np.float32) for k, v in zip(keys, vectors, strict=True)}


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / (np.linalg.norm(vector) + 1e-8)).astype(np.float32)


class ChainedSource:
    """Ask each source in turn for the keys still missing (e.g. the index first, then the cached tower)."""

    def __init__(self, sources: Sequence[ImageVectorSource]):
        self.sources = list(sources)

    @property
    def skipped(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for source in self.sources:  # the last source's reason is the one that ended the search: it wins
            merged.update(getattr(source, "skipped", {}))
        return merged

    def vectors_for(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for source in self.sources:
            missing = [k for k in keys if k not in found]
            if not missing:
                break
            found.update(source.vectors_for(missing))
        return found


def read_image(path: str | os.PathLike, size_hint: int | None = None) -> Image.Image:
    """Decode as the indexer does: EXIF orientation applied, RGB; JPEGs decoded at reduced size when large."""
    with Image.open(path) as image:
        if size_hint and image.format == "JPEG":
            image.draft("RGB", (2 * size_hint, 2 * size_hint))  # 4x faster decode, still above model input size
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
