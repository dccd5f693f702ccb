"""ONNX Runtime gives torch's vectors, caches its graphs once, and never serves a tower it was not exported from."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import models
from models.runtime import LABELS, choose, resolve_runtime, use_runtime

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TEXTS = ["a dog", "a red car parked in a narrow street"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("onnx")
    bundle = models.create("test-tiny", device="cpu")
    assert use_runtime(bundle, "onnxruntime", cache) == "onnxruntime"
    return bundle, cache


@pytest.mark.slow
def test_onnx_vectors_equal_torch_vectors(exported) -> None:
    bundle, _ = exported
    reference = models.create("test-tiny", device="cpu")
    pixels = torch.rand(3, 3, bundle.input_size, bundle.input_size)
    torch.testing.assert_close(bundle.model.encode_images(pixels), reference.model.encode_images(pixels),
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bundle.model.encode_texts(TEXTS), reference.model.encode_texts(TEXTS),
                               atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_graphs_are_cached_once_and_reused(exported) -> None:
    _, cache = exported
    graphs = sorted(cache.glob("*.onnx"))
    assert len(graphs) == 2 and not list(cache.glob("*.part"))
    stamps = [g.stat().st_mtime_ns for g in graphs]
    again = models.create("test-tiny", device="cpu")
    use_runtime(again, "onnxruntime", cache)
    assert [g.stat().st_mtime_ns for g in graphs] == stamps


@pytest.mark.slow
def test_a_swapped_text_tower_is_encoded_by_torch(exported) -> None:
    bundle, _ = exported
    tuned = copy.deepcopy(bundle.model.text_tower)
    with torch.no_grad():
        tuned.head[0].weight.mul_(-1.0)  # a different tower, as a promotion would bring
    original = bundle.model.text_tower
    try:
        bundle.model.text_tower = tuned
        expected = bundle.model.text_features(TEXTS).detach()
        torch.testing.assert_close(bundle.model.encode_texts(TEXTS), expected)
    finally:
        bundle.model.text_tower = original


def test_runtime_choices_are_checked() -> None:
    cpu = torch.device("cpu")
    assert resolve_runtime("torch", cpu) == "torch"
    assert resolve_runtime("auto", cpu) == "onnxruntime"
    assert resolve_runtime("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="--runtime must be"):
        resolve_runtime("tensorrt", cpu)
    with pytest.raises(ValueError, match="CPU"):
        resolve_runtime("onnxruntime", torch.device("cuda"))


@pytest.mark.slow
def test_auto_times_each_tower_once_and_remembers(exported) -> None:
    _, cache = exported  # graphs already exported: auto only times them (and torch bf16, precision auto)
    bundle = models.create("test-tiny", device="cpu")
    chosen = use_runtime(bundle, "auto", cache)
    [verdict] = cache.glob("*-measured.json")
    recorded = json.loads(verdict.read_text())
    options = ["torch", "onnxruntime", "torch-bf16"]
    assert all(set(recorded[tower]) == set(options) for tower in ("image", "text"))
    picked = {tower: LABELS[choose(recorded[tower], options, "auto")].removesuffix(" fp32")
              for tower in ("image", "text")}
    expected = picked["image"] if picked["image"] == picked["text"] else \
        f"image {picked['image']}, text {picked['text']}"
    assert chosen == expected
    stamp = verdict.stat().st_mtime_ns
    assert use_runtime(models.create("test-tiny", device="cpu"), "auto", cache) == expected
    assert verdict.stat().st_mtime_ns == stamp
