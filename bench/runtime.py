"""Inference runtimes for both towers on this CPU, with fidelity to fp32: which one should the indexer use?

    python bench/runtime.py [--models offline-lite lit-b16b-2] [--photos DIR] [--batch 8] [--timed 2]
                            [--runtimes bf16 bf16-cast bf16-cl int8 compile ort ort-int8]

For each model (LiT presets with random full-size weights: real shapes, no download; offline-lite with its shipped
weights) and each runtime × precision, in one run, side by side:
- img/s: the image tower on a batch of `--batch` preprocessed images (real photos from --photos when given);
- txt/s: the text tower on one query at a time (what a search costs), tokenization included;
- fidelity to torch fp32 eager: mean and min cosine of image and text vectors, and top-10 agreement (for each
  caption, the overlap of the 10 nearest images ranked with this runtime's vectors vs fp32's, on all the images).
Bars (issue 14): cos ≥ 0.999, mean and min, image and text (int8: ≥ 0.995 and top-10 agreement ≥ 95%); `pass`
marks a row that meets them and `best` the fastest passing image row. Runtimes: torch eager fp32, torch bf16
autocast on CPU (`bf16`), torch with the backbone / text encoder cast to bf16 and heads, pooling and normalisation
in fp32 (`bf16-cast`: what `--precision bf16` runs, models.runtime.bf16_towers; `bf16-cl` adds channels_last for
conv nets), torch dynamic int8 quantisation of the Linear layers, torch.compile (inductor), ONNX Runtime CPU fp32
and dynamically quantised int8 (`pip install onnxruntime onnx`). Converted graphs go to a temp dir here (the bench
measures; it caches nothing). Run it as `python -m bench.runtime` from a checkout so the checkout's code is used.
Each runtime is timed in its own block: on a shared machine a burst of load sinks whichever row it lands on, so
compare bf16 with fp32 in bench/runtime_interleaved.py, which times them in alternating rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import models
from models.model import l2_normalize

CAPTIONS = ["a dog running on the beach", "red car parked in the street", "a bowl of soup on a wooden table",
            "sunset over the mountains", "two children playing football", "a cat asleep on a sofa",
            "snow on a pine forest", "a bridge over a river at night", "flowers in a garden", "a city skyline"]


class TextForward(nn.Module):
    """The text tower as a pure tensor function (ids, mask) → features, for export and compile."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.tower(input_ids, attention_mask)


def photos_or_noise(bundle, photos: Path | None, n: int) -> torch.Tensor:
    from indexer.scan.decode import decode_image  # bench only: the same decode the indexer uses

    if photos is not None:
        files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        if files:
            images = [bundle.preprocess(decode_image(files[i % len(files)].read_bytes(),
                                                     min_side=2 * bundle.input_size).image) for i in range(n)]
            return torch.stack(images)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, bundle.input_size, bundle.input_size, generator=generator)


def autocast(module: Callable) -> Callable:
    """`module` under CPU bf16 autocast, its output back in fp32."""
    def run(*args):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return module(*args).float()
    return run


def torch_runtimes(bundle, which: list[str]) -> dict[str, tuple[Callable, Callable]]:
    """name → (image fn: pixels → features, text fn: (ids, mask) → features), torch flavours."""
    image, text = bundle.model.image_tower.eval(), TextForward(bundle.model.text_tower).eval()
    out: dict[str, tuple[Callable, Callable]] = {"torch fp32 eager": (image, text)}
    if "bf16" in which:
        out["torch bf16 autocast"] = (autocast(image), autocast(text))
    if "bf16-cast" in which:
        out["torch bf16 weights (fp32 head)"] = bf16_cast(bundle, channels_last=False)
    if "bf16-cl" in which:  # conv nets: NHWC activations for oneDNN, bf16 weights
        out["torch bf16 weights, channels_last"] = bf16_cast(bundle, channels_last=True)
    if "int8" in which:
        import copy

        from torch.ao.quantization import quantize_dynamic

        out["torch int8 dynamic (Linear)"] = (quantize_dynamic(copy.deepcopy(image), {nn.Linear}, dtype=torch.qint8),
                                              quantize_dynamic(copy.deepcopy(text), {nn.Linear}, dtype=torch.qint8))
    if "compile" in which:
        out["torch.compile (inductor)"] = (torch.compile(image), torch.compile(text, dynamic=True))
    return out


def bf16_cast(bundle, channels_last: bool) -> tuple[Callable, Callable]:
    """Copies of both towers with backbone / encoder weights in bf16 (oneDNN, AMX where the CPU has it); pooling,
    heads and the final normalisation in fp32. What models.runtime's `bf16` precision runs."""
    from models.runtime import bf16_towers

    return bf16_towers(bundle.model, channels_last=channels_last)


