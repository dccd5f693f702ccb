"""Decode throughput on 12-megapixel JPEGs: full decode vs Pillow's reduced-size (DCT-scaled) decode.

Both pipelines end where the model starts: an RGB image whose shorter side is `--size` px (antialiased bilinear
resize, as torchvision's Resize does on PIL images). Timed single-threaded (per core) and with a thread pool
(Pillow releases the GIL while decoding). Files are generated once into --dir and reused.

    .venv/bin/python bench/decode.py --n 50
    .venv/bin/python bench/decode.py --n 24 --worker   # the indexer's per-image worker, before vs now, per stage

`--worker` times what one decode-pool thread spends per new photo (sha256, reduced decode, preprocess, thumbnail
resize + JPEG encode), the former path (timm's transform; Lanczos thumbnail with reducing_gap=3) and the current one
(`CenterCropPreprocess`; box reduce + Lanczos) interleaved photo by photo on the same decoded image, CPU time of the
calling thread, so machine load hits both alike; the ratio is the number to trust on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, features

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from indexer.scan.decode import decode_image  # noqa: E402
from indexer.scan.hashing import content_hash  # noqa: E402
from indexer.scan.thumbnails import _shrink  # noqa: E402

log = logging.getLogger("bench.decode")
SIZE_12MP = (4000, 3000)


def photo_like(size: tuple[int, int], seed: int) -> Image.Image:
    """Gradients + soft blobs + luminance grain: ~4-5 MB at quality 90 for 12 MP, like a phone photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    sw, sh = w // 8, h // 8
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    a = np.zeros((sh, sw, 3), np.float32)
    for c in range(3):
        a[..., c] = 128 + 64 * np.sin(x / sw * rng.uniform(2, 6) + rng.uniform(0, 6))
        a[..., c] += 60 * np.cos(y / sh * rng.uniform(2, 6) + rng.uniform(0, 6))
    for _ in range(8):
        cx, cy, r = rng.uniform(0, sw), rng.uniform(0, sh), rng.uniform(0.05, 0.3) * min(sw, sh)
        a += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(-90, 90, 3)
    smooth = np.asarray(Image.fromarray(a.clip(0, 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR))
    grain = rng.normal(0.0, 12.0, (h, w, 1)).astype(np.int16)
    return Image.fromarray((smooth.astype(np.int16) + grain).clip(0, 255).astype(np.uint8))


def ensure_files(folder: Path, n: int, quality: int, workers: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{i:03d}_q{quality}.jpg" for i in range(n)]
    missing = [(i, p) for i, p in enumerate(paths) if not p.exists()]
    if missing:
        log.info("generating %d 12 MP JPEGs in %s", len(missing), folder)

        def make(item: tuple[int, Path]) -> None:
            i, path = item
            tmp = path.with_suffix(".tmp")
            photo_like(SIZE_12MP, seed=i).save(tmp, format="JPEG", quality=quality)
            os.replace(tmp, path)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(make, missing))
    return paths


def to_model_size(img: Image.Image, size: int) -> Image.Image:
    scale = size / min(img.size)
    new = (max(size, round(img.width * scale)), max(size, round(img.height * scale)))
    return img.resize(new, Image.Resampling.BILINEAR)


def throughput(
    work: Callable[[bytes], object], blobs: list[bytes], threads: int, repeat: int = 1
) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process), each the best of `repeat` passes.

    CPU seconds make the single-thread figure robust on a shared machine: other processes' load stretches wall time,
    not the CPU time this process spends per image.
    """
    work(blobs[0])  # warm up (plugin import, allocator)
    best_wall = best_cpu = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            if threads == 1:
                for blob in blobs:
                    work(blob)
            else:
                list(pool.map(work, blobs))
            best_wall = max(best_wall, len(blobs) / (time.perf_counter() - wall))
            best_cpu = max(best_cpu, len(blobs) / (time.process_time() - cpu))
    return best_wall, best_cpu


def main(argv: list[str] | None = None) -> None:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="number of 12 MP JPEGs (default 50)")
    parser.add_argument("--dir", type=Path, default=Path("bench/out/decode"), help="cache folder for the JPEGs")
    parser.add_argument("--size", type=int, default=224, help="model input side; reduced decode asks for 2x this")
    parser.add_argument("--threads", type=int, default=cpus, help=f"thread pool size (default os.cpu_count()={cpus})")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the generated files")
    parser.add_argument("--repeat", type=int, default=1, help="passes per measurement; the best one is reported")
    parser.add_argument("--worker", action="store_true", help="time the indexer's worker stages, before vs now")
    parser.add_argument("--model", default="offline-lite", help="--worker: whose preprocessing (default offline-lite)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    paths = ensure_files(args.dir, args.n, args.quality, args.threads)
    blobs = [p.read_bytes() for p in paths]
    mean_mb = sum(map(len, blobs)) / len(blobs) / 1e6
    if args.worker:
        print(f"\n{len(blobs)} JPEGs, {SIZE_12MP[0]}x{SIZE_12MP[1]}, mean {mean_mb:.1f} MB, quality {args.quality}; "
              f"{cpus} CPUs ({platform.processor() or platform.machine()}); Pillow {Image.__version__}; model "
              f"{args.model}; one decode-pool thread, CPU ms per image, best of {max(2, args.repeat)} rounds\n")
        print(worker_table(blobs, args.model, max(2, args.repeat)))
        return
    pipelines = {
        "full decode → resize": lambda b: to_model_size(decode_image(b, min_side=None).image, args.size),
        f"reduced decode (draft {2 * args.size}) → resize": lambda b: to_model_size(
            decode_image(b, min_side=2 * args.size).image, args.size
        ),
    }
    rates = {}
    for name, work in pipelines.items():
        log.info("timing %s", name)
        (one, one_cpu), (many, _) = (throughput(work, blobs, t, args.repeat) for t in (1, args.threads))
        rates[name] = (one_cpu, one, many)
    start = time.perf_counter()
    for blob in blobs:
        content_hash(blob)
    hash_ms = (time.perf_counter() - start) / len(blobs) * 1e3

    print(
        f"\n{len(blobs)} JPEGs, {SIZE_12MP[0]}x{SIZE_12MP[1]}, mean {mean_mb:.1f} MB, quality {args.quality}; "
        f"{cpus} CPUs ({platform.processor() or platform.machine()}); Pillow {Image.__version__}, "
        f"libjpeg-turbo {features.version('libjpeg_turbo')}; target {args.size} px; best of {args.repeat}\n"
    )
    print_table(rates, args.threads)
    print(f"\nsha256 of the same bytes: {hash_ms:.1f} ms per file ({mean_mb / hash_ms * 1e3:.0f} MB/s, one thread)")


def worker_table(blobs: list[bytes], model: str, repeat: int) -> str:
    """Markdown: per-stage CPU ms per image of the indexer's decode-pool work, former path vs current path."""
    import io

    import torch
    from timm.data import create_transform

    import models
    from models.building import _as_tuples

    bundle = models.create(model, device="cpu")
    reference = create_transform(**_as_tuples(bundle.model.image_tower.preprocess_config), is_training=False)
    side = 2 * bundle.input_size

    def thumb(img: Image.Image, gap: float) -> None:
        scale = 320 / max(img.size)
        small = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS,
                           reducing_gap=gap)
        small.save(io.BytesIO(), format="JPEG", quality=80, optimize=True)

    def now_preprocess(blob: bytes, img: Image.Image, scratch: dict) -> None:
        scratch["pixels"] = np.array(img)  # DecodedImage.pixels: one export, shared with the thumbnail
        bundle.preprocess(scratch["pixels"] if getattr(bundle.preprocess, "accepts_arrays", False) else img)

    stages = {  # name: (before, now); each takes (blob, decoded image, per-photo scratch)
        "sha256": (lambda b, im, s: content_hash(b),) * 2,
        f"decode (draft ≥{side} px)": (lambda b, im, s: decode_image(b, min_side=side),) * 2,
        "preprocess (+ pixel export, now)": (lambda b, im, s: reference(im), now_preprocess),
        "thumbnail (resize + JPEG q80)": (lambda b, im, s: thumb(im, 3.0), lambda b, im, s: _shrink(
            s["pixels"], 320).save(io.BytesIO(), format="JPEG", quality=80, optimize=True)),
    }
    decoded = [decode_image(b, min_side=side).image for b in blobs]

    def run() -> dict[tuple[str, int], float]:
        best: dict[tuple[str, int], float] = {}
        for _ in range(repeat):
            spent = dict.fromkeys(best or [(n, k) for n in stages for k in (0, 1)], 0.0)
            for blob, img in zip(blobs, decoded, strict=True):  # interleaved: load hits both paths alike
                scratch: dict = {}
                for name, fns in stages.items():
                    for k, fn in enumerate(fns):
                        start = time.thread_time()
                        fn(blob, img, scratch)
                        spent[name, k] += time.thread_time() - start
            best = {key: min(best.get(key, 1e9), v / len(blobs) * 1e3) for key, v in spent.items()}
        return best

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # a pool thread, as in the indexer (torch ops stay on the calling thread)
        ms = pool.submit(run).result()
    del torch
    rows = ["| stage | before (ms/img) | now (ms/img) | now / before |", "|---|---:|---:|---:|"]
    for name in stages:
        rows.append(f"| {name} | {ms[name, 0]:.1f} | {ms[name, 1]:.1f} | {ms[name, 1] / ms[name, 0]:.2f}x |")
    total = [sum(ms[name, k] for name in stages) for k in (0, 1)]
    rows.append(f"| **worker total** | **{total[0]:.1f}** | **{total[1]:.1f}** | **{total[1] / total[0]:.2f}x** |")
    return "\n".join(rows)


def print_table(rates: dict[str, tuple[float, float, float]], threads: int) -> None:
    """Markdown: one row per pipeline (CPU-time rate, wall rate, threaded wall rate), then reduced/full ratios."""
    cols = ["1 thread, per CPU-second", "1 thread, wall", f"{threads} threads, wall"]
    print("| pipeline | " + " | ".join(f"{c} (img/s)" for c in cols) + " | thread scaling |")
    print("|---|---:|---:|---:|---:|")
    for name, (one_cpu, one, many) in rates.items():
        print(f"| {name} | {one_cpu:.1f} | {one:.1f} | {many:.1f} | {many / one:.2f}x |")
    full, reduced = rates.values()
    ratios = " | ".join(f"**{r / f:.2f}x**" for r, f in zip(reduced, full, strict=True))
    print(f"| **reduced / full** | {ratios} | |")


if __name__ == "__main__":
    main()
