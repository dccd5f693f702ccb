"""read_metadata on real files: dates with and without offsets, camera, GPS signs, garbage that must not raise."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
from PIL import ExifTags, Image, TiffImagePlugin

from indexer.scan.decode import decode_image
from indexer.scan.exif import Metadata, read_metadata
from tests import imagegen as g

FULL = {
    "taken_at": datetime(2023, 7, 14, 18, 30, 5),
    "offset": "+02:00",
    "make": "Canon",
    "model": "Canon EOS R6",
    "gps": (48.858222, 2.2945),
    "orientation": 6,
}


def _meta(path) -> Metadata:
    with Image.open(path) as img:
        return read_metadata(img)


def test_full_exif_from_a_jpeg(tmp_path):
    meta = _meta(g.write_jpeg(tmp_path / "a.jpg", exif=FULL))
    assert meta.taken_at == datetime(2023, 7, 14, 18, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert (meta.camera_make, meta.camera_model, meta.orientation) == ("Canon", "Canon EOS R6", 6)
    assert meta.gps_lat == pytest.approx(48.858222, abs=1e-6) and meta.gps_lon == pytest.approx(2.2945, abs=1e-6)


@pytest.mark.parametrize(("lat", "lon"), [(-33.856784, 151.215297), (40.689247, -74.044502), (-22.951916, -43.2105)])
def test_gps_hemispheres_give_signs(tmp_path, lat, lon):
    meta = _meta(g.write_jpeg(tmp_path / "gps.jpg", exif={"gps": (lat, lon)}))
    assert meta.gps_lat == pytest.approx(lat, abs=1e-6) and meta.gps_lon == pytest.approx(lon, abs=1e-6)


def test_no_offset_gives_naive_camera_local_time(tmp_path):
    meta = _meta(g.write_jpeg(tmp_path / "a.jpg", exif={"taken_at": "2019:01:02 03:04:05"}))
    assert meta.taken_at == datetime(2019, 1, 2, 3, 4, 5) and meta.taken_at.tzinfo is None


def test_negative_offset(tmp_path):
    meta = _meta(g.write_jpeg(tmp_path / "a.jpg", exif={"taken_at": "2019:01:02 03:04:05", "offset": "-05:30"}))
    assert meta.taken_at.utcoffset() == -timedelta(hours=5, minutes=30)


def test_falls_back_to_ifd0_datetime(tmp_path):
    meta = _meta(g.write_jpeg(tmp_path / "a.jpg", exif={"datetime": "2001:02:03 04:05:06"}))
    assert meta.taken_at == datetime(2001, 2, 3, 4, 5, 6)


def test_original_wins_over_ifd0_datetime(tmp_path):
    exif = {"datetime": "2024:01:01 00:00:00", "taken_at": "2001:02:03 04:05:06"}  # DateTime = last edit
    assert _meta(g.write_jpeg(tmp_path / "a.jpg", exif=exif)).taken_at == datetime(2001, 2, 3, 4, 5, 6)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0000:00:00 00:00:00", None),
        ("    :  :     :  :  ", None),
        ("2020:13:45 99:00:00", None),
        ("2020-05-06 07:08:09", datetime(2020, 5, 6, 7, 8, 9)),
        ("2020:05:06 07:08:09.123\x00", datetime(2020, 5, 6, 7, 8, 9)),
    ],
)
def test_odd_dates(tmp_path, raw, expected):
    assert _meta(g.write_jpeg(tmp_path / "a.jpg", exif={"taken_at": raw})).taken_at == expected


def test_padded_strings_are_stripped_and_empty_is_none(tmp_path):
    meta = _meta(g.write_jpeg(tmp_path / "a.jpg", exif={"make": "NIKON CORPORATION\x00\x00  ", "model": "   "}))
    assert (meta.camera_make, meta.camera_model) == ("NIKON CORPORATION", None)


def test_no_exif_gives_defaults(tmp_path):
    assert _meta(g.write_jpeg(tmp_path / "plain.jpg")) == Metadata()
    assert _meta(g.write_png(tmp_path / "plain.png")) == Metadata()


def test_zero_denominators_and_null_island_are_no_location(tmp_path):
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (TiffImagePlugin.IFDRational(1, 0), 0.0, 0.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (10.0, 0.0, 0.0)
    path = tmp_path / "nan.jpg"
    g.noise_image().save(path, exif=exif.tobytes())
    assert (_meta(path).gps_lat, _meta(path).gps_lon) == (None, None)
    nul = _meta(g.write_jpeg(tmp_path / "zero.jpg", exif={"gps": (0.0, 0.0), "make": "X"}))
    assert (nul.gps_lat, nul.gps_lon, nul.camera_make) == (None, None, "X")


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # Pillow reports each skipped tag
@pytest.mark.parametrize("seed", range(20))
def test_garbage_exif_never_raises(tmp_path, seed):
    import random

    rng = random.Random(seed)
    good = build = g.build_exif(FULL).tobytes()
    if seed < 10:  # random bytes behind a valid TIFF header
        build = good[:8] + rng.randbytes(rng.randint(0, 400))
    else:  # a real EXIF block with bytes flipped
        flipped = bytearray(good)
        for _ in range(rng.randint(1, 20)):
            flipped[rng.randrange(8, len(flipped))] = rng.randrange(256)
        build = bytes(flipped)
    path = tmp_path / "bad.jpg"
    g.noise_image().save(path, exif=build)
    meta = _meta(path)
    assert isinstance(meta, Metadata) and 1 <= meta.orientation <= 8
    decode_image(path.read_bytes())  # and the photo itself still decodes


def test_read_metadata_survives_an_exploding_getexif():
    class Broken(Image.Image):
        def getexif(self):
            raise SyntaxError("not a TIFF file")

    assert read_metadata(Broken()) == Metadata()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "WEBP", "PNG", "TIFF"])
def test_metadata_from_other_formats_through_decode(tmp_path, fmt):
    path = g.write_image(tmp_path / f"m.{fmt.lower()}", fmt, size=(40, 30), exif=FULL)
    meta = decode_image(path.read_bytes()).metadata
    assert meta.taken_at == datetime(2023, 7, 14, 18, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert (meta.camera_make, meta.camera_model, meta.orientation) == ("Canon", "Canon EOS R6", 6)
    assert meta.gps_lat == pytest.approx(48.858222, abs=1e-5) and meta.gps_lon == pytest.approx(2.2945, abs=1e-5)


def test_heic_orientation_is_applied_once(tmp_path):
    upright = g.marker_image((120, 80))
    path = g.write_heic(tmp_path / "o.heic", image=g.oriented(upright, 8), exif={"orientation": 8})
    out = decode_image(path.read_bytes())
    assert out.metadata.orientation == 8 and (out.width, out.height) == (120, 80) == out.image.size
    r, gr, b = out.image.getpixel((3, 3))
    assert r > 200 and gr < 60 and b < 60


def test_metadata_is_read_before_reduced_decode_changes_anything(tmp_path):
    path = g.write_jpeg(tmp_path / "big.jpg", image=g.photo_like_image((2400, 1600)), exif=FULL)
    out = decode_image(path.read_bytes(), min_side=224)
    assert out.reduced and out.metadata.camera_model == "Canon EOS R6" and out.metadata.orientation == 6
    assert (out.width, out.height) == (1600, 2400)


def test_exif_bytes_roundtrip_helper():
    data = g.build_exif({"make": "Sony"}).tobytes()
    buf = io.BytesIO()
    g.noise_image().save(buf, format="JPEG", exif=data)
    assert read_metadata(Image.open(buf)).camera_make == "Sony"
