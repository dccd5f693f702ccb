"""Where and in what precision inference runs on the CPU: torch fp32, ONNX Runtime fp32 (a graph exported once into
the model cache), or torch bf16 (bf16 copies of the backbone and text encoder; heads, pooling, normalisation fp32).

Measured on this machine (2 shared cores with AMX; README has the tables): ONNX Runtime fp32 encoded
offline-lite's images 9.9× and its queries 18× faster than torch fp32 eager with identical vectors
(bench/runtime.py), but a random full-size LiT-B/16 only 1.2× / 1.5×. bf16 weights (`bf16_towers`) ran LiT-B/16
images 4.3× and its BERT queries 2.1–2.2× faster than fp32 at cos ≥ 0.9999 (bench/runtime_interleaved.py: the
queries need the prepacked Linear weights, 1.7× without), offline-lite's images 6.5× (with channels_last); bf16
autocast re-casts every weight on every call (LiT queries 0.7–0.8×). int8 variants missed the bars (torch) or the
cos 0.999 that keeps one collection.

So `use_runtime` only ever encodes with an option whose vectors match torch fp32's at cos ≥ MIN_COS on every
calibration vector (measured on the loaded weights, on this machine, once): such vectors share the fp32
collection, and `LitModel.inference` names what ran so the indexer records it with the collection. `auto` keeps the
fastest passing option per tower. On CUDA it is torch with its bf16/fp16 autocast, untouched here. ONNX Runtime is
optional: `pip install 'loupe[onnx]'`.

The exported graph is cached as `<model cache>/onnx/<image_tower_id>-image.onnx` (and `-text-<digest>.onnx` for a
text tower), written to a temp file and renamed under an advisory lock, as the checkpoint code does; the
measurements as `<image_tower_id>-text-<digest>-measured.json` beside them. A text tower swapped by a promotion is
no longer the exported (or bf16-copied) one: encoding falls back to torch fp32 for it rather than mixing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from models.bundle import ModelBundle
from models.device import autocast_dtype
from models.lit_download import _exclusive as exclusive

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16")
OPSET = 17
MIN_COS = 0.999  # a tower's vectors within this of torch fp32's (every calibration vector) may share its collection


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def bf16_native() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    with contextlib.suppress(Exception):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """'auto' → 'onnxruntime' on CPU when installed, else 'torch'; an explicit choice is checked."""
    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "auto":
        return "onnxruntime" if device.type == "cpu" and onnxruntime_available() else "torch"
    if runtime == "onnxruntime":
        if device.type != "cpu":
            raise ValueError("--runtime onnxruntime runs on the CPU; use --device cpu or --runtime torch")
        if not onnxruntime_available():
            raise ValueError("--runtime onnxruntime needs ONNX Runtime: pip install 'loupe[onnx]'")
    return runtime


def check_precision(precision: str | None, runtime: str) -> str:
    """`precision` checked against `runtime`: bf16 is a torch precision (ONNX Runtime here is fp32 only). None
    follows the runtime: `auto` under `--runtime auto` (the fastest option meeting the bars), else fp32."""
    if precision is None:
        return "auto" if runtime == "auto" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bf16" and runtime == "onnxruntime":
        raise ValueError("--precision bf16 runs on torch; use --runtime torch or auto with it")
    return precision


def candidates(runtime: str, precision: str | None, device: torch.device) -> list[str]:
    """What may encode a tower on `device` for these settings, the reference first: 'torch' (fp32),
    'onnxruntime' (fp32), 'torch-bf16'. On CUDA only 'torch' (with the GPU's autocast, untouched here)."""
    resolve_runtime(runtime, device)
    precision = check_precision(precision, runtime)
    if device.type != "cpu":
        return ["torch"]
    options = ["torch"] if runtime != "onnxruntime" else []
    if runtime == "onnxruntime" or (runtime == "auto" and onnxruntime_available()):
        options.append("onnxruntime")
    if precision in ("bf16", "auto") and runtime != "onnxruntime":
        options.append("torch-bf16")
    return options


def choose(measured: dict[str, dict], options: list[str], precision: str) -> str:
    """The runtime for one tower from its measurements {option: {'seconds', 'cos_min'}}: bf16 when it was asked
    for and meets the bar, else the fastest option meeting it (cos_min ≥ MIN_COS to torch fp32 on every
    calibration vector); 'torch' when nothing else qualifies."""
    passing = [o for o in options if o in measured and measured[o]["cos_min"] >= MIN_COS]
    if precision == "bf16":
        if "torch-bf16" in passing:
            return "torch-bf16"
        passing = [o for o in passing if o != "torch-bf16"]
    if not passing:
        return options[0] if len(options) == 1 else "torch"
    return min(passing, key=lambda o: measured[o]["seconds"])


LABELS = {"torch": "torch fp32", "onnxruntime": "onnxruntime fp32", "torch-bf16": "torch bf16"}


class _TextGraph(nn.Module):
    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.tower(input_ids, attention_mask)


def use_runtime(bundle: ModelBundle, runtime: str, cache_dir: Path | None, precision: str | None = None) -> str:
    """Point `bundle.model`'s inference at `runtime` × `precision`; returns what each tower runs on, e.g.
    'onnxruntime', 'torch bf16' or 'image torch bf16, text onnxruntime'. `bundle.model.inference` names them too
    (what a collection records).

    fp32 with one runtime (`torch`, `onnxruntime`) needs no measurement: the vectors are torch's. Otherwise each
    candidate (torch fp32, ONNX Runtime fp32, torch bf16) is timed once per tower on this machine and compared
    with torch fp32's vectors; `auto` keeps the fastest one within cos MIN_COS on every calibration vector, and
    `--precision bf16` keeps bf16 where it meets that bar (else fp32, with a warning). So a collection's vectors
    always match fp32's at cos ≥ 0.999 whatever runs them. The measurements are stored next to the ONNX graphs
    (with the machine they were taken on), so later loads neither export nor time anything. On CUDA nothing here
    applies: the towers run torch with the GPU's autocast.
    """
    model = bundle.model
    options = candidates(runtime, precision, model.device)
    precision = check_precision(precision, runtime)
    if model.device.type != "cpu":  # GPU: torch with its autocast, as before; only named here
        dtype = autocast_dtype(model.device)
        label = f"torch {model.device.type} autocast {str(dtype).removeprefix('torch.')}" if dtype else "torch fp32"
        model.inference = {"image": label, "text": label}
        return "torch"
    if options == ["torch"]:
        return "torch"
    if cache_dir is None:
        cache_dir = _scratch_dir()
    measured = stored_measurements(bundle, cache_dir, options) if len(options) > 1 else None
    needed = options if measured is None else [choose(measured[t], options, precision) for t in ("image", "text")]
    fns: dict[str, dict[str, Callable]] = {"image": {}, "text": {}}
    if "onnxruntime" in needed:
        try:
            fns["image"]["onnxruntime"] = _image_session(bundle, cache_dir)
            fns["text"]["onnxruntime"] = _text_session(bundle, cache_dir)
        except Exception as err:  # noqa: BLE001
            log.warning("ONNX Runtime unavailable for %s (%s); running torch", bundle.name, err)
            options = [o for o in options if o != "onnxruntime"] or ["torch"]
    if "torch-bf16" in needed:
        if not bf16_native():
            log.warning("this CPU has no native bf16 (AVX512-BF16 / AMX): bf16 runs emulated here")
        fns["image"]["torch-bf16"], fns["text"]["torch-bf16"] = bf16_towers(model)
    if len(options) == 1:  # an explicit fp32 runtime: its vectors are torch's, nothing to measure
        chosen = {"image": options[0], "text": options[0]}
    else:
        measured = measured or measure(bundle, cache_dir, options, fns)
        chosen = {tower: choose(measured[tower], options, precision) for tower in ("image", "text")}
        if precision == "bf16":
            for tower in ("image", "text"):
                if chosen[tower] != "torch-bf16":
                    log.warning("bf16 %s vectors of %s differ from fp32's (cos %.5f < %s) on this machine: the %s "
                                "tower runs %s", tower, bundle.name, measured[tower]["torch-bf16"]["cos_min"],
                                MIN_COS, tower, LABELS[chosen[tower]])
    for tower in ("image", "text"):
        if chosen[tower] == "torch-bf16" and "torch-bf16" not in fns[tower]:  # a stored choice, once ORT failed
            fns["image"]["torch-bf16"], fns["text"]["torch-bf16"] = bf16_towers(model)
        if chosen[tower] not in fns[tower]:
            chosen[tower] = "torch"
    image = fns["image"].get(chosen["image"])
    text = fns["text"].get(chosen["text"])
    model.set_inference(image=image, text=(text, model.text_tower) if text is not None else None,
                        labels={tower: LABELS[chosen[tower]] for tower in chosen})
    log.info("inference: image tower on %s, text tower on %s", LABELS[chosen["image"]], LABELS[chosen["text"]])
    names = {tower: LABELS[c].removesuffix(" fp32") for tower, c in chosen.items()}
    return names["image"] if names["image"] == names["text"] else f"image {names['image']}, text {names['text']}"


_SCRATCH: tempfile.TemporaryDirectory | None = None


def _scratch_dir() -> Path:
    """Where a bundle without a model cache (tests, benches) keeps its graphs and measurements: one folder per
    process, removed at exit, so repeated loads share one measurement and /tmp does not collect a folder per load."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = tempfile.TemporaryDirectory(prefix="loupe-onnx-")
    return Path(_SCRATCH.name)


def _image_session(bundle: ModelBundle, cache_dir: Path) -> Callable[..., torch.Tensor]:
    model = bundle.model
    path = _export(cache_dir / f"{model.image_tower_id}-image.onnx", model.image_tower,
                   (torch.rand(1, 3, bundle.input_size, bundle.input_size),), ["pixels"], {"pixels": {0: "batch"}})
    return _session(path, ["pixels"])


def _text_session(bundle: ModelBundle, cache_dir: Path) -> Callable[..., torch.Tensor]:
    text = bundle.model.text_tower
    tokens = text.tokenizer(["a photo", "two words here"])
    path = _export(cache_dir / f"{bundle.model.image_tower_id}-text-{_digest(text)}.onnx", _TextGraph(text),
                   (tokens["input_ids"], tokens["attention_mask"]), ["input_ids", "attention_mask"],
                   {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}})
    return _session(path, ["input_ids", "attention_mask"])


VERDICT_BATCH = 4  # images per timed batch; text is timed one query at a time, as searches arrive
TIMING_ROUNDS = 4
CALIBRATION_QUERIES = ("a dog on the beach", "sunset", "a red car in the street", "two children playing football",
                       "a bowl of soup on a wooden table", "snow on a pine forest at night")


def machine() -> dict:
    """What a measurement holds for: the CPU, its threads, torch, native bf16."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "bf16": bf16_native()}


def _record(bundle: ModelBundle, cache_dir: Path) -> Path:
    model = bundle.model
    return cache_dir / f"{model.image_tower_id}-text-{_digest(model.text_tower)}-measured.json"


def stored_measurements(bundle: ModelBundle, cache_dir: Path, options: list[str]) -> dict[str, dict] | None:
    """The stored measurements when they were taken on this machine and cover every option, else None."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        stored = json.loads(_record(bundle, cache_dir).read_text())
        if stored["machine"] == machine() and all(o in stored[t] for t in ("image", "text") for o in options):
            return {"image": stored["image"], "text": stored["text"]}
    return None


def measure(bundle: ModelBundle, cache_dir: Path, options: list[str],
            fns: dict[str, dict[str, Callable]]) -> dict[str, dict[str, dict]]:
    """{'image'|'text': {option: {'seconds', 'cos_min', 'cos_mean'}}}: every option timed on this machine (all
    together, so their timings share one moment) and compared with torch fp32's vectors, then stored as
    `<image_tower_id>-text-<digest>-measured.json` with the machine (`stored_measurements` reads it back)."""
    model = bundle.model
    record, here = _record(bundle, cache_dir), machine()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2 * VERDICT_BATCH, 3, bundle.input_size, bundle.input_size, generator=generator)
    queries = [model.text_tower.tokenizer([q]) for q in CALIBRATION_QUERIES]

    def image_fn(option: str) -> Callable[[torch.Tensor], torch.Tensor]:
        return model.image_tower if option == "torch" else fns["image"][option]

    def text_fn(option: str) -> Callable[..., torch.Tensor]:
        return model.text_tower if option == "torch" else fns["text"][option]

    result: dict[str, dict[str, dict]] = {"image": {}, "text": {}}
    with torch.inference_mode():
        ref_image = model.image_tower(pixels).float()
        ref_visual = model.image_tower.forward_with_visual(pixels)[1].float()
        ref_text = torch.cat([model.text_tower(q["input_ids"], q["attention_mask"]) for q in queries]).float()
        calls: dict[tuple[str, str], Callable[[], object]] = {}
        for option in options:  # fidelity first ...
            image, text = image_fn(option), text_fn(option)
            calls["image", option] = lambda f=image: f(pixels[:VERDICT_BATCH])
            calls["text", option] = lambda f=text: [f(q["input_ids"], q["attention_mask"]) for q in queries[:3]]
            if option == "torch":  # the reference itself
                result["image"][option] = {"cos_min": 1.0, "cos_mean": 1.0}
                result["text"][option] = {"cos_min": 1.0, "cos_mean": 1.0}
                continue
            cos = _cos(ref_image, image(pixels))
            if hasattr(image, "with_visual"):  # it also makes the visual vectors: they must match too
                cos = torch.cat([cos, _cos(ref_visual, image.with_visual(pixels)[1])])
            result["image"][option] = {"cos_min": float(cos.min()), "cos_mean": float(cos.mean())}
            cos = _cos(ref_text, torch.cat([text(q["input_ids"], q["attention_mask"]) for q in queries]))
            result["text"][option] = {"cos_min": float(cos.min()), "cos_mean": float(cos.mean())}
        for (tower, option), seconds in interleaved_best(calls).items():  # ... then timings, side by side
            result[tower][option]["seconds"] = seconds
    record.parent.mkdir(parents=True, exist_ok=True)  # bf16 alone exports no graph that would have made it
    staging = record.with_name(f".{record.name}.{os.getpid()}.part")
    staging.write_text(json.dumps({"machine": here, **result}, indent=1))
    os.replace(staging, record)
    log.info("measured inference options for %s on this machine: %s", bundle.name, result)
    return result


def _cos(reference: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(reference.float(), candidate.float(), dim=-1)


def interleaved_best(calls: dict, rounds: int = TIMING_ROUNDS) -> dict:
    """Best time of each call over `rounds` rounds that run every call once, in turn: a burst of load on a shared
    machine then slows every option alike instead of sinking whichever was being timed (one warm-up each first)."""
    for fn in calls.values():
        fn()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for key, fn in calls.items():
            start = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def _digest(module: nn.Module) -> str:
    """Identity of a text tower's weights: a promoted tower exports its own graph."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _export(path: Path, module: nn.Module, args: tuple, names: list[str], axes: dict) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path):
        if path.is_file():  # another process exported it while we waited for the lock
            return path
        fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            log.info("exporting %s (once; cached)", path.name)
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(module.eval(), args, staging, input_names=names, output_names=["features"],
                                  dynamic_axes={**axes, "features": {0: "batch"}}, opset_version=OPSET, dynamo=False)
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
    return path


def _session(path: Path, names: list[str]) -> Callable[..., torch.Tensor]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(*tensors: torch.Tensor) -> torch.Tensor:
        feeds = {name: t.detach().cpu().numpy() for name, t in zip(names, tensors, strict=True)}
        return torch.from_numpy(session.run(None, feeds)[0])

    return run


class _PackedLinear(nn.Module):
    """A bf16 `nn.Linear` whose weight oneDNN has reordered once into its blocked layout (as inductor's freezing
    does): eager bf16 Linear reorders the weight on every call, which dominates a one-query text encode."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def _pack_linears(module: nn.Module) -> None:
    """Swap every bf16 Linear under `module` for a `_PackedLinear` (where this torch build has the oneDNN ops)."""
    if not (bf16_native() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear) and child.weight.dtype == torch.bfloat16:
            setattr(module, name, _PackedLinear(child))
        else:
            _pack_linears(child)


def bf16_towers(model, channels_last: bool | None = None, pack: bool = True) -> tuple[Callable[..., torch.Tensor],
                                                                                      Callable[..., torch.Tensor]]:
    """(image fn, text fn) running bf16 copies of the backbone and the text encoder on the CPU (oneDNN; AMX where
    the CPU has it); heads, pooling and the caller's normalisation stay fp32. The image fn also has
    `.with_visual(pixels)` → (embedding, visual), both unnormalised fp32, like `ImageTower.forward_with_visual`.
    The copies cost half the towers' fp32 size in memory; the fp32 towers stay as they are (fingerprint, promotions).
    `channels_last` (default: for conv nets, i.e. more than a patch-embedding convolution) runs NHWC activations,
    which oneDNN's bf16 convolutions want; `pack` prepacks the Linear weights (bench/runtime_interleaved.py:
    offline-lite images 6.5× fp32 with both, 3.7× without; LiT queries 2.2× with, 1.7× without).
    """
    import copy

    from models.visual import visual_vector

    image = copy.deepcopy(model.image_tower).eval()
    image.backbone.to(torch.bfloat16)
    if channels_last is None:
        channels_last = sum(isinstance(m, nn.Conv2d) for m in image.backbone.modules()) > 1
    if channels_last:
        image.backbone.to(memory_format=torch.channels_last)
    text = copy.deepcopy(model.text_tower).eval()
    text.encoder.to(torch.bfloat16)
    if pack:
        _pack_linears(image.backbone)
        _pack_linears(text.encoder)

    def pixels_in(pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to("cpu", torch.bfloat16)
        return pixels.contiguous(memory_format=torch.channels_last) if channels_last else pixels

    def head(module: nn.Module, features: torch.Tensor) -> torch.Tensor:
        features = features.float()
        return module.head(features) if module.head is not None else features

    @torch.inference_mode()
    def encode_image(pixels: torch.Tensor) -> torch.Tensor:
        return head(image, image.backbone(pixels_in(pixels)))

    @torch.inference_mode()
    def with_visual(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        backbone = image.backbone
        if hasattr(backbone, "forward_features") and hasattr(backbone, "forward_head"):
            feature_map = backbone.forward_features(pixels_in(pixels))
            features = backbone.forward_head(feature_map)
            pre_logits = backbone.forward_head(feature_map, pre_logits=True)
        else:
            features = pre_logits = backbone(pixels_in(pixels))
        return head(image, features), visual_vector(pre_logits.float(), pixels.float())

    @torch.inference_mode()
    def encode_text(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return head(text, text.pooled_features(input_ids, attention_mask, hidden_dtype=torch.float32))

    encode_image.with_visual = with_visual
    return encode_image, encode_text
