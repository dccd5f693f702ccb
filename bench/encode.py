"""Images/s and texts/s of each installed preset on this machine, at batch sizes 1 and 32.

    python bench/encode.py [--presets offline-lite test-tiny] [--batches 1 32] [--seconds 3] [--device auto]

Prints a markdown table. Timings are wall-clock over repeated batches after one warm-up batch; compare ratios
between rows of one run rather than absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image

import models
from models.device import resolve_device

CAPTIONS = ["a photo of a dog on the beach", "red car", "a bowl of soup on a wooden table", "sunset over mountains"]


def _rate(fn, items_per_call: int, seconds: float, device: torch.device) -> float:
    fn()  # warm-up (allocations, cudnn autotune)
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 2:
            return calls * items_per_call / elapsed


def bench_preset(name: str, batches: list[int], seconds: float, device: torch.device) -> list[dict]:
    bundle = models.create(name, device=str(device))
    pixel = bundle.preprocess(Image.new("RGB", (640, 480), "gray"))
    rows = []
    for batch in batches:
        pixels = pixel.expand(batch, *pixel.shape).contiguous()
        texts = (CAPTIONS * batch)[:batch]
        rows.append({
            "preset": name, "batch": batch, "device": device.type,
            "img/s": _rate(lambda p=pixels: bundle.model.encode_images(p), batch, seconds, device),
            "txt/s": _rate(lambda t=texts: bundle.model.encode_texts(t), batch, seconds, device),
        })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["offline-lite", "test-tiny"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per cell")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}\n")
    print("| preset | device | batch | images/s | texts/s |")
    print("|---|---|---:|---:|---:|")
    for name in args.presets:
        for row in bench_preset(name, args.batches, args.seconds, device):
            print(f"| {row['preset']} | {row['device']} | {row['batch']} | {row['img/s']:.1f} | {row['txt/s']:.1f} |")


if __name__ == "__main__":
    main()
