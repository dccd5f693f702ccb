"""`python -m models.train` end to end with test-tiny on generated solid-colour photos captioned with their colour.

One seeded tuning run (module fixture) is shared: validation recall must rise, the image tower must not change, the
saved version must load with `models.create` and read the space exactly as it did in training, and a run stopped
after some epochs and resumed must end exactly where the uninterrupted run ended.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import models
from models import versions
from models.train.__main__ import main
from models.train.config import TrainConfig
from models.train.data import load_pairs
from models.train.metrics import evaluate
from models.train.vector_cache import CachedTowerSource, vector_cache_path

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220), "yellow": (240, 230, 30),
           "black": (10, 10, 10), "white": (245, 245, 245), "purple": (140, 30, 160), "orange": (250, 140, 20)}
TEMPLATES = ("a {} square", "something {}", "the colour {}")
SETTINGS = ["--model", "test-tiny", "--train", "whole", "--epochs", "6", "--lr", "1e-2", "--batch-size", "8",
            "--patience", "0", "--seed", "0", "--quiet", "--json"]


def _photos(root: Path, per_colour: int, templates: tuple[str, ...], prefix: str, seed: int) -> str:
    """Solid-colour PNGs with a little shade jitter; returns CSV text (header, image, caption)."""
    rng, lines = random.Random(seed), ["image,caption"]
    for name, rgb in COLOURS.items():
        for k in range(per_colour):
            shade = tuple(max(0, min(255, v + rng.randint(-25, 25))) for v in rgb)
            file = f"{prefix}_{name}_{k}.png"
            Image.new("RGB", (48, 48), shade).save(root / file)
            lines += [f"{file},{t.format(name)}" for t in templates]
    return "\n".join(lines) + "\n"


def run_cli(*args: str | Path) -> tuple[int, dict | list | None]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    text = out.getvalue()
    return code, json.loads(text) if text.strip().startswith(("{", "[")) else None


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread (and the same on any core count); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    (root / "train.csv").write_text(_photos(root, 3, TEMPLATES, "t", seed=0))
    (root / "val.csv").write_text(_photos(root, 1, TEMPLATES[:2], "v", seed=1))
    return root


@pytest.fixture(scope="module")
def tuned(data, tmp_path_factory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("home")
    code, result = run_cli(data / "train.csv", "--val", data / "val.csv", "--home", home, "--name", "colours",
                           *SETTINGS)
    assert code == 0, result
    return home, result


def test_validation_recall_rises(tuned):
    _, result = tuned
    before, after = result["metrics_before"], result["metrics_after"]
    assert result["status"] == "finished" and result["improved"] is True
    assert after["t2i_r1"] >= before["t2i_r1"] + 0.2
    assert after["i2t_r1"] >= before["i2t_r1"] + 0.2
    assert after["mean_recall"] >= before["mean_recall"] + 0.15
    assert len(result["history"]) == 6 and all("val" in h and h["pairs_per_s"] > 0 for h in result["history"])
    assert result["train_size"] == {"pairs": 72, "images": 24} and result["val_size"] == {
        "pairs": 16, "images": 8, "images_also_trained_on": 0}


def test_image_tower_is_locked_and_unchanged(tuned):
    home, result = tuned
    check = result["locked_check"]
    assert check["identical"] and check["assert_locked"] == "passed"
    fresh = models.create("test-tiny", device="cpu")
    assert check["image_tower_digest_before"] == check["image_tower_digest_after"] == fresh.image_tower_id
    saved = load_file(str(Path(result["output"]) / "model.safetensors"))
    assert saved and not [k for k in saved if k.startswith("image_tower.")]  # text side only


def test_saved_version_loads_and_reads_the_space_as_in_training(tuned, data):
    home, result = tuned
    bundle = models.create(result["output"], device="cpu")
    base = models.create("test-tiny", device="cpu")
    assert bundle.image_tower_id == base.image_tower_id
    assert not torch.allclose(bundle.model.encode_texts(["a red square"]), base.model.encode_texts(["a red square"]))
    config = TrainConfig(captions=data / "val.csv")
    source = CachedTowerSource(bundle, home, progress=False)
    val, _ = load_pairs(data / "val.csv", config, source)
    assert source.computed == 0  # every image vector came from the cache
    metrics = evaluate(bundle.model, val)
    assert metrics == pytest.approx(result["metrics_after"], abs=1e-5)
    meta = bundle.metadata
    assert meta["base_spec"]["preset"] == "test-tiny" and meta["image_tower_id"] == bundle.image_tower_id
    assert meta["data_fingerprint"] == result["data_fingerprint"] and meta["hyperparameters"]["lr"] == 1e-2
    assert meta["metrics_before"] and meta["metrics_after"] and len(meta["history"]) == 6 and meta["created"]
    assert meta["train_size"]["pairs"] == 72 and meta["locked_check"]["identical"]


def test_resume_ends_exactly_where_the_uninterrupted_run_ended(tuned, data, capsys):
    home, full = tuned
    cache = vector_cache_path(home, full["image_tower_id"])
    cache_before = cache.stat().st_mtime_ns, cache.read_bytes()
    common = [data / "train.csv", "--val", data / "val.csv", "--home", home, "--name", "split", *SETTINGS]
    code, paused = run_cli(*common, "--max-epochs-this-run", "2")
    assert code == 0 and paused["status"] == "paused" and paused["epochs_completed"] == 2 and not paused["output"]
    capsys.readouterr()
    # flags a resumed run cannot honour are named, not silently dropped (found by a breaker pass)
    code, resumed = run_cli("--resume", "split", "--home", home, "--quiet", "--json", "--train", "lora",
                            "--epochs", "1")
    assert "continues with its own settings; ignored: --train, --epochs" in capsys.readouterr().err
    assert code == 0 and resumed["status"] == "finished" and resumed["epochs_completed"] == 6
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in full["history"]], abs=1e-6)
    assert resumed["metrics_after"] == pytest.approx(full["metrics_after"], abs=1e-6)
    ours, theirs = (load_file(str(Path(r["output"]) / "model.safetensors")) for r in (resumed, full))
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-5) for k in theirs)
    assert (cache.stat().st_mtime_ns, cache.read_bytes()) == cache_before  # the cache was reused, untouched
    assert not (home / "train_runs" / "split").exists()  # checkpoints go once the version is saved


def test_promote_list_and_rollback(tuned):
    home, result = tuned
    shutil.copytree(result["output"], Path(result["output"]).with_name("colours-copy"))
    tower = result["image_tower_id"]
    assert run_cli("--promote", "colours", "--home", home)[0] == 2  # 18 pairs: too few to judge, refused
    assert versions.active(home, tower) is None
    assert run_cli("--promote", "colours", "--home", home, "--force")[0] == 0
    assert run_cli("--promote", "colours-copy", "--home", home, "--force")[0] == 0
    assert versions.active(home, tower).name == "colours-copy"
    code, listed = run_cli("--list", "--json", "--home", home)
    assert code == 0 and {v["name"] for v in listed if v["active"]} == {"colours-copy"}
    code, rolled = run_cli("--rollback", "--json", "--home", home)
    assert code == 0 and rolled == {"rolled_back": tower, "active": "colours"}
    assert versions.active(home, tower).name == "colours"
    assert run_cli("--rollback", "--model", "test-tiny", "--home", home)[0] == 0
    assert versions.active(home, tower) is None


def test_continue_tuning_a_saved_version_with_lora(tuned, data):
    home, first = tuned
    code, result = run_cli(data / "train.csv", "--val", data / "val.csv", "--home", home, "--model", first["output"],
                           "--train", "lora", "--lora-rank", "2", "--epochs", "1", "--quiet", "--json")
    assert code == 0 and result["name"].startswith("test-tiny-")
    assert result["metrics_before"] == pytest.approx(first["metrics_after"], abs=1e-5)  # starts where it ended
    bundle = models.create(result["output"], device="cpu")  # LoRA merged: the plain base preset reloads it
    assert bundle.metadata["parent"]["model"] == first["output"]
    assert bundle.metadata["base_spec"]["preset"] == "test-tiny"


def test_precomputed_vectors_by_key(tmp_path):
    rng = np.random.default_rng(0)
    keys = [f"class:{name}" for name in COLOURS]
    vectors = rng.standard_normal((len(keys), 32)).astype(np.float32)
    np.savez(tmp_path / "classes.npz", keys=np.array(keys), vectors=vectors)
    rows = [{"image": k, "caption": [t.format(k[6:]) for t in TEMPLATES]} for k in keys]
    rows.append({"image": "class:unknown", "caption": "x"})
    (tmp_path / "classes.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, result = run_cli(tmp_path / "classes.jsonl", "--image-vectors", tmp_path / "classes.npz", "--home",
                           tmp_path / "home", "--model", "test-tiny", "--train", "head", "--epochs", "2",
                           "--val-fraction", "0", "--quiet", "--json")
    assert code == 0 and result["status"] == "finished" and result["val_size"] is None
    assert result["train_size"] == {"pairs": 24, "images": 8}
    assert result["data"][0]["problems"] == [{"line": 9, "reason": "key not in classes.npz: class:unknown"}]
    assert not (tmp_path / "home" / "cache").exists()  # the image tower never ran
    assert result["name"].startswith("test-tiny-") and Path(result["output"]).is_dir()


def _class_vectors(tmp_path: Path, vectors: np.ndarray) -> tuple[Path, Path]:
    keys = [f"class:{name}" for name in COLOURS]
    np.savez(tmp_path / "classes.npz", keys=np.array(keys), vectors=vectors)
    rows = [{"image": k, "caption": [t.format(k[6:]) for t in TEMPLATES]} for k in keys]
    (tmp_path / "classes.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return tmp_path / "classes.jsonl", tmp_path / "classes.npz"


def test_a_nan_or_zero_image_vector_is_a_skipped_row_not_nan_weights(tmp_path):
    """Found by a breaker pass: one NaN row in --image-vectors made the loss NaN, and the run saved NaN weights
    with exit 0 (a promoted version then found nothing at all)."""
    vectors = np.random.default_rng(1).standard_normal((len(COLOURS), 32)).astype(np.float32)
    vectors[0] = np.nan
    vectors[1] = 0.0
    captions, npz = _class_vectors(tmp_path, vectors)
    code, result = run_cli(captions, "--image-vectors", npz, "--home", tmp_path / "home", "--model", "test-tiny",
                           "--train", "head", "--epochs", "2", "--val-fraction", "0", "--quiet", "--json")
    assert code == 0 and result["status"] == "finished"
    assert result["train_size"] == {"pairs": 18, "images": 6}  # the two bad rows' 6 captions were skipped
    reasons = [problem["reason"] for problem in result["data"][0]["problems"]]
    assert any("not finite" in r for r in reasons) and any("all zeros" in r for r in reasons), reasons
    weights = load_file(str(Path(result["output"]) / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_validating_on_the_training_captions_is_recorded_and_guards_promotion(tmp_path, capsys):
    captions, npz = _class_vectors(tmp_path, np.random.default_rng(3).standard_normal((len(COLOURS), 32)))
    code, result = run_cli(captions, "--val", captions, "--image-vectors", npz, "--home", tmp_path / "home",
                           "--model", "test-tiny", "--train", "head", "--epochs", "1", "--quiet", "--json",
                           "--name", "selfval")
    assert code == 0 and result["val_size"]["images_also_trained_on"] == 8
    capsys.readouterr()
    assert run_cli("--promote", "selfval", "--home", tmp_path / "home")[0] == 2
    assert "also in its training captions" in capsys.readouterr().err


def test_a_loss_that_stops_being_a_number_ends_the_run_without_saving(tmp_path, capsys):
    captions, npz = _class_vectors(tmp_path, np.random.default_rng(2).standard_normal((len(COLOURS), 32)))
    code, _ = run_cli(captions, "--image-vectors", npz, "--home", tmp_path / "home", "--model", "test-tiny",
                      "--train", "whole", "--epochs", "3", "--lr", "1e30", "--val-fraction", "0", "--quiet",
                      "--name", "diverged")
    err = capsys.readouterr().err
    assert code == 1 and "the loss became nan" in err.lower() and "--lr" in err, err
    assert "diverged" not in [v.name for v in versions.list_versions(tmp_path / "home")]


def test_user_errors_exit_2_with_a_message(tuned, data, capsys):
    home, _ = tuned
    assert run_cli(data / "train.csv", "--home", home, "--name", "colours", "--model", "test-tiny")[0] == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli("--resume", "nothing-here", "--home", home)[0] == 2
    assert "no resumable run" in capsys.readouterr().err
    assert run_cli("--promote", "nope", "--home", home)[0] == 2
    assert "no text tower version 'nope'" in capsys.readouterr().err
    assert run_cli(data / "train.csv", "--home", home, "--train", "everything")[0] == 2
    assert "--train must be" in capsys.readouterr().err


def test_bad_captions_file_exits_2_with_line_numbers(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"not an image at all")
    (tmp_path / "bad.csv").write_bytes(b"missing.jpg,a cat\nok.png,\xff\xfe\nok.png,one,two\nok.png,a broken photo\n")
    proc = subprocess.run([sys.executable, "-m", "models.train", str(tmp_path / "bad.csv"), "--model", "test-tiny",
                           "--home", str(tmp_path / "home"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for expected in ("no usable", "line 1: image file not found", "line 2: not valid UTF-8",
                     "line 3: expected 2 columns, found 3", "line 4: unreadable image"):
        assert expected in proc.stderr


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for expected in ("locked", "--images-root", "--image-vectors", "--train", "lora", "--resume", "--promote",
                     "--rollback", "--val-fraction", "LOUPE_HOME"):
        assert expected in text
