"""What people wrote about a photo: keywords, descriptions and titles, embedded (XMP, IPTC) or in `.xmp` sidecars.

Embedded XMP is one `<x:xmpmeta>` packet stored as plain UTF-8 in JPEG (APP1), PNG (iTXt), TIFF, WebP and HEIF
alike, so it is found in the file's bytes without a format-specific parser. IPTC-IIM (JPEG APP13, what older
Photoshop and many newsroom tools write) is read through Pillow. Sidecars are `<photo>.xmp` (darktable, digiKam)
or `<stem>.xmp` (Lightroom's naming for raw files).

Loupe's own keywords are never a person's: `search.tag --xmp` records the subjects it added in `loupe:autoTags`
(search.xmp), so a sidecar's subjects minus those are what a person wrote, and a sidecar Loupe created alone gives
nothing. Like EXIF (indexer.scan.exif), every reader here never raises: unreadable metadata is no metadata.
"""

from __future__ import annotations

import io
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = ("keyword", "description", "title")  # what a photo's annotations hold, as the catalog stores them
MAX_CHARS = 1000  # one value's cap: a novel in a caption field must not bloat payloads and keys
# XMP namespaces, for this reader and for search.xmp's writer alike (they must agree on where Loupe lists the
# keywords it wrote: `loupe:autoTags`)
XMP_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "loupe": "http://ns.loupe.photo/xmp/1.0/",
}
_PACKET = re.compile(rb"<x:xmpmeta[\s>].*?</x:xmpmeta>", re.DOTALL)
_IPTC = {(2, 25): "keyword", (2, 120): "description", (2, 5): "title"}
Annotations = dict[str, list[str]]  # kind → values, in the order found, each once


def embedded(data: bytes) -> Annotations:
    """Keywords, descriptions and titles embedded in an image file's bytes (XMP, then IPTC)."""
    found: Annotations = {}
    match = _PACKET.search(data, 0, _metadata_end(data))
    if match is not None:
        _merge(found, _from_xmp(match.group(0), "embedded XMP"))
    _merge(found, _from_iptc(data))
    return found


def _metadata_end(data: bytes) -> int:
    """Where a JPEG's metadata segments end (its first scan, SOS), else the file's end. XMP lives in APP1 segments
    before the scan, so a JPEG's compressed image data, nearly all of its bytes, is never searched: scanning 4.6 MB
    of a 12 MP photo for the packet cost ~2.5 ms, a tenth of the worker's per-photo budget (issue 14)."""
    if not data.startswith(b"\xff\xd8"):
        return len(data)
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xDA:  # start of scan: the metadata is behind us
            return at
        if marker == 0xFF:  # fill byte
            at += 1
        elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            at += 2
        else:
            at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return len(data)  # not a well-formed segment chain: search it all


def sidecar(photo: str) -> Annotations:
    """A person's keywords, descriptions and titles in the photo's `.xmp` sidecar; {} when there is none."""
    found: Annotations = {}
    for path in _sidecar_paths(photo):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        _merge(found, _from_xmp(data, str(path)))
    return found


def is_sidecar(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == ".xmp"


def sidecar_photos(sidecar: str | os.PathLike[str]) -> list[str]:
    """The photos a sidecar describes: `IMG_1.jpg.xmp` → IMG_1.jpg; `IMG_1.xmp` → every IMG_1.* beside it."""
    path = Path(sidecar)
    inner = path.name[: -len(path.suffix)]
    if "." in inner:
        return [str(path.with_name(inner))]
    try:
        return sorted(str(p) for p in path.parent.iterdir() if p.stem == inner and not is_sidecar(p))
    except OSError:
        return []


def _sidecar_paths(photo: str) -> list[Path]:
    """The sidecars that exist. Never raises: a photo whose name is 252-255 bytes long cannot have `<name>.xmp`
    beside it (the file system says ENAMETOOLONG to the mere question), and that must not stop its indexing."""
    path = Path(photo)
    candidates = [path.with_name(path.name + ".xmp"), path.with_suffix(".xmp")]
    found = []
    for candidate in dict.fromkeys(candidates):
        try:
            if candidate != path and candidate.is_file():
                found.append(candidate)
        except (OSError, ValueError):  # a name too long for the sidecar's, a NUL byte: no sidecar
            continue
    return found


def _from_xmp(data: bytes, name: str) -> Annotations:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        log.debug("%s: unreadable XMP (%s)", name, err)
        return {}
    loupe = {li.text for auto in root.iter(qname("loupe", "autoTags")) for li in auto.iter(qname("rdf", "li"))}
    out: Annotations = {}
    for kind, prop in (("keyword", "subject"), ("description", "description"), ("title", "title")):
        values = [li.text for element in root.iter(qname("dc", prop)) for li in element.iter(qname("rdf", "li"))]
        values += [v for d in root.iter(qname("rdf", "Description")) for v in [d.get(qname("dc", prop))] if v]
        out[kind] = [v for v in values if v and (kind != "keyword" or v not in loupe)]
    return out


def _from_iptc(data: bytes) -> Annotations:
    if not data.startswith(b"\xff\xd8") or b"Photoshop 3.0" not in data[:65536]:
        return {}  # IPTC-IIM lives in JPEG APP13 (Photoshop IRB); skip the open for everything else
    try:
        from PIL import Image, IptcImagePlugin

        with Image.open(io.BytesIO(data)) as img:
            info = IptcImagePlugin.getiptcinfo(img) or {}
    except Exception as err:  # a malformed IRB is no IPTC, never a failed photo
        log.debug("unreadable IPTC: %r", err)
        return {}
    out: Annotations = {}
    for key, kind in _IPTC.items():
        raw = info.get(key)
        for value in raw if isinstance(raw, list) else [raw] if raw else []:
            out.setdefault(kind, []).append(value.decode("utf-8", "replace"))
    return out


def _merge(into: Annotations, more: Annotations) -> None:
    for kind, values in more.items():
        cleaned = [" ".join(v.split())[:MAX_CHARS] for v in values]
        into[kind] = list(dict.fromkeys(into.get(kind, []) + [v for v in cleaned if v]))
    for kind in [k for k, v in into.items() if not v]:
        del into[kind]


def combine(parts: Iterable[Annotations]) -> Annotations:
    """Several annotation sets as one (values kept once each, first occurrence order)."""
    out: Annotations = {}
    for part in parts:
        _merge(out, part)
    return out


def qname(prefix: str, name: str) -> str:
    """ElementTree's `{namespace}name` for an XMP property such as ('dc', 'subject')."""
    return f"{{{XMP_NS[prefix]}}}{name}"


def person_captions(found: Annotations, manual_tags: Iterable[str] = ()) -> list[str]:
    """Captions a person wrote for one photo, for tuning the text tower (`models.train --from-library`): each
    description and title as it is, and the keywords plus manual tags as one comma-separated line. Never Loupe's
    own zero-shot tags (the caller passes manual tags only, and sidecar keywords Loupe wrote are already left out):
    training on them would teach the text tower its own guesses."""
    captions = [*found.get("description", []), *found.get("title", [])]
    keywords = list(dict.fromkeys([*found.get("keyword", []), *manual_tags]))
    if keywords:
        captions.append(", ".join(keywords))
    return list(dict.fromkeys(c for c in captions if c.strip()))
