"""Bytes → upright RGB image, fast, for every photo format a camera or phone writes.

The indexer reads each file once, hashes the bytes and decodes from the same bytes here. Decoding dominates the
indexer's CPU time, so JPEGs use libjpeg's reduced-size DCT decode (`Image.draft`): asking for `min_side` keeps at
least that many pixels on both sides, and a 12 MP JPEG reaches the model's 224 px 2.6-4.4x faster per core
(bench/decode.py; the gain shrinks as the file's entropy grows, since Huffman decoding is not scaled). The default
448 leaves a 2x margin for the model's own antialiased resize (embedding fidelity to a full decode, measured by
bench/decode_fidelity.py: cos 0.9997 on one real-photo set, 0.9992 on very large wallpapers; see ModelBundle).

Bad files are the normal case in a photo library (half-copied files, HTML saved as .jpg, decompression bombs), so
every failure is a `DecodeError` with a short human reason and nothing else escapes. Truncated files are errors,
never grey-padded images (`ImageFile.LOAD_TRUNCATED_IMAGES` stays False).
"""

from __future__ import annotations

import io
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import ExifTags, Image, ImageOps

from indexer.scan.exif import Metadata, read_metadata

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "jpe", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "avif"})
DEFAULT_MIN_SIDE = 448  # 2x the model's 224 px input
DEFAULT_MAX_MEGAPIXELS = 180.0  # matches IndexerSettings.max_megapixels; Pillow's own hard stop is 2 x 89.5 MP

# Formats identified by content, never by extension. MPO is a JPEG with extra frames (phones write it).
_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
_EXIF_NEEDS_LOAD = frozenset({"PNG"})  # an eXIf chunk may follow the pixel data
_TRANSPOSING_ORIENTATIONS = frozenset(range(2, 9))
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90 degrees
_BOMB_PIXELS_RE = re.compile(r"\((\d+) pixels\)")
_OPEN_LOCK = threading.Lock()  # warnings.catch_warnings is process-global state, not thread-safe
_HEIF_LOCK = threading.Lock()
_heif_available: bool | None = None  # None = not tried yet


class DecodeError(ValueError):
    """A file that is not a decodable photo; `reason` is short and meant for users ('truncated image')."""

    def __init__(self, reason: str, name: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.name = name

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}" if self.name else self.reason


@dataclass(frozen=True, eq=False)
class DecodedImage:
    image: Image.Image  # RGB, upright; shorter side >= min_side (or the full size if smaller), not larger than needed
    width: int  # full-resolution width, after orientation (what a viewer shows), even when `image` is reduced
    height: int  # full-resolution height, after orientation
    format: str  # JPEG, PNG, WEBP, GIF, BMP, TIFF, HEIF or AVIF
    metadata: Metadata

    @property
    def reduced(self) -> bool:
        return self.image.size != (self.width, self.height)

    @cached_property
    def pixels(self) -> np.ndarray:
        """`image` as a writable (H, W, 3) uint8 array, made once: Pillow's export costs about as much as a resize
        (~1.5 ms for 1000x750), so the preprocessing and the thumbnail share it."""
        return np.array(self.image)


