"""decode_image on real files: every format and mode, orientation, reduced decode, bombs, broken files, fuzz."""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.scan.decode import IMAGE_EXTENSIONS, DecodedImage, DecodeError, decode_image, to_rgb
from indexer.scan.hashing import content_hash, hash_file
from tests import imagegen as g

FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"]
LOSSY = {"JPEG", "WEBP", "HEIF", "AVIF"}


def _decode(path: Path, **kwargs) -> DecodedImage:
    return decode_image(path.read_bytes(), name=path.name, **kwargs)


def _px(img: Image.Image, x: float, y: float) -> np.ndarray:
    """RGB at fractional position (x, y) of the image."""
    return np.asarray(img.getpixel((int(x * (img.width - 1)), int(y * (img.height - 1)))), dtype=int)


def _close(actual: np.ndarray, expected, tol: int = 0) -> bool:
    return bool(np.all(np.abs(actual - np.asarray(expected)) <= tol))


# --- formats and modes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_rgb_with_its_size_and_colour(tmp_path, fmt):
    path = g.write_image(tmp_path / f"red.{fmt.lower()}", fmt, size=(96, 64), color=(220, 30, 30))
    out = _decode(path)
    assert (out.format, out.image.mode, out.image.size, out.width, out.height) == (fmt, "RGB", (96, 64), 96, 64)
    assert _close(_px(out.image, 0.5, 0.5), (220, 30, 30), tol=12 if fmt in LOSSY else 0)
    assert not out.reduced


def test_gif_first_frame_is_used(tmp_path):
    frames = [g.solid_color_image(c, (40, 30)) for c in ("lime", "blue", "red")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert _close(_px(_decode(path).image, 0.5, 0.5), (0, 255, 0))


GREEN, RED, WHITE, BLACK = (0, 128, 0), (255, 0, 0), (255, 255, 255), (0, 0, 0)


@pytest.mark.parametrize(("fmt", "ext"), [("MPO", "jpg"), ("WEBP", "webp"), ("PNG", "png")])
def test_multi_frame_files_give_their_first_frame_as_a_usable_image(tmp_path, fmt, ext):
    path = tmp_path / f"multi.{ext}"
    first, second = g.marker_image((120, 80)), g.solid_color_image("blue", (120, 80))
    first.save(path, format=fmt, save_all=True, append_images=[second])  # phones' MPO, animated WebP, APNG
    out = _decode(path)
    assert out.format == ("JPEG" if fmt == "MPO" else fmt)
    assert _close(_px(out.image, 0.05, 0.05), (255, 0, 0), tol=8) and _close(_px(out.image, 0.9, 0.9), WHITE, tol=8)
    out.image.load()  # still a working image after the file bytes were released
    assert out.image.resize((12, 8)).size == (12, 8)


@pytest.mark.parametrize(
    ("mode", "halves", "left", "right"),
    [
        ("RGBA", (GREEN, RED), WHITE, RED),  # imagegen makes the left half transparent → composited on white
        ("LA", (GREEN, RED), WHITE, (76, 76, 76)),  # red as luminance
        ("PT", (GREEN, RED), WHITE, RED),  # palette with the top-left colour transparent
        ("P", (GREEN, RED), GREEN, RED),
        ("L", (BLACK, WHITE), BLACK, WHITE),
        ("1", (BLACK, WHITE), BLACK, WHITE),
    ],
)
def test_png_modes_become_rgb(tmp_path, mode, halves, left, right):
    img = Image.new("RGB", (64, 32), halves[0])
    img.paste(halves[1], (32, 0, 64, 32))
    path = g.write_png(tmp_path / f"{mode}.png", mode=mode, image=img)
    with Image.open(path) as stored:
        assert stored.mode == ("P" if mode == "PT" else mode)
    out = _decode(path)
    assert out.image.mode == "RGB" and out.image.size == (64, 32)
    assert _close(_px(out.image, 0.1, 0.5), left, tol=1)
    assert _close(_px(out.image, 0.9, 0.5), right, tol=1)


def test_half_transparent_red_composites_to_pink(tmp_path):
    img = Image.new("RGBA", (16, 16), (255, 0, 0, 128))
    out = _decode(g.write_png(tmp_path / "pink.png", mode="RGBA", image=img)).image
    assert _close(_px(out, 0.9, 0.5), (255, 127, 127), tol=2)


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "I;16"), ("TIFF", "I;16"), ("TIFF", "I")])
def test_high_bit_depth_is_scaled_not_clipped(tmp_path, fmt, mode):
    path = g.write_image(tmp_path / f"ramp.{fmt.lower()}", fmt, size=(256, 8), mode=mode)
    with Image.open(path) as stored:
        assert stored.mode == mode
    out = _decode(path).image
    row = np.asarray(out)[4, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and abs(row[128] - 128) <= 2  # a full ramp, not a white bar
    assert np.all(np.diff(row) >= 0)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb(tmp_path, fmt):
    path = g.write_image(tmp_path / f"cmyk.{fmt.lower()}", fmt, size=(32, 32), mode="CMYK", color=(0, 0, 255))
    out = _decode(path).image
    assert out.mode == "RGB" and _close(_px(out, 0.5, 0.5), (0, 0, 255), tol=10)


def test_float_tiff_becomes_rgb(tmp_path):
    a = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (4, 1))
    path = tmp_path / "float.tif"
    Image.fromarray(a).save(path)
    row = np.asarray(_decode(path).image)[2, :, 0].astype(int)
    assert row[0] == 0 and row[-1] >= 254


