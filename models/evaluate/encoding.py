"""Encode evaluation images and texts in batches, with a progress bar; an unreadable image is skipped and counted.

Images are decoded with Pillow and turned upright with `ImageOps.exif_transpose` (phones store rotation in EXIF),
then given to the bundle's own preprocessing — for LiT presets the exact LiT pipeline, so no reduced-size JPEG
`draft` decode here: that would change pixels and the reproduced numbers. A small thread pool decodes up to two
batches ahead of the model (Pillow releases the GIL while decoding).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps

log = logging.getLogger(__name__)
PREFETCH_BATCHES = 2


@dataclass
class EncodedImages:
    vectors: torch.Tensor  # (K, D) unit vectors of the images that decoded, in input order
    kept: list[int]  # input index of each row of `vectors`
    failures: list[tuple[Path, str]]  # (path, reason) of every skipped image
    visual: torch.Tensor | None = None  # (K, V) their visual vectors (models.visual), when asked for


def register_heif() -> None:
    """HEIC/AVIF decoding when pillow-heif is importable (a Loupe dependency; evaluation still works without)."""
    with contextlib.suppress(ImportError):
        import pillow_heif

        pillow_heif.register_heif_opener()


def load_image(path: Path, preprocess: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor | str:
    """The preprocessed tensor, or the reason it could not be read (never raises: one bad file must not end a run)."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return preprocess(image if image.mode == "RGB" else image.convert("RGB"))  # grey, CMYK, palette
    except Exception as err:  # decoders raise many types (OSError, SyntaxError, DecompressionBombError, …)
        return f"{type(err).__name__}: {err}"


def encode_image_files(bundle, paths: Sequence[Path], *, batch_size: int = 64, workers: int = 4,
                       progress: bool | None = None, with_visual: bool = False) -> EncodedImages:
    """`with_visual`: the visual vectors too, from the same forward pass (what "more like this" ranks by)."""
    from tqdm import tqdm

    register_heif()
    batches = [list(paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
    vectors, visuals, kept, failures = [], [], [], []
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(paths), unit="img", desc="images", disable=_disable(progress)) as bar:
        pending: deque[list[Future]] = deque()

        def submit(index: int) -> None:
            pending.append([pool.submit(load_image, path, bundle.preprocess) for path in batches[index]])

        for index in range(min(PREFETCH_BATCHES, len(batches))):
            submit(index)
        for index in range(len(batches)):
            results = [future.result() for future in pending.popleft()]
            if index + PREFETCH_BATCHES < len(batches):
                submit(index + PREFETCH_BATCHES)
            offset = index * batch_size
            good = [(offset + i, r) for i, r in enumerate(results) if isinstance(r, torch.Tensor)]
            failures += [(paths[offset + i], r) for i, r in enumerate(results) if isinstance(r, str)]
            if good:
                pixels = torch.stack([t for _, t in good])
                if with_visual:
                    embedded, visual = bundle.model.encode_images(pixels, with_visual=True)
                    vectors.append(embedded.cpu())  # (b, D)
                    visuals.append(visual.cpu())  # (b, V)
                else:
                    vectors.append(bundle.model.encode_images(pixels).cpu())  # (b, D)
                kept += [i for i, _ in good]
            bar.update(len(results))
    for path, reason in failures[:5]:
        log.warning("skipped unreadable image %s (%s)", path, reason)
    dim = bundle.model.dim
    visual = (torch.cat(visuals) if visuals else torch.empty(0, bundle.model.visual_dim)) if with_visual else None
    return EncodedImages(torch.cat(vectors) if vectors else torch.empty(0, dim), kept, failures, visual)


def encode_texts(model, texts: Sequence[str], *, batch_size: int = 256, progress: bool | None = None,
                 desc: str = "texts") -> torch.Tensor:
    """(N, D) unit vectors of `texts`, batch by batch."""
    from tqdm import tqdm

    chunks = []
    with tqdm(total=len(texts), unit="txt", desc=desc, disable=_disable(progress)) as bar:
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            chunks.append(model.encode_texts(batch).cpu())
            bar.update(len(batch))
    return torch.cat(chunks) if chunks else torch.empty(0, model.dim)


def _disable(progress: bool | None) -> bool | None:
    """tqdm's `disable`: None shows the bar only on a terminal."""
    return None if progress is None else not progress
