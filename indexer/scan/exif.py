"""Photo metadata from EXIF: when it was taken, by which camera, where, and how it should be turned.

EXIF in the wild is full of garbage (zeroed dates, zero-denominator rationals, NUL-padded strings, vendor bugs), so
every field is parsed on its own and a bad field becomes None: `read_metadata` never raises. HEIC/HEIF EXIF arrives
through pillow-heif, which applies the rotation while decoding and keeps the declared one in
``info["original_orientation"]``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from PIL import ExifTags, Image

log = logging.getLogger(__name__)
T = TypeVar("T")

# Tag ids (EXIF 2.32). IFD0 / Exif sub-IFD / GPS sub-IFD.
_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_TIME, _OFFSET_TIME_ORIGINAL, _OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

_DATE_RE = re.compile(r"^\s*(\d{4})[:\-/.](\d{2})[:\-/.](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_RE = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")


@dataclass(frozen=True)
class Metadata:
    taken_at: datetime | None = None  # camera-local time; tz-aware only when the file records an offset
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None  # signed decimal degrees, north positive
    gps_lon: float | None = None  # signed decimal degrees, east positive
    orientation: int = 1  # EXIF orientation the file declared (1-8), before any rotation was applied


def read_metadata(img: Image.Image) -> Metadata:
    """Metadata of an opened or loaded image; no EXIF, or unreadable EXIF, gives `Metadata()`.

    Pillow reads EXIF from the header for JPEG, TIFF, WebP, HEIF and AVIF; for PNG its getexif() loads the pixels.
    """
    try:
        exif = img.getexif()
    except Exception as exc:  # Pillow raises many types on malformed EXIF blocks
        log.debug("unreadable EXIF: %r", exc)
        return Metadata()
    exif_ifd = _safe(lambda: exif.get_ifd(ExifTags.IFD.Exif), {})
    gps_ifd = _safe(lambda: exif.get_ifd(ExifTags.IFD.GPSInfo), {})
    lat, lon = _safe(lambda: _gps(gps_ifd), (None, None))
    return Metadata(
        taken_at=_safe(lambda: _taken_at(exif, exif_ifd), None),
        camera_make=_safe(lambda: _text(exif.get(_MAKE)), None),
        camera_model=_safe(lambda: _text(exif.get(_MODEL)), None),
        gps_lat=lat,
        gps_lon=lon,
        orientation=_safe(lambda: _orientation(img, exif), 1),
    )


def _safe(fn: Callable[[], T], default: T) -> T:
    try:
        return fn()
    except Exception as exc:  # one bad field must not cost the others
        log.debug("bad EXIF field: %r", exc)
        return default


def _taken_at(exif: Image.Exif, exif_ifd: dict[int, Any]) -> datetime | None:
    """DateTimeOriginal (shutter time), else DateTimeDigitized, else IFD0 DateTime (often the last edit)."""
    candidates = (
        (exif_ifd.get(_DATETIME_ORIGINAL), exif_ifd.get(_OFFSET_TIME_ORIGINAL)),
        (exif_ifd.get(_DATETIME_DIGITIZED), exif_ifd.get(_OFFSET_TIME_DIGITIZED)),
        (exif.get(_DATETIME), exif_ifd.get(_OFFSET_TIME)),
    )
    for value, offset in candidates:
        when = _parse_datetime(value, offset)
        if when is not None:
            return when
    return None


def _parse_datetime(value: Any, offset: Any = None) -> datetime | None:
    """'YYYY:MM:DD HH:MM:SS' (also '-' separators, trailing NULs or sub-seconds); zeroed dates are None."""
    match = _DATE_RE.match(_text(value) or "")
    if not match:
        return None
    try:
        when = datetime(*(int(g) for g in match.groups()))
    except ValueError:  # '0000:00:00 00:00:00' and other impossible dates
        return None
    tz = _parse_offset(offset)
    return when.replace(tzinfo=tz) if tz else when


def _parse_offset(value: Any) -> timezone | None:
    match = _OFFSET_RE.match(_text(value) or "")
    if not match:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return None
    return timezone(-delta if sign == "-" else delta)


def _gps(gps_ifd: dict[int, Any]) -> tuple[float | None, float | None]:
    lat = _coordinate(gps_ifd.get(_GPS_LAT), gps_ifd.get(_GPS_LAT_REF), "S", 90.0)
    lon = _coordinate(gps_ifd.get(_GPS_LON), gps_ifd.get(_GPS_LON_REF), "W", 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        # (0, 0) is what many cameras write without a fix; a photo really taken at "null island" is rarer.
        return None, None
    return lat, lon


def _coordinate(dms: Any, ref: Any, negative_ref: str, limit: float) -> float | None:
    """Degrees/minutes/seconds rationals (1 to 3 of them) plus an N/S or E/W ref → signed decimal degrees."""
    if dms is None:
        return None
    parts = [_number(x) for x in (dms if isinstance(dms, (tuple, list)) else (dms,))][:3]
    value = sum(p / 60**i for i, p in enumerate(parts))
    if not parts or not math.isfinite(value) or abs(value) > limit:
        return None  # zero denominators come out as nan
    if (_text(ref) or "").upper().startswith(negative_ref):
        value = -abs(value)
    return value


def _number(x: Any) -> float:
    """An IFDRational (nan for a zero denominator), a plain number, or an old-style (numerator, denominator) pair."""
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return float(x[0]) / float(x[1]) if float(x[1]) else math.nan
    return float(x)


def _orientation(img: Image.Image, exif: Image.Exif) -> int:
    value = img.info.get("original_orientation", exif.get(_ORIENTATION, 1))  # pillow-heif keeps it here
    value = int(value[0] if isinstance(value, (tuple, list)) else value)
    return value if 1 <= value <= 8 else 1


def _text(value: Any) -> str | None:
    """EXIF ASCII fields come as str or bytes, often NUL- or space-padded; empty means absent."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", " ").strip()
    return value or None