def test_to_rgb_passes_rgb_through_untouched():
    img = g.solid_color_image("navy")
    assert to_rgb(img) is img


def test_grey_progressive_jpeg(tmp_path):
    out = _decode(g.write_jpeg(tmp_path / "grey.jpg", (80, 60), color=(128, 128, 128), mode="L", progressive=True))
    assert out.image.mode == "RGB" and _close(_px(out.image, 0.5, 0.5), (128, 128, 128), tol=2)


# --- orientation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_puts_the_marker_top_left(tmp_path, orientation):
    upright = g.marker_image((120, 80))
    out = _decode(g.write_oriented_jpeg(tmp_path / f"o{orientation}.jpg", upright, orientation))
    assert (out.width, out.height) == (120, 80) == out.image.size
    assert out.metadata.orientation == orientation
    assert _close(_px(out.image, 0.05, 0.05), (255, 0, 0), tol=40)
    for corner in ((0.95, 0.05), (0.05, 0.95), (0.95, 0.95)):
        assert _close(_px(out.image, *corner), (255, 255, 255), tol=40)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "PNG", "WEBP", "TIFF"])
def test_orientation_in_other_formats(tmp_path, fmt):
    upright = g.marker_image((120, 80))
    path = g.write_image(tmp_path / f"o6.{fmt.lower()}", fmt, image=g.oriented(upright, 6), exif={"orientation": 6})
    out = _decode(path)
    assert (out.width, out.height) == (120, 80) == out.image.size
    assert _close(_px(out.image, 0.05, 0.05), (255, 0, 0), tol=40)
    assert _close(_px(out.image, 0.95, 0.95), (255, 255, 255), tol=40)


def test_garbage_orientation_is_ignored(tmp_path):
    out = _decode(g.write_jpeg(tmp_path / "o9.jpg", (40, 20), color="red", exif={"orientation": 9}))
    assert (out.width, out.height, out.image.size, out.metadata.orientation) == (40, 20, (40, 20), 1)


# --- reduced decode ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jpeg_12mp(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "12mp.jpg"
    return g.write_oriented_jpeg(path, g.photo_like_image((4000, 3000), seed=1), 6, quality=85)


def test_reduced_decode_of_12mp_jpeg_keeps_min_side_and_full_dims(jpeg_12mp):
    out = _decode(jpeg_12mp)  # stored 3000x4000 with orientation 6 → upright 4000x3000
    assert (out.width, out.height) == (4000, 3000)
    assert out.reduced and min(out.image.size) >= 448 and out.image.size == (1000, 750)
    full = _decode(jpeg_12mp, min_side=None)
    assert full.image.size == (4000, 3000) and not full.reduced
    # Same picture: the reduced decode matches a box-downscaled full decode closely.
    ref = np.asarray(full.image.reduce(4), dtype=float)
    assert np.abs(np.asarray(out.image, dtype=float) - ref).mean() < 3


