"""Image and text encode throughput of a LiT preset (random weights, real shapes), and the fraction of peak it reaches.

    python bench/lit_encode.py                                   # lit-b16b-2, batches 1 and 32, CPU fp32 here
    python bench/lit_encode.py --device cuda --batches 1 32 256  # bf16 autocast (LitModel's GPU path)
    python bench/lit_encode.py --preset lit-l16l --peak-tflops 989

FLOPs are counted as 2 per multiply-accumulate, like every peak-TFLOPs figure: ViT-B/16 at 224 px is the familiar
"17.6 GFLOPs" which are really 17.6 G multiply-accumulates (35.1 GFLOP); BERT-base on LiT's 16 tokens is 1.4 GMAC.
Peak: `--peak-tflops`, else 989 TFLOP/s on CUDA (H100 SXM dense bf16) or, on CPU, a measured fp32 matmul rate
(an achievable peak for this machine, not the datasheet's). Text timings include tokenization, as in real use.
Timings: one warm-up batch, then `--timed-batches` batches; compare rows of one run, not across machines.
"""

from __future__ import annotations

import argparse
import time

import torch

import models
from models.device import autocast_dtype, resolve_device
from models.lit_arch import LitArch
from models.lit_presets import RELEASES

H100_BF16_DENSE_TFLOPS = 989.0
CAPTIONS = ["a photo of a dog on the beach", "red car", "a bowl of soup on a wooden table", "sunset over mountains"]


def image_macs(arch: LitArch) -> float:
    """Multiply-accumulates of one ViT forward: patch embedding, per block qkv/proj/MLP matmuls and attention."""
    tokens, width = (arch.image_size // arch.patch) ** 2 + 1, arch.image_width
    per_block = tokens * (4 * width * width + 2 * width * arch.image_mlp) + 2 * tokens * tokens * width
    patch_embed = (tokens - 1) * 3 * arch.patch ** 2 * width
    return patch_embed + arch.image_depth * per_block + width * arch.image_head


def text_macs(arch: LitArch, tokens: int = 16) -> float:
    width = arch.text_width
    per_layer = tokens * (4 * width * width + 2 * width * arch.text_mlp) + 2 * tokens * tokens * width
    return arch.text_depth * per_layer + width * arch.embed_dim


def cpu_matmul_tflops(size: int = 2048, repeats: int = 5) -> float:
    """Achievable fp32 matmul rate on this CPU with torch's current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e12


def rate(fn, items: int, timed_batches: int, device: torch.device) -> float:
    fn()  # warm-up: allocations, kernels, autotuning
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(timed_batches):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return items * timed_batches / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="lit-b16b-2", choices=sorted(RELEASES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--timed-batches", type=int, default=2, help="batches timed per cell after one warm-up")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--peak-tflops", type=float, help="device peak for the '% of peak' columns")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    arch = RELEASES[args.preset].arch
    dtype = autocast_dtype(device)
    if args.peak_tflops:
        peak, source = args.peak_tflops, "--peak-tflops"
    elif device.type == "cuda":
        peak, source = H100_BF16_DENSE_TFLOPS, "H100 dense bf16 datasheet"
    else:
        peak, source = cpu_matmul_tflops(), "measured fp32 2048³ matmul"
    bundle = models.create(args.preset, device=str(device), random_init=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.preset} (random init) on {name}; torch {torch.__version__}; "
          f"peak {peak:.3g} TFLOP/s ({source}); image {image_macs(arch) / 1e9:.1f} GMAC, "
          f"text {text_macs(arch) / 1e9:.2f} GMAC (16 tokens)\n")
    print("| preset | device | precision | batch | img/s | txt/s | img TFLOP/s | img % peak | txt TFLOP/s "
          "| txt % peak |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    pixel = torch.rand(3, arch.image_size, arch.image_size, device=device) * 2 - 1
    precision = "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    for batch in args.batches:
        pixels = pixel.expand(batch, *pixel.shape).contiguous()
        texts = (CAPTIONS * batch)[:batch]
        img = rate(lambda p=pixels: bundle.model.encode_images(p), batch, args.timed_batches, device)
        txt = rate(lambda t=texts: bundle.model.encode_texts(t), batch, args.timed_batches, device)
        img_tflops, txt_tflops = 2 * image_macs(arch) * img / 1e12, 2 * text_macs(arch) * txt / 1e12
        print(f"| {args.preset} | {device.type} | {precision} | {batch} | {img:.1f} | {txt:.1f} | {img_tflops:.3f} | "
              f"{100 * img_tflops / peak:.1f}% | {txt_tflops:.3f} | {100 * txt_tflops / peak:.1f}% |")


if __name__ == "__main__":
    main()