def decode_image(
    data: bytes,
    *,
    min_side: int | None = DEFAULT_MIN_SIDE,
    name: str = "",
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> DecodedImage:
    """Decode an image file's bytes into an upright RGB image of at least `min_side` px per side (None: full size).

    `name` only labels the error. Raises `DecodeError` and nothing else for bad data. Images above `max_megapixels`
    are refused from their header, before any pixel is allocated; limits above Pillow's own hard stop
    (2 x `PIL.Image.MAX_IMAGE_PIXELS`, ~179 MP) also need that process-wide setting raised.
    """
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be a positive number of pixels or None, not {min_side}")
    data = data if isinstance(data, bytes) else bytes(data)  # the sniffers below use bytes methods
    fp = _EofProbe(data)
    try:
        if not data:
            raise DecodeError("empty file")
        im = _open(fp, data, max_megapixels)
        try:
            decoded = _decode_opened(im, min_side)
        except BaseException:
            im.close()
            raise
        if decoded.image is not im:
            im.close()  # free the full-size buffer now, not at garbage collection
        return decoded
    except DecodeError as exc:
        exc.name = name
        raise
    except Exception as exc:  # Pillow's plugins raise a zoo of types on malformed data; all mean "bad file"
        raise DecodeError(_reason(exc, data, max_megapixels), name) from exc
    finally:
        fp.close()  # pixels are loaded; multi-frame formats (MPO, GIF) would otherwise pin the file bytes for seek()


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any Pillow mode → RGB: alpha composited on `background`, 16/32-bit and float scaled (not clipped) to 8 bits."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return Image.fromarray(_to_uint8(img)).convert("RGB")
    if img.has_transparency_data:  # RGBA, LA, PA, and P/L/RGB with a transparent colour
        rgba = img.convert("RGBA")
        out = Image.new("RGB", img.size, background)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    try:
        return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...
    except ValueError as exc:
        raise DecodeError(f"unsupported colour mode {img.mode}") from exc


def _open(fp: _EofProbe, data: bytes, max_megapixels: float) -> Image.Image:
    """Parse the header only (Pillow opens lazily) and refuse bombs before any pixel buffer exists."""
    if data[4:8] == b"ftyp":
        _register_heif()
    Image.init()
    formats = tuple(f for f in _FORMATS if f in Image.OPEN)
    with _OPEN_LOCK, warnings.catch_warnings():
        # Our explicit limit below decides; Pillow's warning (above 89.5 MP) would only be noise. Its hard error
        # (above 179 MP) is raised inside open() and mapped to the same reason.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(fp, formats=formats)
        except Image.UnidentifiedImageError as exc:
            raise DecodeError(_unidentified(data, fp.hit_eof)) from exc
    pixels = im.width * im.height
    if pixels > max_megapixels * 1e6:
        im.close()
        raise DecodeError(_too_large(pixels, max_megapixels))
    return im


def _decode_opened(im: Image.Image, min_side: int | None) -> DecodedImage:
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    width, height = im.size  # before draft() shrinks it
    # Before load where possible: Pillow's TIFF loader applies and then drops the orientation tag. Never before load
    # for PNG: its getexif() loads the pixels itself, and a failed load that is retried "succeeds" on garbage.
    metadata = None if fmt in _EXIF_NEEDS_LOAD else read_metadata(im)
    if min_side and fmt == "JPEG":
        im.draft("RGB", (min_side, min_side))  # DCT scaling by 1/2, 1/4 or 1/8, never below the request
    im.load()
    if metadata is None:
        metadata = read_metadata(im)
    img, swapped = _orient(im)  # only what the loader left to do: TIFF and HEIF arrive upright, sized upright
    img = to_rgb(img)
    if min_side:
        img = _reduce(img, min_side)
    if swapped:
        width, height = height, width
    return DecodedImage(image=img, width=width, height=height, format=fmt, metadata=metadata)


def _orient(im: Image.Image) -> tuple[Image.Image, bool]:
    """Apply EXIF orientation; also say whether it swapped width and height (the reduced size can't tell us when it
    happens to be square). Upright images are returned as they are: exif_transpose would copy them. Unreadable EXIF
    leaves the image as stored rather than failing the photo."""
    try:
        declared = im.getexif().get(ExifTags.Base.Orientation, 1)
        if declared not in _TRANSPOSING_ORIENTATIONS:
            return im, False
        return ImageOps.exif_transpose(im), declared in _SWAPPING_ORIENTATIONS
    except Exception as exc:
        log.debug("EXIF orientation ignored: %r", exc)
        return im, False


def _reduce(img: Image.Image, min_side: int) -> Image.Image:
    """Box-filter downscale by an integer factor that keeps the shorter side >= min_side.

    This is what `resize(reducing_gap=...)` does first internally: cheap, antialiased, and it mirrors the JPEG DCT
    scaling so every format reaches the model at a comparable size; it also keeps decoded queues small in memory.
    """
    factor = min(img.size) // min_side
    return img.reduce(factor) if factor >= 2 else img


def _to_uint8(img: Image.Image) -> np.ndarray:
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        return (a.astype(np.uint16) >> 8).astype(np.uint8)  # full 16-bit range by definition
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    top = float(a.max()) if a.size else 0.0
    if img.mode == "F":
        scale = 255.0 if top <= 1.0 else 255.0 / top  # 0..1 floats, else stretch
    else:
        scale = 1.0 if top <= 255 else 255.0 / 65535 if top <= 65535 else 255.0 / top  # 8-, 16- or 32-bit data
    return (a * scale).clip(0, 255).astype(np.uint8)


def _register_heif() -> bool:
    """Register pillow-heif's opener once, on the first file that looks like ISO-BMFF (no import cost otherwise)."""
    global _heif_available
    if _heif_available is None:
        with _HEIF_LOCK:
            if _heif_available is None:
                try:
                    import pillow_heif

                    pillow_heif.register_heif_opener()
                    _heif_available = True
                except ImportError:
                    log.warning("HEIC/HEIF photos are skipped: pip install pillow-heif")
                    _heif_available = False
    return _heif_available


def _reason(exc: Exception, data: bytes, max_megapixels: float) -> str:
    msg = str(exc)
    if isinstance(exc, Image.DecompressionBombError):  # Pillow's hard stop fired before our own check could
        match = _BOMB_PIXELS_RE.search(msg)
        limit = min(max_megapixels, 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6)
        return _too_large(int(match.group(1)), limit) if match else "too large"
    truncated_msg = any(word in msg.lower() for word in ("truncated", "end of file"))
    if isinstance(exc, EOFError) or truncated_msg or _container_truncated(data):
        return "truncated image"
    if isinstance(exc, MemoryError):
        return "out of memory"
    kind = _image_magic(data) or "image"
    detail = (msg.strip() or type(exc).__name__).splitlines()[0][:100]
    return f"corrupt {kind} ({detail})"


def _too_large(pixels: int, limit_mp: float) -> str:
    return f"too large: {_fmt_mp(pixels / 1e6)} megapixels (limit {_fmt_mp(limit_mp)})"


def _fmt_mp(mp: float) -> str:
    return f"{mp:.1f}".rstrip("0").rstrip(".")


class _EofProbe(io.BytesIO):
    """Remembers whether a reader asked for more bytes than were left, i.e. whether a header ran off the end."""

    hit_eof = False

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if size is not None and size > 0 and len(chunk) < size:
            self.hit_eof = True
        return chunk


def _unidentified(data: bytes, hit_eof: bool) -> str:
    """Why Pillow could not open the bytes: a damaged header, another image format we don't index, or no image."""
    kind = _image_magic(data)
    if kind == "HEIF" and not _heif_available:
        return "unsupported format HEIF (pip install pillow-heif)"
    if kind:
        return "truncated image" if hit_eof or _container_truncated(data) else f"corrupt {kind} header"
    try:
        with Image.open(io.BytesIO(data)) as other:  # caller holds _OPEN_LOCK with bomb warnings silenced
            return f"unsupported format {other.format}"
    except Exception:
        pass
    return f"not an image ({_sniff(data)})"


def _container_truncated(data: bytes) -> bool:
    """True when a RIFF (WebP) or ISO-BMFF (HEIF, AVIF) file declares more bytes than it has. Their decoders read
    the whole buffer at once, so only the container's own sizes can tell a cut-off file from a damaged one."""
    if data[:4] == b"RIFF" and len(data) >= 8:
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    if data[4:8] != b"ftyp":
        return False
    pos = 0
    while pos + 8 <= len(data):  # top-level boxes: 32-bit size (1 = 64-bit size follows, 0 = to end of file) + type
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size == 1:
            if pos + 16 > len(data):
                return True
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size == 0:
            return False
        if size < 8:
            return False  # damaged, not truncated
        pos += size
    return pos > len(data) or 0 < len(data) - pos < 8


def _image_magic(data: bytes) -> str | None:
    """The supported format `data` claims to be from its first bytes (no parsing)."""
    head = data[:16]
    if data[4:8] == b"ftyp":
        return "AVIF" if data[8:12] in (b"avif", b"avis") else "HEIF" if data[8:12] in _HEIF_BRANDS else None
    for magic, fmt in _IMAGE_MAGIC:
        if head.startswith(magic) and (fmt != "WEBP" or head[8:12] == b"WEBP"):
            return fmt
    return None


_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"RIFF", "WEBP"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_OTHER_MAGIC = (
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"Rar!", "RAR archive"),
    (b"7z\xbc\xaf", "7-Zip archive"),
    (b"\x7fELF", "executable"),
    (b"ID3", "MP3 audio"),
    (b"OggS", "Ogg media"),
    (b"RIFF", "RIFF media"),
    (b"\x1aE\xdf\xa3", "Matroska/WebM video"),
)


def _sniff(data: bytes) -> str:
    """A few words on what non-image bytes look like, e.g. an HTML error page saved under a .jpg name."""
    head = data[:4096]
    if data[4:8] == b"ftyp":
        return f"ISO media, brand {data[8:12].decode('latin-1')!r} (video?)"
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what
    lower = head.lower()
    if b"<svg" in lower:
        return "SVG vector graphic"
    if b"<html" in lower or b"<!doctype html" in lower:
        return "HTML page"
    text = head.decode("utf-8", "ignore")
    if b"\x00" not in head and text and sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
        return "text"
    return f"unknown header {head[:8].hex()}"
