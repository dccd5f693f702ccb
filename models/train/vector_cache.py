"""`CachedTowerSource`: image vectors computed once with the locked tower, cached under the data home, reused.

Because the image tower is locked (LiT, Zhai et al. 2022) a photo's vector depends only on the tower and the file, so
the cache is keyed by (image_tower_id, path, size, mtime): the tower id names the cache file, the rest each entry.
A changed file is re-embedded; an unchanged one is never decoded again, which is what makes re-tuning cheap.
The cache is written atomically (temp file + os.replace) and only when something new was computed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from models.bundle import ModelBundle
from models.model import assert_unit_norm
from models.train.image_vectors import read_image

log = logging.getLogger(__name__)


def vector_cache_path(home: Path, image_tower_id: str) -> Path:
    return home / "cache" / "image_vectors" / f"{image_tower_id}.npz"


def file_stamp(path: str) -> str | None:
    """`path\\tsize\\tmtime_ns`, or None when the file is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}"


class CachedTowerSource:
    """Keys are absolute image paths; vectors come from the cache or from one batched pass of the locked tower."""

    def __init__(self, bundle: ModelBundle, home: Path, *, batch_size: int = 32, workers: int = 2,
                 progress: bool = True):
        self.bundle = bundle
        self.path = vector_cache_path(home, bundle.image_tower_id)
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress
        self.skipped: dict[str, str] = {}
        self.reused = 0
        self.computed = 0

    def vectors_for(self, keys: list[str]) -> dict[str, np.ndarray]:
        stamps = {}
        for key in dict.fromkeys(keys):
            stamp = file_stamp(key)
            if stamp is None:
                self.skipped[key] = "image file not found"
            else:
                stamps[key] = stamp
        cache = self._load()
        found = {k: cache[s] for k, s in stamps.items() if s in cache}
        self.reused += len(found)
        fresh = self._compute([k for k in stamps if k not in found])
        if fresh:
            self._save(cache, {stamps[k]: v for k, v in fresh.items()})
        return found | fresh

    def _load(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as data:
                return dict(zip((str(k) for k in data["keys"]), data["vectors"], strict=True))
        except (OSError, ValueError, KeyError) as err:
            log.warning("ignoring unreadable image-vector cache %s (%s); it will be rebuilt", self.path, err)
            return {}

    def _save(self, cache: dict[str, np.ndarray], fresh: dict[str, np.ndarray]) -> None:
        renewed = {stamp.split("\t", 1)[0] for stamp in fresh}  # a changed file's old entry goes
        kept = {s: v for s, v in cache.items() if s.split("\t", 1)[0] not in renewed} | fresh
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".vectors.", suffix=".npz", dir=self.path.parent)
        with os.fdopen(fd, "wb") as out:
            np.savez(out, keys=np.array(list(kept), dtype=str), vectors=np.stack(list(kept.values())),
                     image_tower_id=np.array(self.bundle.image_tower_id))
        os.replace(tmp, self.path)
        log.info("image-vector cache %s: %d entries (%d new)", self.path, len(kept), len(fresh))

    def _compute(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Decode in a thread pool, embed in batches with the locked tower; unreadable images are skipped."""
        if not keys:
            return {}
        out: dict[str, np.ndarray] = {}
        bar = tqdm(total=len(keys), unit="img", desc="embedding images (once)", disable=None if self.progress else True)
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(keys), self.batch_size):
                batch = keys[start:start + self.batch_size]
                decoded = list(pool.map(self._decode, batch))
                good = [(k, px) for k, px in zip(batch, decoded, strict=True) if px is not None]
                if good:
                    vectors = self.bundle.model.encode_images(torch.stack([px for _, px in good]))  # (B, D)
                    assert_unit_norm(vectors)
                    out.update({k: v for (k, _), v in zip(good, vectors.cpu().numpy(), strict=True)})
                bar.update(len(batch))
        bar.close()
        self.computed += len(out)
        return out

    def _decode(self, key: str) -> torch.Tensor | None:
        try:
            return self.bundle.preprocess(read_image(key, self.bundle.input_size))  # (3, H, W)
        except Exception as err:  # noqa: BLE001  (any decoder failure skips this one image, with its reason)
            self.skipped[key] = f"unreadable image ({type(err).__name__}: {err})"
            return None
