"""Caption rows + image vectors → a `PairSet`; the split by image; and contrastive batches without false negatives.

In the symmetric InfoNCE loss (CLIP, Radford et al. 2021; LiT, Zhai et al. 2022) every other image in a batch is a
negative for a caption. Two captions of the *same* image in one batch would make that image both the positive and a
negative, so batches hold at most one caption per image (`epoch_batches`). The held-out split is by image, never by
caption: a caption of a training photo in the validation set would measure memory, not reading.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.train.captions import CaptionRow, Problem
from models.train.image_vectors import ImageVectorSource, skip_reason


@dataclass
class PairSet:
    captions: list[str]  # (N,) caption texts
    image_index: np.ndarray  # (N,) int64: caption i describes image image_index[i]
    image_keys: list[str]  # (I,) key (absolute path or vector key) of each image
    image_vectors: np.ndarray  # (I, D) float32 unit vectors from the locked tower

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def n_images(self) -> int:
        return len(self.image_keys)

    def subset(self, images: np.ndarray) -> PairSet:
        """The pairs of the given images (indices into image_keys), renumbered."""
        remap = np.full(self.n_images, -1, dtype=np.int64)
        remap[images] = np.arange(len(images))
        keep = np.flatnonzero(remap[self.image_index] >= 0)
        return PairSet([self.captions[i] for i in keep], remap[self.image_index[keep]],
                       [self.image_keys[i] for i in images], self.image_vectors[images])

    def fingerprint(self) -> str:
        """sha256 of the used (key, caption) rows: names exactly what a tuned tower was trained on."""
        digest = hashlib.sha256()
        for caption, image in zip(self.captions, self.image_index, strict=True):
            digest.update(f"{self.image_keys[image]}\t{caption}\n".encode())
        return digest.hexdigest()[:16]


def resolve_keys(rows: list[CaptionRow], images_root: Path | None, *, keys_are_paths: bool
                 ) -> tuple[list[tuple[CaptionRow, str]], list[Problem]]:
    """Each row's image key: an absolute path (checked to exist) or, with precomputed vectors, the key as written."""
    if not keys_are_paths:
        return [(row, row.image) for row in rows], []
    root = (images_root or Path.cwd()).expanduser()
    keyed, problems = [], []
    for row in rows:
        try:
            path = Path(row.image).expanduser()
            path = (path if path.is_absolute() else root / path).resolve()
            found = path.is_file()
        except (OSError, ValueError, RuntimeError) as err:  # a NUL byte, a name too long, a symlink loop: one row
            problems.append(Problem(row.line, f"not a usable image path ({err}): {row.image!r}"))
            continue
        if found:
            keyed.append((row, str(path)))
        else:
            problems.append(Problem(row.line, f"image file not found: {path}"))
    return keyed, problems


def assemble(keyed: list[tuple[CaptionRow, str]], source: ImageVectorSource) -> tuple[PairSet, list[Problem]]:
    """Fetch each distinct key's vector once; rows whose image got no vector are reported and dropped."""
    unique = list(dict.fromkeys(key for _, key in keyed))
    vectors = source.vectors_for(unique) if unique else {}
    image_of: dict[str, int] = {}
    captions, index, problems = [], [], []
    for row, key in keyed:
        if key not in vectors:
            problems.append(Problem(row.line, f"{skip_reason(source, key)}: {row.image}"))
            continue
        captions.append(row.caption)
        index.append(image_of.setdefault(key, len(image_of)))
    keys = list(image_of)
    matrix = np.stack([vectors[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)
    return PairSet(captions, np.asarray(index, dtype=np.int64), keys, matrix), problems


def split_by_image(pairs: PairSet, fraction: float, seed: int) -> tuple[PairSet, PairSet | None]:
    """Hold out `fraction` of the images (seeded), with all their captions; None when nothing can be held out."""
    n_val = int(round(fraction * pairs.n_images))
    if fraction <= 0 or pairs.n_images < 4 or n_val < 1:
        return pairs, None
    order = np.random.default_rng([seed, 0x5EED]).permutation(pairs.n_images)
    return pairs.subset(np.sort(order[n_val:])), pairs.subset(np.sort(order[:n_val]))


def epoch_batches(image_index: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Caption indices in batches with at most one caption per image; every caption once per epoch.

    An image's captions are spread evenly over the epoch (stratified order), so clashes are rare; a caption whose
    image is already in the batch waits for the next one. Batches smaller than 2 (no negative) are dropped.
    """
    sequence = _stratified_order(image_index, rng)
    queue, batches = deque(sequence.tolist()), []
    while queue:
        batch, used, waiting = [], set(), []
        while queue and len(batch) < batch_size and len(waiting) < 4 * batch_size:  # bounded scan
            item = queue.popleft()
            (waiting if image_index[item] in used else batch).append(item)
            used.add(int(image_index[item]))
        queue.extendleft(reversed(waiting))
        if len(batch) >= 2:
            batches.append(np.asarray(batch, dtype=np.int64))
    return batches


def _stratified_order(image_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Caption r (of c) of an image sits at epoch position ≈ (r + u_image) / c: one random phase per image."""
    n = len(image_index)
    perm = rng.permutation(n)  # random order of each image's captions
    image = image_index[perm]
    counts = np.bincount(image_index)
    by_image = np.argsort(image, kind="stable")
    first = np.searchsorted(image[by_image], image[by_image])
    rank = np.empty(n, dtype=np.int64)
    rank[by_image] = np.arange(n) - first
    phase = rng.random(len(counts))
    return perm[np.argsort((rank + phase[image]) / counts[image], kind="stable")]
