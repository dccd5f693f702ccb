"""Uploaded captions files are kept under the data home, where a tuning run can be resumed from the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from ui.tune_page import _captions_path


@dataclass
class Upload:
    name: str
    data: bytes

    def getvalue(self) -> bytes:
        return self.data


def test_a_second_upload_of_the_same_name_keeps_the_first(tmp_path):
    """Found by a breaker pass: re-uploading `captions.csv` replaced the file an earlier run would resume from."""
    first = _captions_path(tmp_path, "", Upload("captions.csv", b"a.jpg,a cat\n"))
    again = _captions_path(tmp_path, "", Upload("captions.csv", b"a.jpg,a cat\n"))  # same bytes: same file
    other = _captions_path(tmp_path, "", Upload("captions.csv", b"b.jpg,a dog\n"))
    assert first == again == tmp_path / "captions" / "captions.csv" and first.read_bytes() == b"a.jpg,a cat\n"
    assert other != first and other.parent == first.parent and other.read_bytes() == b"b.jpg,a dog\n"
    assert other.name.startswith("captions-") and other.suffix == ".csv"
