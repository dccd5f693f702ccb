"""The file-based version registry: list, promote, rollback, active, and the cheap change stamp."""

from __future__ import annotations

import json

import pytest

from models import versions
from models.home import text_towers_dir


def _version(home, name: str, tower: str, created: str, **metadata) -> None:
    path = text_towers_dir(home) / name
    path.mkdir(parents=True)
    config = {"format": "loupe-model", "format_version": 1, "image_tower_id": tower,
              "base": {"preset": "test-tiny", "options": {}},
              "metadata": {"created": created, "metrics_after": {"t2i_r1": 0.5}, **metadata}}
    (path / "config.json").write_text(json.dumps(config))


@pytest.fixture()
def home(tmp_path):
    _version(tmp_path, "v1", "towerA", "2025-01-01T00:00:00")
    _version(tmp_path, "v2", "towerA", "2025-01-02T00:00:00")
    _version(tmp_path, "w1", "towerB", "2025-01-03T00:00:00")
    return tmp_path


def test_list_versions(home):
    listed = versions.list_versions(home)
    assert [(v.name, v.image_tower_id, v.active) for v in listed] == [
        ("v1", "towerA", False), ("v2", "towerA", False), ("w1", "towerB", False)]
    assert listed[0].metrics == {"t2i_r1": 0.5} and listed[0].base == "test-tiny"
    assert versions.list_versions(home / "elsewhere") == []


def test_promote_and_rollback_switch_the_active_version_per_image_tower(home):
    assert versions.active(home, "towerA") is None and versions.active_stamp(home) is None
    versions.promote(home, "v1")
    stamp1 = versions.active_stamp(home)
    versions.promote(home, "v2")
    versions.promote(home, "w1")
    assert versions.active(home, "towerA") == text_towers_dir(home) / "v2"
    assert versions.active(home, "towerB") == text_towers_dir(home) / "w1"
    assert versions.active_stamp(home) != stamp1
    assert {v.name for v in versions.list_versions(home) if v.active} == {"v2", "w1"}
    assert versions.rollback(home, "towerA") == "v1"
    assert versions.active(home, "towerA") == text_towers_dir(home) / "v1"
    assert versions.active(home, "towerB") == text_towers_dir(home) / "w1"  # other tower untouched
    assert versions.rollback(home, "towerA") is None  # back to the base model's text tower
    assert versions.active(home, "towerA") is None
    with pytest.raises(LookupError, match="nothing to roll back"):
        versions.rollback(home, "towerA")
    assert versions.promoted_tower_ids(home) == ["towerB"]


def test_promoting_twice_does_not_stack_history(home):
    versions.promote(home, "v1")
    versions.promote(home, "v1")
    assert versions.rollback(home, "towerA") is None


def test_unknown_version_and_leftovers(home):
    with pytest.raises(KeyError, match="no text tower version 'nope'.*v1, v2, w1"):
        versions.promote(home, "nope")
    versions.promote(home, "v1")
    names = {p.name for p in text_towers_dir(home).iterdir()}
    assert not [n for n in names if n.startswith(".active.") and n.endswith(".json")]  # temp files replaced


def test_a_deleted_active_version_falls_back_to_the_base(home):
    versions.promote(home, "v2")
    (text_towers_dir(home) / "v2" / "config.json").unlink()
    assert versions.active(home, "towerA") is None


def test_corrupt_active_file_is_a_clear_error(home):
    (text_towers_dir(home) / "active.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        versions.active(home, "towerA")


def test_promote_refuses_unmeasured_versions_unless_forced(home, capsys):
    from models.train.__main__ import main

    _version(home, "noval", "towerA", "2025-02-01T00:00:00", metrics_after=None, train_size={"pairs": 500})
    _version(home, "tiny", "towerA", "2025-02-02T00:00:00", train_size={"pairs": 12},
             metrics_before={"t2i_r1": 0.4})
    _version(home, "worse", "towerA", "2025-02-03T00:00:00", train_size={"pairs": 300},
             metrics_before={"t2i_r1": 0.6})
    _version(home, "good", "towerA", "2025-02-04T00:00:00", train_size={"pairs": 300},
             metrics_before={"t2i_r1": 0.3}, val_size={"pairs": 30})
    # found by a breaker pass: validating on the training captions themselves (`--val train.tsv`) was promoted
    _version(home, "selfval", "towerA", "2025-02-05T00:00:00", train_size={"pairs": 300},
             metrics_before={"t2i_r1": 0.3}, val_size={"pairs": 104, "images": 8, "images_also_trained_on": 8})
    _version(home, "fewval", "towerA", "2025-02-06T00:00:00", train_size={"pairs": 300},
             metrics_before={"t2i_r1": 0.3}, val_size={"pairs": 4, "images": 4, "images_also_trained_on": 0})
    for name, reason in (("noval", "without validation"), ("tiny", "only 12 caption pairs"),
                         ("worse", "fell from 60.0 to 50.0"), ("selfval", "8 of its validation images are also in"),
                         ("fewval", "validated on only 4 captions")):
        with pytest.raises(versions.PromoteRefused, match=reason):
            versions.promote(home, name)
        assert versions.active(home, "towerA") is None
    assert versions.promote(home, "good").name == "good"
    assert main(["--home", str(home), "--promote", "tiny"]) == 2  # the CLI refuses, saying why
    assert "only 12 caption pairs" in capsys.readouterr().err
    assert main(["--home", str(home), "--promote", "tiny", "--force"]) == 0
    assert "WARNING" in capsys.readouterr().err and versions.active(home, "towerA").name == "tiny"
    assert main(["--home", str(home), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "30.0 → 50.0" in listing and "no validation" in listing and "(!)" in listing
