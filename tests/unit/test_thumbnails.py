"""Thumbnails: content-hash layout, size and aspect, atomic replacement, no stray temp files."""

from __future__ import annotations

import pytest
from PIL import Image

from indexer.scan.decode import decode_image
from indexer.scan.hashing import content_hash
from indexer.scan.thumbnails import make_thumbnail, thumbnail_path
from tests import imagegen as g


def _size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def test_path_fans_out_by_hash_prefix(tmp_path):
    h = content_hash(b"photo")
    assert thumbnail_path(tmp_path, h) == tmp_path / h[:2] / f"{h}.jpg"
    with pytest.raises(ValueError):
        thumbnail_path(tmp_path, "../etc")


def test_decoded_photo_to_thumbnail(tmp_path):
    data = g.write_oriented_jpeg(tmp_path / "p.jpg", g.red_disk_on_white((1600, 1000)), 6).read_bytes()
    decoded = decode_image(data)
    dest = make_thumbnail(decoded.image, thumbnail_path(tmp_path / "thumbs", content_hash(data)))
    with Image.open(dest) as thumb:
        assert thumb.format == "JPEG" and thumb.mode == "RGB" and thumb.size == (320, 200)  # upright, aspect kept
        r, gr, b = thumb.getpixel((160, 100))
        assert r > 230 and gr < 30 and b < 30
    assert dest.stat().st_size < 30_000
    assert list(dest.parent.iterdir()) == [dest]  # no temp file left behind


def test_no_upscaling_and_custom_size(tmp_path):
    small = make_thumbnail(g.solid_color_image("teal", (100, 40)), tmp_path / "s.jpg")
    assert _size(small) == (100, 40)
    tall = make_thumbnail(g.noise_image((300, 900)), tmp_path / "t.jpg", size=90)
    assert _size(tall) == (30, 90)


def test_alpha_input_is_flattened(tmp_path):
    rgba = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    with Image.open(make_thumbnail(rgba, tmp_path / "a.jpg")) as thumb:
        assert thumb.mode == "RGB" and min(thumb.getpixel((25, 25))) > 250


def test_replaces_existing_file(tmp_path):
    dest = tmp_path / "x.jpg"
    make_thumbnail(g.solid_color_image("red"), dest)
    make_thumbnail(g.solid_color_image("blue"), dest)
    with Image.open(dest) as thumb:
        r, _, b = thumb.getpixel((5, 5))
    assert b > 200 and r < 40
    assert [p.name for p in tmp_path.iterdir()] == ["x.jpg"]


def test_failed_write_leaves_neither_partial_nor_temp_file(tmp_path, monkeypatch):
    dest = tmp_path / "ab" / "abc.jpg"
    make_thumbnail(g.solid_color_image("red"), dest)
    before = dest.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\xff\xd8 half a jpeg")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        make_thumbnail(g.solid_color_image("blue"), dest)
    assert dest.read_bytes() == before
    assert list(dest.parent.iterdir()) == [dest]


def test_the_decoded_pixel_array_gives_the_same_thumbnail(tmp_path):
    data = g.write_oriented_jpeg(tmp_path / "p.jpg", g.noise_image((1200, 900)), 1).read_bytes()
    decoded = decode_image(data)
    assert decoded.pixels is decoded.pixels and decoded.pixels.shape == (*decoded.image.size[::-1], 3)  # made once
    from_image = make_thumbnail(decoded.image, tmp_path / "a.jpg")
    from_array = make_thumbnail(decoded.pixels, tmp_path / "b.jpg")
    assert from_image.read_bytes() == from_array.read_bytes() and _size(from_array) == (320, 240)
    assert _size(make_thumbnail(decoded.pixels, tmp_path / "c.jpg", size=2000)) == decoded.image.size  # no upscale
