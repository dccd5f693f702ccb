"""Real image files on disk for tests: every format and mode the indexer meets, EXIF, and the usual broken files.

Images have known content (solid colours, a red disk, stripes, a corner marker) so tests can check meaning, not just
that something decoded. Only Pillow, numpy and pillow-heif are used; nothing is downloaded.
"""

from __future__ import annotations

import io
import struct
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageColor, ImageDraw

Size = tuple[int, int]
RGB = tuple[int, int, int]

# Orientation n stores the upright picture transformed by the inverse of what a viewer applies to show it
# (ImageOps.exif_transpose); all of these are their own inverse except the two 90-degree rotations.
_STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# --- pictures with known content -------------------------------------------------------------------------------


def solid_color_image(color_name: str, size: Size = (64, 48)) -> Image.Image:
    """A flat RGB image of a CSS colour name ('red', 'navy', '#336699')."""
    return Image.new("RGB", size, ImageColor.getrgb(color_name)[:3])


def red_disk_on_white(size: Size = (128, 96), radius_frac: float = 0.35) -> Image.Image:
    img = Image.new("RGB", size, "white")
    cx, cy, r = size[0] / 2, size[1] / 2, radius_frac * min(size)
    ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 0, 0))
    return img


def blue_stripes(size: Size = (128, 96), period: int = 16, horizontal: bool = True) -> Image.Image:
    """Alternating blue and white bands `period // 2` px wide."""
    idx = np.arange(size[1] if horizontal else size[0]) % period < period // 2
    a = np.full((size[1], size[0], 3), 255, np.uint8)
    band = (slice(None), idx) if not horizontal else (idx, slice(None))
    a[band] = (0, 0, 255)
    return Image.fromarray(a)