@pytest.mark.parametrize("min_side", [224, 448, 1000])
def test_reduced_decode_never_goes_below_min_side(jpeg_12mp, min_side):
    out = _decode(jpeg_12mp, min_side=min_side)
    assert min(out.image.size) >= min_side
    assert min(out.image.size) < 2 * min_side or out.image.size == (4000, 3000)


def test_non_jpeg_is_box_reduced_after_load(tmp_path):
    path = g.write_png(tmp_path / "big.png", image=g.red_disk_on_white((2000, 1200)))
    out = _decode(path)
    assert (out.width, out.height) == (2000, 1200)
    assert out.image.size == (1000, 600)  # factor 1200 // 448 = 2
    assert _close(_px(out.image, 0.5, 0.5), (255, 0, 0)) and _close(_px(out.image, 0.02, 0.02), (255, 255, 255))


def test_small_images_are_not_upscaled(tmp_path):
    assert _decode(g.write_jpeg(tmp_path / "s.jpg", (100, 50))).image.size == (100, 50)


# --- refusals ---------------------------------------------------------------------------------------------------


def test_bomb_above_pillows_hard_limit_is_refused_without_allocating(tmp_path):
    path = g.make_png_bomb(tmp_path / "bomb.png", 20000, 10000)  # 200 MP of zeros, ~200 kB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DecodeError) as err:
        _decode(path)
    assert err.value.reason == "too large: 200 megapixels (limit 179)"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kB; the pixels would be 200 MB


def test_configured_limit_is_checked_from_the_header_without_warnings(tmp_path):
    path = g.make_png_bomb(tmp_path / "hundred.png", 10000, 10000, data=False)  # in Pillow's warning zone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DecodeError) as err:
            _decode(path, max_megapixels=50)
    assert err.value.reason == "too large: 100 megapixels (limit 50)"
    assert str(err.value) == "hundred.png: too large: 100 megapixels (limit 50)"


def test_image_under_the_limit_still_decodes(tmp_path):
    out = _decode(g.write_png(tmp_path / "ok.png", (300, 200)), max_megapixels=0.06)
    assert (out.width, out.height) == (300, 200)
    with pytest.raises(DecodeError, match="too large: 0.1 megapixels"):
        _decode(g.write_png(tmp_path / "no.png", (400, 250)), max_megapixels=0.06)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF", "AVIF"])
@pytest.mark.parametrize("keep", [0.05, 0.5, 0.97])
def test_truncated_files_are_errors_not_grey_images(tmp_path, fmt, keep):
    path = g.make_truncated(tmp_path / f"cut.{fmt.lower()}", keep=keep, fmt=fmt)
    with pytest.raises(DecodeError) as err:
        _decode(path)
    assert err.value.reason == "truncated image"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (g.make_zero_byte, "empty file"),
        (g.make_text_with_jpg_ext, "not an image (text)"),
        (g.make_corrupt, "corrupt PNG (broken data stream when reading image file)"),
        (lambda p: g._write_bytes(p, b"<!DOCTYPE html><html>403 Forbidden</html>"), "not an image (HTML page)"),
        (lambda p: g._write_bytes(p, b"%PDF-1.7\n" + bytes(200)), "not an image (PDF document)"),
        (lambda p: g.write_image(p, "ICO", (32, 32)), "unsupported format ICO"),
        (lambda p: g._write_bytes(p, b"\xff\xd8\xff\x02" + bytes(4000)), "corrupt JPEG header"),  # no such marker
    ],
)
def test_broken_files_give_a_reason(tmp_path, make, reason):
    path = make(tmp_path / "photo.jpg")
    with pytest.raises(DecodeError) as err:
        _decode(path)
    assert err.value.reason == reason
    assert str(err.value) == f"photo.jpg: {reason}"


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # damaged TIFF tags are reported, skipped
def test_fuzz_bad_bytes_only_ever_raise_decode_error(tmp_path):
    rng = random.Random(1234)
    seeds = [
        g.write_image(tmp_path / f"seed.{fmt.lower()}", fmt, (48, 40), seed=i).read_bytes()
        for i, fmt in enumerate(["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF"])
    ]
    cases = [rng.randbytes(rng.randint(1, 3000)) for _ in range(40)]
    for data in seeds:
        cases += [data[: rng.randint(1, len(data) - 1)] for _ in range(12)]
        for _ in range(12):
            flipped = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            cases.append(bytes(flipped))
    ok = 0
    for data in cases:
        try:
            out = decode_image(data, max_megapixels=4)
        except DecodeError as err:
            assert err.reason and "\n" not in err.reason
        else:
            assert out.image.mode == "RGB" and min(out.image.size) >= 1
            ok += 1
    assert ok < len(cases)


