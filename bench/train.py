"""LiT's training speed-up, measured: caption pairs/s with cached image (and frozen-text) outputs vs. recomputing them.

    python bench/train.py [--preset offline-lite] [--modes head last:1 whole] [--batch 32] [--steps 5] [--device auto]

Three loops, same step (contrastive loss, backward, AdamW), timed side by side in one run:
- "image tower per step": decode the batch's JPEGs and run the (frozen, no-grad) image tower, then the text tower;
- "image cached": the image side is a stored vector of the locked tower (Zhai et al. 2022), the text tower runs whole;
- "image+text cached": what `models.train` does — also the frozen part of the text tower (everything below the
  head for `head`, the lower blocks for `last:N`) is read from a per-caption cache (models/train/text_cache.py);
  modes with nothing frozen (whole, lora) show "—".
Also reported: the one-time cost of filling the caches (images/s, captions/s). Compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import models
from models.device import resolve_device
from models.train.config import TrainMode
from models.train.image_vectors import read_image
from models.train.loop import contrastive_loss
from models.train.text_cache import frozen_text_cache
from models.train.trainable import parameter_groups, select_trainable

CAPTIONS = ["a dog running on the beach", "red car parked in the street", "a bowl of soup on a wooden table",
            "sunset over the mountains", "two children playing football", "a cat asleep on a sofa"]


def make_jpegs(folder: Path, n: int, size: tuple[int, int] = (1600, 1200)) -> list[Path]:
    """Photo-sized JPEGs with smooth gradients and noise (decode cost close to a real 2 MP photo)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        y, x = np.mgrid[0:size[1], 0:size[0]]
        base = np.stack([(x * (i + 1)) % 256, (y * 2) % 256, (x + y) % 256], -1).astype(np.float32)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"photo{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_mode(preset: str, mode: str, paths: list[Path], batch: int, steps: int, device: torch.device) -> dict:
    bundle = models.create(preset, device=str(device))
    model = bundle.model
    select_trainable(model, TrainMode.parse(mode))
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.01), lr=1e-5)
    texts = [f"{CAPTIONS[i % len(CAPTIONS)]} number {i}" for i in range(batch)]
    rows = np.arange(batch)

    def pixels() -> torch.Tensor:  # (B, 3, H, W): decode + preprocess, as the image side of an uncached loop
        return torch.stack([bundle.preprocess(read_image(p, bundle.input_size)) for p in paths[:batch]])

    cached = model.encode_images(pixels()).clone()  # (B, D): the cache (clone: out of inference mode)

    def step(image_vectors: torch.Tensor, text_cache=None) -> None:
        model.train()
        if mode == "head":
            model.text_tower.encoder.eval()  # as the Trainer does
        text = text_cache.text_features(rows) if text_cache is not None else model.text_features(texts)
        loss = contrastive_loss(model, image_vectors, text)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed(fn) -> float:
        fn()  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        return steps * batch / (time.perf_counter() - start)

    fill = timed(lambda: model.encode_images(pixels()))
    start = time.perf_counter()
    text_cache = frozen_text_cache(model, TrainMode.parse(mode), texts)
    text_fill = batch / (time.perf_counter() - start)
    both = timed(lambda: step(cached, text_cache)) if text_cache is not None else None
    return {"mode": mode, "cached": timed(lambda: step(cached)), "both": both,
            "uncached": timed(lambda: step(model.encode_images(pixels()).clone())), "fill": fill,
            "text_fill": text_fill if text_cache is not None else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="offline-lite")
    parser.add_argument("--modes", nargs="+", default=["head", "last:1", "whole"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per cell (after one warm-up step)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}, "
          f"preset {args.preset}, batch {args.batch}, {args.steps} steps\n")
    print("| --train | image tower per step (pairs/s) | image cached | image+text cached | image cached × | "
          "image+text cached × | cache fill (img/s) | text cache fill (captions/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.batch)
        for mode in args.modes:
            row = bench_mode(args.preset, mode, paths, args.batch, args.steps, device)
            both = f"{row['both']:.1f} | " if row["both"] else "— | "
            both_x = f"{row['both'] / row['uncached']:.1f}× | " if row["both"] else "— | "
            text_fill = f"{row['text_fill']:.1f} |" if row["text_fill"] else "— |"
            print(f"| {row['mode']} | {row['uncached']:.1f} | {row['cached']:.1f} | {both}"
                  f"{row['cached'] / row['uncached']:.1f}× | {both_x}{row['fill']:.1f} | {text_fill}")


if __name__ == "__main__":
    main()
