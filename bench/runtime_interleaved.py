"""torch fp32 vs the bf16 options on the CPU, timed in interleaved rounds: a steadier ratio on a shared machine.

    python -m bench.runtime_interleaved [--models lit-b16b-2 offline-lite] [--batch 16] [--rounds 3] [--threads 2 1]

bench/runtime.py times each runtime in its own block, so a burst of load from other jobs sinks whichever row it
lands on (on a shared 2-core machine its ratios swung from 0.5× to 12× between runs). Here every option runs once
per round, in turn, and each keeps its best round; fidelity is the min cosine to fp32 over the batch (images) and
five captions (texts). Options: bf16 autocast, bf16 weights as they come (NCHW, eager Linear) and
models.runtime.bf16_towers as `--precision bf16` runs it (channels_last for conv nets, Linear weights prepacked
for oneDNN). Images: a batch of noise; text: one query at a time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import models  # noqa: E402
from bench.runtime import autocast  # noqa: E402
from models.runtime import bf16_towers, interleaved_best  # noqa: E402

CAPTIONS = ["a dog running on the beach", "red car parked in the street", "sunset over the mountains",
            "two children playing football", "a cat asleep on a sofa"]


def bench_model(name: str, args: argparse.Namespace) -> None:
    bundle = models.create(name, device="cpu", **({"random_init": True} if name.startswith("lit-") else {}))
    image, text = bundle.model.image_tower.eval(), bundle.model.text_tower.eval()
    plain = bf16_towers(bundle.model, channels_last=False, pack=False)
    shipped = bf16_towers(bundle.model)
    options = {"fp32": (image, text), "bf16 autocast": (autocast(image), autocast(text)),
               "bf16 weights (NCHW, eager Linear)": plain, "bf16 weights (`--precision bf16`)": shipped}
    pixels = torch.randn(args.batch, 3, bundle.input_size, bundle.input_size,
                         generator=torch.Generator().manual_seed(0))
    queries = [text.tokenizer([c]) for c in CAPTIONS]
    every = text.tokenizer(CAPTIONS)
    cos = torch.nn.functional.cosine_similarity
    with torch.inference_mode():
        ref_image, ref_text = image(pixels), text(every["input_ids"], every["attention_mask"])
        fidelity = {k: (cos(ref_image, i(pixels)).min().item(),
                        cos(ref_text, t(every["input_ids"], every["attention_mask"])).min().item())
                    for k, (i, t) in options.items()}
        for threads in args.threads:
            torch.set_num_threads(threads)
            calls = {("img", k): (lambda f=i: f(pixels)) for k, (i, _) in options.items()}
            calls |= {("txt", k): (lambda f=t: [f(q["input_ids"], q["attention_mask"]) for q in queries])
                      for k, (_, t) in options.items()}
            best = interleaved_best(calls, args.rounds)
            for k in options:
                img_x, txt_x = best["img", "fp32"] / best["img", k], best["txt", "fp32"] / best["txt", k]
                print(f"| {name} | {threads} | {k} | {args.batch / best['img', k]:.2f} ({img_x:.2f}×) | "
                      f"{len(queries) / best['txt', k]:.1f} ({txt_x:.2f}×) | {fidelity[k][0]:.5f} | "
                      f"{fidelity[k][1]:.5f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["lit-b16b-2", "offline-lite"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}; image batch {args.batch}, text one query; best of {args.rounds} interleaved "
          "rounds\n")
    print("| model | threads | option | img/s (× fp32) | txt/s (× fp32) | img cos min | txt cos min |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in args.models:
        bench_model(name, args)


if __name__ == "__main__":
    main()