def test_image_extensions():
    expected = {"jpg", "jpeg", "jpe", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "avif"}
    assert expected == IMAGE_EXTENSIONS


# --- hashing: the same bytes feed the hash and the decoder --------------------------------------------------------


def test_content_hash_matches_streamed_file_hash(tmp_path):
    path = tmp_path / "big.bin"
    data = random.Random(0).randbytes(3 * (1 << 20) + 17)  # crosses chunk boundaries
    path.write_bytes(data)
    assert content_hash(data) == hash_file(path) == hash_file(path, chunk_size=4096)
    assert len(content_hash(b"")) == 64 and content_hash(b"a") != content_hash(b"b")


def test_heif_opener_is_registered_lazily_in_a_fresh_process(tmp_path):
    """JPEG-only libraries never import pillow-heif; the first HEIC registers it (imagegen registers it in-process,
    so only a fresh interpreter shows this)."""
    heic = g.write_heic(tmp_path / "a.heic", (40, 30), color="blue")
    jpeg = g.write_jpeg(tmp_path / "a.jpg", (40, 30))
    code = (
        "import sys; from pathlib import Path; from indexer.scan.decode import decode_image\n"
        f"decode_image(Path({str(jpeg)!r}).read_bytes()); assert 'pillow_heif' not in sys.modules\n"
        f"out = decode_image(Path({str(heic)!r}).read_bytes()); print(out.format, out.image.size)\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "HEIF (40, 30)"


def test_accepts_any_bytes_like_and_rejects_a_bad_min_side(tmp_path):
    data = g.write_jpeg(tmp_path / "a.jpg", (60, 40), color="red").read_bytes()
    assert decode_image(memoryview(data)).image.size == decode_image(bytearray(data)).image.size == (60, 40)
    with pytest.raises(DecodeError, match="not an image"):
        decode_image(memoryview(b"hello world, plain text"))
    with pytest.raises(ValueError, match="min_side"):
        decode_image(data, min_side=0)


def test_concurrent_decodes_match_serial_ones(tmp_path):
    paths = [
        g.write_image(tmp_path / f"{i}.{fmt.lower()}", fmt, (200 + i, 150), image=g.red_disk_on_white((200 + i, 150)))
        for i, fmt in enumerate(FORMATS * 3)
    ] + [g.make_truncated(tmp_path / f"t{i}.jpg", keep=0.5) for i in range(4)]
    blobs = [p.read_bytes() for p in paths]

    def run(blob: bytes):
        try:
            out = decode_image(blob, min_side=64)
            return out.format, out.width, out.height, out.image.tobytes()
        except DecodeError as err:
            return err.reason

    serial = [run(b) for b in blobs]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(run, blobs * 3)) == serial * 3
    assert serial[-1] == "truncated image" and serial[0][:3] == ("JPEG", 200, 150)


@pytest.mark.parametrize("fmt", ["WEBP", "HEIF", "PNG"])
def test_known_content_survives_decode_and_reduction(tmp_path, fmt):
    stripes = g.blue_stripes((960, 960), period=64)  # 32 px bands → 16 px after the 2x reduction to >= 448
    out = _decode(g.write_image(tmp_path / f"s.{fmt.lower()}", fmt, image=stripes))
    assert out.image.size == (480, 480)
    column = np.asarray(out.image)[:, 240, :].astype(int)
    blue_rows = (column[:, 2] > 200) & (column[:, 0] < 60)
    assert 0.4 < blue_rows.mean() < 0.6 and blue_rows[8] and not blue_rows[24]
