"""CPU precision (models.runtime): bf16 only where it matches fp32 at cos ≥ 0.999, chosen once per machine, and
recorded with the collection it embeds into. Tiny random towers; nothing here asserts a timing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from unittest import mock

import pytest
import torch

import models
from models.runtime import MIN_COS, candidates, check_precision, choose, machine, use_runtime

CPU = torch.device("cpu")
TEXTS = ["a dog", "a red car parked in a narrow street"]


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def test_precision_follows_the_runtime_unless_given() -> None:
    assert check_precision(None, "auto") == "auto"
    assert check_precision(None, "torch") == "fp32"
    assert check_precision(None, "onnxruntime") == "fp32"
    assert check_precision("bf16", "torch") == "bf16"
    with pytest.raises(ValueError, match="--precision must be"):
        check_precision("int8", "torch")
    with pytest.raises(ValueError, match="runs on torch"):
        check_precision("bf16", "onnxruntime")


def test_candidates_per_setting() -> None:
    assert candidates("torch", None, CPU) == ["torch"]  # the default: nothing measured, nothing changed
    assert candidates("torch", "bf16", CPU) == ["torch", "torch-bf16"]
    assert candidates("torch", "auto", CPU) == ["torch", "torch-bf16"]
    assert "torch-bf16" in candidates("auto", None, CPU)  # auto considers bf16
    assert "torch-bf16" not in candidates("auto", "fp32", CPU)
    assert candidates("torch", "bf16", torch.device("cuda")) == ["torch"]  # GPU: its own autocast, untouched


def _measured(bf16_cos: float, bf16_s: float = 1.0, ort_s: float | None = None) -> dict:
    out = {"torch": {"cos_min": 1.0, "seconds": 4.0}, "torch-bf16": {"cos_min": bf16_cos, "seconds": bf16_s}}
    if ort_s is not None:
        out["onnxruntime"] = {"cos_min": 1.0, "seconds": ort_s}
    return out


@pytest.mark.parametrize(("measured", "options", "precision", "expected"), [
    (_measured(0.9995), ["torch", "torch-bf16"], "auto", "torch-bf16"),  # faster and within the bar
    (_measured(0.9985), ["torch", "torch-bf16"], "auto", "torch"),  # faster but below the bar: refused
    (_measured(0.9995, bf16_s=9.0), ["torch", "torch-bf16"], "auto", "torch"),  # within the bar but slower
    (_measured(0.9995, bf16_s=9.0), ["torch", "torch-bf16"], "bf16", "torch-bf16"),  # asked for, and it passes
    (_measured(0.9985), ["torch", "torch-bf16"], "bf16", "torch"),  # asked for, fails: fp32
    (_measured(0.9985, ort_s=2.0), ["torch", "onnxruntime", "torch-bf16"], "bf16", "onnxruntime"),  # fastest fp32
    (_measured(0.9995, ort_s=0.5), ["torch", "onnxruntime", "torch-bf16"], "auto", "onnxruntime"),
    (_measured(MIN_COS), ["torch", "torch-bf16"], "auto", "torch-bf16"),  # the bar itself passes
])
def test_choose_keeps_the_fastest_option_meeting_the_bar(measured, options, precision, expected) -> None:
    assert choose(measured, options, precision) == expected


def _record(cache: Path) -> Path:
    [record] = cache.glob("*-measured.json")
    return record


def test_bf16_matches_fp32_is_measured_once_and_labelled(tmp_path: Path) -> None:
    reference = models.create("test-tiny", device="cpu").model
    bundle = models.create("test-tiny", device="cpu")
    tmp_path = tmp_path / "models" / "onnx"  # as the indexer passes it: not there yet
    assert use_runtime(bundle, "torch", tmp_path, "bf16") == "torch bf16"
    model = bundle.model
    assert model.inference == {"image": "torch bf16", "text": "torch bf16"}
    pixels = torch.randn(3, 3, bundle.input_size, bundle.input_size, generator=torch.Generator().manual_seed(1))
    assert _cos(model.encode_images(pixels), reference.encode_images(pixels)).min() >= MIN_COS
    (vectors, visual), (ref_vectors, ref_visual) = (model.encode_images(pixels, with_visual=True),
                                                    reference.encode_images(pixels, with_visual=True))
    assert _cos(vectors, ref_vectors).min() >= MIN_COS and _cos(visual, ref_visual).min() >= MIN_COS
    assert _cos(model.encode_texts(TEXTS), reference.encode_texts(TEXTS)).min() >= MIN_COS
    stored = json.loads(_record(tmp_path).read_text())
    assert stored["machine"] == machine()
    assert stored["image"]["torch-bf16"]["cos_min"] >= MIN_COS and stored["text"]["torch"]["cos_min"] > 0.9999
    stamp = _record(tmp_path).stat().st_mtime_ns
    with mock.patch("models.runtime.measure", side_effect=AssertionError("measured twice")):
        again = models.create("test-tiny", device="cpu")
        assert use_runtime(again, "torch", tmp_path, "bf16") == "torch bf16"
    assert _record(tmp_path).stat().st_mtime_ns == stamp


def _store(cache: Path, bundle, bf16_cos: float, here: dict | None = None) -> None:
    from models.runtime import _record as record_path

    entry = {"torch": {"cos_min": 1.0, "cos_mean": 1.0, "seconds": 4.0},
             "torch-bf16": {"cos_min": bf16_cos, "cos_mean": bf16_cos, "seconds": 1.0}}
    record_path(bundle, cache).write_text(json.dumps({"machine": here or machine(), "image": entry, "text": entry}))


def test_bf16_below_the_bar_is_refused_even_when_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bundle = models.create("test-tiny", device="cpu")
    _store(tmp_path, bundle, 0.998)  # as if measured on this machine: faster, but vectors differ beyond 0.999
    with caplog.at_level(logging.WARNING, logger="models.runtime"):
        assert use_runtime(bundle, "torch", tmp_path, "bf16") == "torch"
    assert bundle.model.inference == {"image": "torch fp32", "text": "torch fp32"}
    assert "differ from fp32" in caplog.text
    assert use_runtime(models.create("test-tiny", device="cpu"), "torch", tmp_path, "auto") == "torch"


def test_auto_takes_a_passing_faster_bf16_and_remeasures_on_another_machine(tmp_path: Path) -> None:
    bundle = models.create("test-tiny", device="cpu")
    _store(tmp_path, bundle, 0.9995)
    assert use_runtime(bundle, "torch", tmp_path, "auto") == "torch bf16"
    _store(tmp_path, bundle, 0.9995, here={**machine(), "cpu": "another CPU"})
    fresh = models.create("test-tiny", device="cpu")
    use_runtime(fresh, "torch", tmp_path, "auto")  # measured again here: whatever wins, the record is this machine's
    assert json.loads(_record(tmp_path).read_text())["machine"] == machine()


def test_fp32_torch_measures_nothing(tmp_path: Path) -> None:
    bundle = models.create("test-tiny", device="cpu")
    with mock.patch("models.runtime.measure", side_effect=AssertionError("measured")):
        assert use_runtime(bundle, "torch", tmp_path, "fp32") == "torch"
        assert use_runtime(bundle, "torch", tmp_path) == "torch"
    assert not list(tmp_path.iterdir())
    assert bundle.model.inference == {"image": "torch fp32", "text": "torch fp32"}


def test_the_pipeline_records_what_embedded_the_collection() -> None:
    from indexer.scan.pipeline import Pipeline, Prepared

    catalog = mock.MagicMock()
    bundle = mock.MagicMock()
    bundle.model.inference = {"image": "torch bf16", "text": "torch bf16"}
    bundle.model.encode_images.side_effect = lambda pixels, **_: torch.nn.functional.normalize(
        torch.ones(len(pixels), 4), dim=-1)
    pipeline = Pipeline(catalog, mock.MagicMock(), "images-x", lambda: bundle, batch_size=2, workers=1,
                        thumbnails_dir=None, thumbnail_size=64, max_megapixels=1.0)
    for name in ("a", "b"):  # two batches, one label: recorded once
        pipeline._embed([Prepared(path=f"/p/{name}.jpg", hash=name, pixels=torch.zeros(3, 4, 4), content=None)])
    catalog.note_inference.assert_called_once_with("images-x", "torch bf16")


def test_the_catalog_keeps_each_label_once(tmp_path: Path) -> None:
    from indexer.stores.catalog import Catalog

    catalog = Catalog.open(tmp_path / "catalog.db")
    try:
        catalog.add_collection("images-x", "test-tiny", "x", 4)
        assert catalog.inference("images-x") == []
        for label in ("torch fp32", "torch bf16", "torch fp32"):
            catalog.note_inference("images-x", label)
        assert catalog.inference("images-x") == ["torch fp32", "torch bf16"]
        catalog.delete_collection("images-x")
        assert catalog.inference("images-x") == []
    finally:
        catalog.close()
