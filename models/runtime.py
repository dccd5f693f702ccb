"""Where inference runs: torch eager, or ONNX Runtime on the CPU with a graph exported once into the model cache.

Measured in bench/runtime.py on this machine (2 cores, one thread each, same run): ONNX Runtime fp32 encoded
offline-lite's images 4.4× and its text queries 4.2× faster than torch fp32 eager with identical vectors
(cos 1.00000); torch bf16 autocast gained 1.7× / 1.4× at cos 0.9998; every int8 variant missed the fidelity bars
(text cos 0.939 with torch's dynamic quantisation; image cos 0.976 with ONNX Runtime's). So `auto` means ONNX
Runtime fp32 on CPU when it is installed (`pip install 'loupe[onnx]'`), else torch; on CUDA it is torch with its
bf16/fp16 autocast. fp32 ONNX vectors equal torch's, so an index never has to be rebuilt for a runtime change.

The exported graph is cached as `<model cache>/onnx/<image_tower_id>-image.onnx` (and `-text-<digest>.onnx` for a
text tower), written to a temp file and renamed under an advisory lock, as the checkpoint code does. A text tower
swapped by a promotion is no longer the exported one: encoding falls back to torch for it rather than mixing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
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
    """Point `bundle.model`'s inference at `runtime` (resolved); returns the runtime in use.

    Export failures are logged and leave the bundle on torch: a slower index beats no index.
    """
    resolved = resolve_runtime(runtime, bundle.model.device)
    if resolved == "torch":
        return resolved
    if cache_dir is None:
        cache_dir = Path(tempfile.mkdtemp(prefix="loupe-onnx-"))
    try:
        model = bundle.model
        image_path = _export(cache_dir / f"{model.image_tower_id}-image.onnx", model.image_tower,
                             (torch.rand(1, 3, bundle.input_size, bundle.input_size),),
                             ["pixels"], {"pixels": {0: "batch"}})
        text = model.text_tower
        tokens = text.tokenizer(["a photo", "two words here"])
        text_path = _export(cache_dir / f"{model.image_tower_id}-text-{_digest(text)}.onnx", _TextGraph(text),
                            (tokens["input_ids"], tokens["attention_mask"]), ["input_ids", "attention_mask"],
                            {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}})
        model.set_inference(image=_session(image_path, ["pixels"]),
                            text=(_session(text_path, ["input_ids", "attention_mask"]), text))
    except Exception as err:  # noqa: BLE001
        log.warning("ONNX Runtime unavailable for %s (%s); running torch", bundle.name, err)
        return "torch"
    log.info("inference on ONNX Runtime (CPU, fp32), graphs in %s", cache_dir)
    return resolved


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
