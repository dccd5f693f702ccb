"""`python -m models.evaluate calibrate` through its CLI with test-tiny on generated photos: it refuses to replace
the constants in use with a fit on a handful of photos, takes `--home` for any preset, skips bad caption rows with
their line numbers, and writes strict JSON. (Found by a breaker pass: 3 readable photos silently replaced the
previous fit, with NaN in the file; one short row aborted the whole file.)"""

from __future__ import annotations

import json

from models.evaluate.cli import MIN_CALIBRATION_PHOTOS, main
from models.relevance import Constants, constants_path
from tests.imagegen import write_jpeg

COLOURS = ["red", "navy", "green", "gold", "purple", "white", "black", "orange", "teal", "pink"]


def _captions(root, n: int, broken: int = 0):
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        colour = COLOURS[i % len(COLOURS)]
        write_jpeg(root / f"IMG_{i:04d}.jpg", (48, 36), color=colour, seed=i)
        lines.append(f"IMG_{i:04d}.jpg\ta {colour} square")
    for i in range(broken):
        (root / f"bad_{i}.jpg").write_bytes(b"not a photo")
        lines.append(f"bad_{i}.jpg\ta broken photo")
    (root / "captions.tsv").write_text("\n".join(lines) + "\n")
    return root / "captions.tsv"


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_fit_on_a_handful_of_photos_is_refused_and_the_constants_in_use_stay(tmp_path, capsys):
    home = tmp_path / "home"
    captions = _captions(tmp_path / "few", 3, broken=4)
    assert main(["calibrate", str(captions), "--model", "test-tiny", "--home", str(home), "--workers", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "only 3 readable photos with captions (4 unreadable)" in err and "nothing was saved" in err, err
    assert not (home / "calibration").exists()


def test_a_fit_on_enough_photos_takes_home_for_any_preset_and_writes_strict_json(tmp_path, capsys, caplog):
    home = tmp_path / "home"
    captions = _captions(tmp_path / "enough", MIN_CALIBRATION_PHOTOS + 10)
    with captions.open("a") as out:  # two bad rows: skipped with their line numbers, the file still used
        out.write("IMG_0000.jpg\n\nIMG_0001.jpg\t \n")
    absent = tmp_path / "absent.txt"
    absent.write_text("a spreadsheet\n\na QR code\n")
    assert main(["calibrate", str(captions), "--model", "test-tiny", "--home", str(home), "--absent", str(absent),
                 "--workers", "1", "--no-progress", "--json"]) == 0
    result = _strict(capsys.readouterr().out)
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert any("line 61: expected 2 columns, found 1" in m for m in skipped), skipped
    assert any("line 63: empty caption" in m for m in skipped), skipped
    saved = constants_path(home, result["image_tower_id"])
    assert result["saved"] == str(saved) and result["images"] == MIN_CALIBRATION_PHOTOS + 10
    constants = Constants.from_json(saved.read_text())
    _strict(saved.read_text())
    assert constants.visual is not None and constants.text.possible <= constants.text.good
