"""Captions files: formats, headers, sniffing, and bad rows reported with line numbers instead of aborting."""

from __future__ import annotations

import numpy as np
import pytest

from models.train.captions import CaptionsError, read_captions
from models.train.config import TrainConfig
from models.train.data import NoUsableRows, load_pairs
from models.train.image_vectors import NpzVectorSource
from models.train.pairs import resolve_keys


def _reasons(parsed) -> dict[int, str]:
    return {p.line: p.reason for p in parsed.problems}


def test_csv_with_header_and_several_captions_per_image(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('image,caption\na.jpg,a red car\na.jpg,"a car, red"\nb.jpg,  two   dogs \n')
    parsed = read_captions(path)
    assert parsed.format == "csv" and not parsed.problems
    assert [(r.line, r.image, r.caption) for r in parsed.rows] == [
        (2, "a.jpg", "a red car"), (3, "a.jpg", "a car, red"), (4, "b.jpg", "two dogs")]


def test_header_names_columns_in_any_order_with_extra_columns(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("id\tcaption\tpath\n1\ta cat\tx/cat.png\n2\tdog\n")
    parsed = read_captions(path)
    assert [(r.image, r.caption) for r in parsed.rows] == [("x/cat.png", "a cat")]
    assert "expected 3 columns, found 2" in _reasons(parsed)[3]


def test_tsv_without_header_and_bad_rows(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_bytes(b"a.jpg\ta cat\n\nb.jpg\t \nc.jpg\tone\ttwo\nd.jpg\tcaf\xe9\ne.jpg\tok\n")
    parsed = read_captions(path)
    assert [r.image for r in parsed.rows] == ["a.jpg", "e.jpg"]
    reasons = _reasons(parsed)
    assert reasons[3] == "empty caption"
    assert "expected 2 columns, found 3" in reasons[4] and "quote" in reasons[4]
    assert "UTF-8" in reasons[5]
    assert 2 not in reasons  # blank lines are not problems


def test_jsonl_with_caption_lists_and_bad_json(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"image": "a.jpg", "caption": ["x", "y"]}\n{"image": "b.jpg"\n[1, 2]\n'
                    '{"image": "c.jpg", "caption": ""}\n{"image": "d.jpg", "caption": "z"}\n')
    parsed = read_captions(path)
    assert [(r.line, r.image, r.caption) for r in parsed.rows] == [(1, "a.jpg", "x"), (1, "a.jpg", "y"),
                                                                   (5, "d.jpg", "z")]
    reasons = _reasons(parsed)
    assert "bad JSON" in reasons[2] and "keys" in reasons[3] and reasons[4] == "empty caption"


@pytest.mark.parametrize("text, fmt", [('{"image": "a", "caption": "b"}\n', "jsonl"), ("a\tb\n", "tsv"),
                                       ("a,b\n", "csv")])
def test_format_is_sniffed_without_a_known_extension(tmp_path, text, fmt):
    path = tmp_path / "captions.txt"
    path.write_text(text)
    parsed = read_captions(path)
    assert parsed.format == fmt and [(r.image, r.caption) for r in parsed.rows] == [("a", "b")]


def test_quoted_multiline_caption_keeps_line_numbers_right(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('a.jpg,"first\nsecond"\nb.jpg\nc.jpg,third\n')
    parsed = read_captions(path)
    assert [(r.line, r.caption) for r in parsed.rows] == [(1, "first second"), (4, "third")]
    assert list(_reasons(parsed)) == [3]


def test_missing_image_files_are_reported_with_line_numbers(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    path = tmp_path / "c.csv"
    path.write_text("a.jpg,one\nmissing.jpg,two\n")
    keyed, problems = resolve_keys(read_captions(path).rows, tmp_path, keys_are_paths=True)
    assert [key for _, key in keyed] == [str((tmp_path / "a.jpg").resolve())]
    assert problems[0].line == 2 and "image file not found" in problems[0].reason


def test_zero_usable_rows_is_a_clear_error(tmp_path):
    vectors = tmp_path / "v.npz"
    np.savez(vectors, keys=np.array(["k1"]), vectors=np.eye(1, 4, dtype=np.float32))
    path = tmp_path / "c.csv"
    path.write_text("nope,a caption\nk1,\n")
    config = TrainConfig(captions=path, image_vectors=vectors)
    with pytest.raises(NoUsableRows, match=r"line 1: key not in v.npz.*line 2: empty caption"):
        load_pairs(path, config, NpzVectorSource(vectors))


def test_unreadable_captions_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read captions file"):
        read_captions(tmp_path / "absent.csv")


def test_a_utf16_file_is_named_as_such(tmp_path):
    """Found by a breaker pass: a UTF-16 file ("Unicode" in Windows tools) gave "embedded null byte"."""
    path = tmp_path / "captions.tsv"
    path.write_text("photo.jpg\ta cat\n", encoding="utf-16")
    with pytest.raises(CaptionsError, match="saved as UTF-16; save it as UTF-8"):
        read_captions(path)



def test_an_image_path_the_system_cannot_take_is_one_skipped_row(tmp_path):
    """Found by a breaker pass: a path holding a NUL byte raised ValueError and ended the whole tuning run."""
    (tmp_path / "ok.png").write_bytes(b"x")
    path = tmp_path / "captions.tsv"
    path.write_text("ok.png\ta photo\nbad\x00name.png\tanother\n" + "x" * 300 + "/y.png\ta third\n")
    keyed, problems = resolve_keys(read_captions(path).rows, tmp_path, keys_are_paths=True)
    assert [row.line for row, _ in keyed] == [1]
    assert [p.line for p in problems] == [2, 3] and "not a usable image path" in problems[0].reason


def test_jsonl_takes_the_usual_key_names(tmp_path):
    """The evaluation commands read caption files with this reader too; their files say "filepath"/"text"/"sentence"
    as often as "image"/"caption" (a review found those refused after the readers were merged)."""
    path = tmp_path / "captions.jsonl"
    path.write_text('{"filepath": "a.jpg", "text": "a dog"}\n{"image": "b.jpg", "sentence": ["x", "y"]}\n'
                    '{"photo": "c.jpg", "caption": "z"}\n')
    parsed = read_captions(path)
    assert [(r.image, r.caption) for r in parsed.rows] == [("a.jpg", "a dog"), ("b.jpg", "x"), ("b.jpg", "y")]
    assert [p.line for p in parsed.problems] == [3]
