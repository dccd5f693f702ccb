"""Where inference runs: torch eager, or ONNX Runtime on the CPU with a graph exported once into the model cache.

Measured in bench/runtime.py on this machine (2 cores, one thread each, same run): ONNX Runtime fp32 encoded
offline-lite's images 4.4× and its text queries 4.2× faster than torch fp32 eager with identical vectors
(cos 1.00000), but ran a random full-size LiT-B/16 at 0.6× / 0.8× of torch; torch bf16 autocast gained 1.7× / 1.4×
on offline-lite and nothing on LiT; int8 variants either missed the fidelity bars (offline-lite) or the cos 0.999
that keeps one collection (LiT, torch int8: 0.9987). So runtimes here are fp32 only, which never changes a vector
and never needs a new collection, and `auto` decides per tower by timing both on this machine (`use_runtime`). On
CUDA it is torch with its bf16/fp16 autocast. ONNX Runtime is optional: `pip install 'loupe[onnx]'`.

The exported graph is cached as `<model cache>/onnx/<image_tower_id>-image.onnx` (and `-text-<digest>.onnx` for a
text tower), written to a temp file and renamed under an advisory lock, as the checkpoint code does. A text tower
swapped by a promotion is no longer the exported one: encoding falls back to torch for it rather than mixing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from models.bundle import ModelBundle
from models.lit_download import _exclusive as exclusive

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime")
OPSET = 17


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


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


class _TextGraph(nn.Module):
    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.tower(input_ids, attention_mask)


def use_runtime(bundle: ModelBundle, runtime: str, cache_dir: Path | None) -> str:
    """Point `bundle.model`'s inference at `runtime`; returns what each tower runs on, e.g. 'image onnxruntime,
    text torch'.

    `onnxruntime` uses it for both towers. `auto` exports, then times both runtimes on each tower once on this
    machine and keeps the faster one that matches torch's vectors (cos ≥ 0.999), per tower: bench/runtime.py found
    ONNX Runtime 4× faster on offline-lite's towers but slower than torch on ViT-B/16 here. The verdict is stored
    next to the graphs, so later loads neither export nor time anything. Failures leave the tower on torch.
    """
    resolved = resolve_runtime(runtime, bundle.model.device)
    if resolved == "torch":
        return "torch"
    if cache_dir is None:
        cache_dir = Path(tempfile.mkdtemp(prefix="loupe-onnx-"))
    model = bundle.model
    try:
        image, text = _image_session(bundle, cache_dir), _text_session(bundle, cache_dir)
    except Exception as err:  # noqa: BLE001
        log.warning("ONNX Runtime unavailable for %s (%s); running torch", bundle.name, err)
        return "torch"
    if runtime == "auto":
        verdict = _measured_verdict(bundle, cache_dir, image, text)
        image = image if verdict["image"] == "onnxruntime" else None
        text = text if verdict["text"] == "onnxruntime" else None
    model.set_inference(image=image, text=(text, model.text_tower) if text is not None else None)
    chosen = {"image": "onnxruntime" if image else "torch", "text": "onnxruntime" if text else "torch"}
    log.info("inference: image tower on %s, text tower on %s (graphs in %s)", chosen["image"], chosen["text"],
             cache_dir)
    return chosen["image"] if chosen["image"] == chosen["text"] else f"image {chosen['image']}, text {chosen['text']}"


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
MIN_COS = 0.999


def _measured_verdict(bundle: ModelBundle, cache_dir: Path, image, text) -> dict[str, str]:
    """{'image': runtime, 'text': runtime}: the faster of torch and ONNX Runtime per tower, timed once, stored."""
    model = bundle.model
    record = cache_dir / f"{model.image_tower_id}-text-{_digest(model.text_tower)}-auto.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        stored = json.loads(record.read_text())
        return {"image": stored["image"], "text": stored["text"]}
    pixels = torch.rand(VERDICT_BATCH, 3, bundle.input_size, bundle.input_size)
    queries = [model.text_tower.tokenizer([q]) for q in ("a dog on the beach", "sunset", "a red car in the street")]
    with torch.inference_mode():
        def text_torch():
            return torch.cat([model.text_tower(q["input_ids"], q["attention_mask"]) for q in queries])

        def text_onnx():
            return torch.cat([text(q["input_ids"], q["attention_mask"]) for q in queries])

        verdict = {"image": _faster(lambda: model.image_tower(pixels), lambda: image(pixels)),
                   "text": _faster(text_torch, text_onnx)}
    staging = record.with_name(f".{record.name}.{os.getpid()}.part")
    staging.write_text(json.dumps(verdict))
    os.replace(staging, record)
    return verdict


def _faster(torch_fn: Callable[[], torch.Tensor], onnx_fn: Callable[[], torch.Tensor]) -> str:
    """'onnxruntime' when it matches torch (cos ≥ MIN_COS) and its best of 3 runs beats torch's, else 'torch'."""
    reference, candidate = torch_fn().float(), onnx_fn().float()
    cos = torch.nn.functional.cosine_similarity(reference, candidate, dim=-1).min()
    if cos < MIN_COS:
        return "torch"
    times = {}
    for name, fn in (("torch", torch_fn), ("onnxruntime", onnx_fn)):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        times[name] = min(runs)
    return min(times, key=times.get)


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