def marker_image(size: Size = (120, 80), marker: RGB = (255, 0, 0), frac: float = 0.25) -> Image.Image:
    """White picture with a coloured block in its top-left corner: shows which way up an image came out."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle((0, 0, int(size[0] * frac) - 1, int(size[1] * frac) - 1), fill=marker)
    return img


def noise_image(size: Size = (64, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def photo_like_image(size: Size = (640, 480), seed: int = 0, noise: float = 12.0) -> Image.Image:
    """Gradients, soft blobs and sensor-like noise: compresses like a photo (not like a flat colour or pure noise).

    The smooth part is drawn at 1/8 scale and upsampled, so a 12 MP picture takes well under a second.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    sw, sh = max(2, w // 8), max(2, h // 8)
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    a = np.empty((sh, sw, 3), np.float32)
    for c in range(3):
        a[..., c] = 255 * (0.5 + 0.25 * np.sin(x / sw * rng.uniform(2, 6) + rng.uniform(0, 6)))
        a[..., c] += 60 * np.cos(y / sh * rng.uniform(2, 6) + rng.uniform(0, 6))
    for _ in range(6):  # soft blobs ("objects")
        cx, cy, r = rng.uniform(0, sw), rng.uniform(0, sh), rng.uniform(0.05, 0.3) * min(sw, sh)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        a += blob[..., None] * rng.uniform(-90, 90, 3).astype(np.float32)
    smooth = Image.fromarray(a.clip(0, 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    grain = rng.normal(0.0, noise, (h, w, 1)).astype(np.int16)  # luminance grain, like a sensor at base ISO
    return Image.fromarray((np.asarray(smooth, np.int16) + grain).clip(0, 255).astype(np.uint8))


def oriented(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for `upright` when it writes EXIF `orientation` instead of rotating."""
    op = _STORE_FOR_ORIENTATION[orientation]
    return upright.transpose(op) if op is not None else upright.copy()


# --- EXIF -------------------------------------------------------------------------------------------------------


def build_exif(spec: dict[str, Any] | None) -> Image.Exif:
    """Image.Exif from a friendly dict. Keys (all optional): orientation, taken_at (datetime or EXIF string →
    DateTimeOriginal), offset ('+02:00' → OffsetTimeOriginal), datetime (IFD0 DateTime), make, model,
    gps ((lat, lon) signed decimal degrees)."""
    exif = Image.Exif()
    spec = spec or {}
    if "orientation" in spec:
        exif[ExifTags.Base.Orientation] = spec["orientation"]
    if "make" in spec:
        exif[ExifTags.Base.Make] = spec["make"]
    if "model" in spec:
        exif[ExifTags.Base.Model] = spec["model"]
    if "datetime" in spec:
        exif[ExifTags.Base.DateTime] = _exif_date(spec["datetime"])
    if "taken_at" in spec or "offset" in spec:
        ifd = exif.get_ifd(ExifTags.IFD.Exif)
        if "taken_at" in spec:
            ifd[ExifTags.Base.DateTimeOriginal] = _exif_date(spec["taken_at"])
        if "offset" in spec:
            ifd[ExifTags.Base.OffsetTimeOriginal] = spec["offset"]
    if "gps" in spec:
        lat, lon = spec["gps"]
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        gps[ExifTags.GPS.GPSLatitude] = _dms(lat)
        gps[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        gps[ExifTags.GPS.GPSLongitude] = _dms(lon)
    return exif


def _exif_date(value: datetime | str) -> str:
    return value.strftime("%Y:%m:%d %H:%M:%S") if isinstance(value, datetime) else value


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 4)
    return (float(degrees), float(minutes), seconds)


# --- writers ----------------------------------------------------------------------------------------------------


def _content(size: Size, color: str | RGB | None, seed: int | None, image: Image.Image | None) -> Image.Image:
    if image is not None:
        return image
    if color is not None:
        return Image.new("RGB", size, color)
    return noise_image(size, seed or 0)


def write_jpeg(
    path: str | Path,
    size: Size = (64, 48),
    color: str | RGB | None = None,
    seed: int | None = None,
    exif: dict[str, Any] | None = None,
    *,
    image: Image.Image | None = None,
    mode: str = "RGB",
    quality: int = 90,
    progressive: bool = False,
) -> Path:
    """A JPEG of `image`, else a solid `color`, else seeded noise; `mode` may be RGB, L or CMYK."""
    img = _content(size, color, seed, image).convert(mode)
    kwargs: dict[str, Any] = {"quality": quality, "progressive": progressive}
    if exif:
        kwargs["exif"] = build_exif(exif).tobytes()
    return _save(img, path, "JPEG", **kwargs)


def write_oriented_jpeg(path: str | Path, upright: Image.Image, orientation: int, **kwargs: Any) -> Path:
    """A JPEG whose stored pixels need EXIF `orientation` applied to look like `upright`."""
    exif = {**kwargs.pop("exif", {}), "orientation": orientation}
    return write_jpeg(path, image=oriented(upright, orientation), exif=exif, **kwargs)


def write_png(
    path: str | Path,
    size: Size = (64, 48),
    mode: str = "RGB",
    color: str | RGB | None = None,
    seed: int | None = None,
    *,
    image: Image.Image | None = None,
    exif: dict[str, Any] | None = None,
) -> Path:
    """A PNG in `mode`: RGB, RGBA or LA (left half transparent unless `image` has that mode already), L, 1, P,
    'PT' (P with the top-left pixel's colour transparent), or I;16 / I (a horizontal 0..65535 ramp)."""
    return write_image(path, "PNG", size, mode, color, seed, image=image, exif=exif)


def write_image(
    path: str | Path,
    fmt: str,
    size: Size = (64, 48),
    mode: str = "RGB",
    color: str | RGB | None = None,
    seed: int | None = None,
    *,
    image: Image.Image | None = None,
    exif: dict[str, Any] | None = None,
    **save_kwargs: Any,
) -> Path:
    """Any format Pillow (or pillow-heif) can write: JPEG, PNG, WEBP, GIF, BMP, TIFF, HEIF, AVIF, ICO, ...

    HEIF goes through pillow-heif (registered here); AVIF through Pillow's own codec, because the pillow-heif wheel
    installed here ships no AVIF encoder. Both apply EXIF orientation on decode.
    """
    fmt = fmt.upper()
    _register_writer(fmt)
    img = _moded(_content(size, color, seed, image), mode)
    if exif:
        save_kwargs["exif"] = build_exif(exif).tobytes()
    if mode == "PT":
        save_kwargs.setdefault("transparency", img.getpixel((0, 0)))
    if fmt in ("HEIF", "AVIF", "WEBP"):
        save_kwargs.setdefault("quality", 90)
    return _save(img, path, fmt, **save_kwargs)


def write_heic(path: str | Path, size: Size = (64, 48), color: str | RGB | None = None, **kwargs: Any) -> Path:
    return write_image(path, "HEIF", size, color=color, **kwargs)


def write_avif(path: str | Path, size: Size = (64, 48), color: str | RGB | None = None, **kwargs: Any) -> Path:
    return write_image(path, "AVIF", size, color=color, **kwargs)


def _register_writer(fmt: str) -> None:
    if fmt.upper() == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()


def _moded(img: Image.Image, mode: str) -> Image.Image:
    w, h = img.size
    if img.mode == mode:
        return img  # caller's own pixels (and alpha) win
    if mode == "RGBA":
        out = img.convert("RGBA")
        alpha = np.full((h, w), 255, np.uint8)
        alpha[:, : w // 2] = 0
        out.putalpha(Image.fromarray(alpha))
        return out
    if mode == "LA":
        return _moded(img, "RGBA").convert("LA")
    if mode in ("P", "PT"):
        return img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if mode.startswith("I;16") or mode == "I":
        ramp = np.tile(np.linspace(0, 65535, w).round().astype(np.uint16), (h, 1))
        return Image.fromarray(ramp if mode != "I" else ramp.astype(np.int32))
    return img.convert(mode)


def _save(img: Image.Image, path: str | Path, fmt: str, **kwargs: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kwargs)
    return path


# --- broken files ----------------------------------------------------------------------------------------------


def make_truncated(path: str | Path, keep: float = 0.5, size: Size = (256, 192), fmt: str = "JPEG") -> Path:
    """A photo cut off after `keep` of its bytes (an interrupted copy); the header survives for keep >= ~0.1."""
    img = photo_like_image(size)
    if fmt == "GIF":
        img = img.quantize(method=Image.Quantize.FASTOCTREE)  # Pillow's default quantizer takes ~0.4 s here
    _register_writer(fmt)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()
    return _write_bytes(path, data[: max(1, int(len(data) * keep))])


def make_corrupt(path: str | Path, size: Size = (128, 96), seed: int = 0) -> Path:
    """A PNG whose compressed pixel data was overwritten with random bytes (chunk CRCs fixed up, so only the zlib
    stream is broken): the header parses, decoding fails."""
    buf = io.BytesIO()
    noise_image(size, seed).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    rng = np.random.default_rng(seed)
    data[start + 2 : start + length] = rng.integers(0, 256, length - 2, dtype=np.uint8).tobytes()
    data[start + length : start + length + 4] = struct.pack(">I", zlib.crc32(bytes(data[start - 4 : start + length])))
    return _write_bytes(path, bytes(data))


def make_zero_byte(path: str | Path) -> Path:
    return _write_bytes(path, b"")


def make_text_with_jpg_ext(path: str | Path, text: str = "This is not a photo, just a note.\n" * 5) -> Path:
    return _write_bytes(path, text.encode())


def make_png_bomb(path: str | Path, width: int, height: int, *, data: bool = True) -> Path:
    """A genuine 8-bit greyscale PNG of width x height black pixels, written without ever holding it in memory.

    Zero rows compress ~1000:1, so a 200-megapixel bomb is ~200 kB on disk. `data=False` writes a valid header
    and an empty image stream: instant, for guards that must refuse from the header alone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        comp = zlib.compressobj(9)
        stream = []
        if data:
            rows = bytes(1 + width) * max(1, (1 << 22) // (1 + width))  # ~4 MiB of filter-byte + zero rows
            per = len(rows) // (1 + width)
            for start in range(0, height, per):
                stream.append(comp.compress(rows[: (1 + width) * min(per, height - start)]))
        stream.append(comp.flush())
        f.write(_png_chunk(b"IDAT", b"".join(stream)))
        f.write(_png_chunk(b"IEND", b""))
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