def ort_runtimes(bundle, which: list[str], pixels: torch.Tensor, tmp: Path) -> dict[str, tuple[Callable, Callable]]:
    if not {"ort", "ort-int8"} & set(which):
        return {}
    try:
        import onnxruntime as ort
    except ImportError:
        print("(onnxruntime not installed: pip install onnxruntime onnx)")
        return {}
    image, text = bundle.model.image_tower.eval(), TextForward(bundle.model.text_tower).eval()
    tokens = bundle.tokenizer(CAPTIONS[:2])
    paths = {"image": tmp / "image.onnx", "text": tmp / "text.onnx"}
    torch.onnx.export(image, (pixels[:2],), str(paths["image"]), input_names=["pixels"], output_names=["features"],
                      dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}}, dynamo=False, opset_version=17)
    torch.onnx.export(text, (tokens["input_ids"], tokens["attention_mask"]), str(paths["text"]),
                      input_names=["input_ids", "attention_mask"], output_names=["features"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "len"}, "attention_mask": {0: "batch", 1: "len"},
                                    "features": {0: "batch"}}, dynamo=False, opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()

    def sessions(image_path: Path, text_path: Path) -> tuple[Callable, Callable]:
        img = ort.InferenceSession(str(image_path), options, providers=["CPUExecutionProvider"])
        txt = ort.InferenceSession(str(text_path), options, providers=["CPUExecutionProvider"])
        return (lambda p: torch.from_numpy(img.run(None, {"pixels": p.numpy()})[0]),
                lambda ids, mask: torch.from_numpy(txt.run(None, {"input_ids": ids.numpy(),
                                                                   "attention_mask": mask.numpy()})[0]))

    out = {}
    if "ort" in which:
        out["onnxruntime fp32"] = sessions(paths["image"], paths["text"])
    if "ort-int8" in which:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for name in ("image", "text"):
            quantize_dynamic(str(paths[name]), str(tmp / f"{name}-int8.onnx"), weight_type=QuantType.QInt8)
        out["onnxruntime int8 dynamic"] = sessions(tmp / "image-int8.onnx", tmp / "text-int8.onnx")
    return out


def timed(fn: Callable[[], object], items: int, repeats: int) -> float:
    fn()  # warm-up (compilation, allocation)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return items * repeats / (time.perf_counter() - start)


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (l2_normalize(a.float()) * l2_normalize(b.float())).sum(-1)


def top10_agreement(img: torch.Tensor, txt: torch.Tensor, ref_img: torch.Tensor, ref_txt: torch.Tensor) -> float:
    k = min(10, len(img))
    ours = (l2_normalize(txt.float()) @ l2_normalize(img.float()).T).topk(k).indices
    theirs = (l2_normalize(ref_txt) @ l2_normalize(ref_img).T).topk(k).indices
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ours, theirs, strict=True)]))


def bench_model(name: str, args: argparse.Namespace) -> list[str]:
    options = {"random_init": True} if name.startswith("lit-") else {}
    bundle = models.create(name, device="cpu", **options)
    pixels = photos_or_noise(bundle, args.photos, max(args.batch, 12))
    batch = pixels[:args.batch]
    tokens = [bundle.tokenizer([c]) for c in CAPTIONS]
    all_tokens = bundle.tokenizer(CAPTIONS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        runtimes = torch_runtimes(bundle, args.runtimes)
        with contextlib.suppress(Exception) if args.keep_going else contextlib.nullcontext():
            runtimes |= ort_runtimes(bundle, args.runtimes, pixels, Path(tmp))
        reference = None
        results = []
        for label, (image_fn, text_fn) in runtimes.items():
            try:
                img_vectors = image_fn(pixels)
                txt_vectors = text_fn(all_tokens["input_ids"], all_tokens["attention_mask"])
                img_rate = timed(lambda f=image_fn: f(batch), len(batch), args.timed)
                txt_rate = timed(lambda f=text_fn: [f(t["input_ids"], t["attention_mask"]) for t in tokens],
                                 len(tokens), args.timed)
            except Exception as err:  # noqa: BLE001  (a runtime that fails here is a row saying so, not a crash)
                rows.append(f"| {name} | {label} | failed: {type(err).__name__}: {str(err)[:80]} | | | | | | | | |")
                continue
            if reference is None:
                reference = (img_vectors.float(), txt_vectors.float())
            img_cos, txt_cos = cosines(img_vectors, reference[0]), cosines(txt_vectors, reference[1])
            agree = top10_agreement(img_vectors, txt_vectors, *reference)
            int8 = "int8" in label
            passing = (min(img_cos.mean(), txt_cos.mean(), img_cos.min(), txt_cos.min()) >= (0.995 if int8 else 0.999)
                       and (agree >= 0.95 or not int8))
            results.append((label, img_rate, txt_rate, img_cos, txt_cos, agree, passing))
    fastest = max((r for r in results if r[6]), key=lambda r: r[1], default=None)
    base_img, base_txt = results[0][1], results[0][2]
    for label, img_rate, txt_rate, img_cos, txt_cos, agree, passing in results:
        mark = ("**best**" if fastest and label == fastest[0] else "pass") if passing else "fail"
        rows.append(f"| {name} | {label} | {img_rate:.1f} ({img_rate / base_img:.2f}×) | "
                    f"{txt_rate:.1f} ({txt_rate / base_txt:.2f}×) | {img_cos.mean():.5f} | {img_cos.min():.5f} | "
                    f"{txt_cos.mean():.5f} | {txt_cos.min():.5f} | {100 * agree:.0f}% | {mark} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["offline-lite", "lit-b16b-2"])
    parser.add_argument("--runtimes", nargs="+", default=["bf16", "bf16-cast", "int8", "ort", "ort-int8"],
                        help="besides fp32 eager: bf16 bf16-cast bf16-cl int8 compile ort ort-int8")
    parser.add_argument("--photos", type=Path, help="real photos for the image inputs (default: noise)")
    parser.add_argument("--batch", type=int, default=8, help="images per timed image batch")
    parser.add_argument("--timed", type=int, default=2, help="timed repeats after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch / ORT intra-op threads (0: torch's default)")
    parser.add_argument("--keep-going", action="store_true", help="skip ONNX export failures instead of stopping")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; image batch {args.batch}, text batch 1; "
          f"inputs: {args.photos or 'noise'}\n")
    print("| model | runtime | img/s (× fp32) | txt/s (× fp32) | img cos mean | img cos min | txt cos mean | "
          "txt cos min | top-10 agreement | bars |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.models:
        for row in bench_model(name, args):
            print(row, flush=True)


if __name__ == "__main__":
    main()
