"""XMP sidecars with a photo's tags as `dc:subject`, the keyword field digiKam, darktable and Lightroom read.

Naming: `<file>.xmp` next to the photo (`IMG_1.jpg` → `IMG_1.jpg.xmp`), darktable's and digiKam's default; it keeps
`IMG_1.jpg` and `IMG_1.raw` apart. (Lightroom writes `IMG_1.xmp` for raw files only and reads keywords embedded in
JPEGs; digiKam can be set to read Lightroom's naming too.)

Merging: an existing sidecar keeps everything it holds (ratings, darktable history, other namespaces: parsed with
ElementTree, prefixes re-registered); only `dc:subject` changes. Loupe remembers which subjects *it* added
(`loupe:autoTags`), so re-tagging with another vocabulary replaces its own keywords and never a person's. Writes are
atomic (temp file + rename): a crash leaves the old sidecar or the new one, never half of one.

Renames and moves: a sidecar stays where it was when its photo moves. `search.tag --xmp` writes the sidecar at the
photo's new path and removes stale sidecars (photo gone) only when Loupe created them and they hold nothing else
(`written_by_loupe`); a person's sidecar that Loupe merged tags into is reported, never removed.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from indexer.scan.annotations import XMP_NS as NS
from indexer.scan.annotations import qname as _q

XPACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
XPACKET_END = '\n<?xpacket end="w"?>'


class XmpError(ValueError):
    """A sidecar that cannot be merged safely (it is left unchanged)."""


def sidecar_path(photo: str | os.PathLike[str]) -> Path:
    photo = Path(photo)
    return photo.with_name(photo.name + ".xmp")


def write_sidecar(photo: str | os.PathLike[str], tags: Iterable[str]) -> Path:
    """Create or merge `<photo>.xmp` so that its dc:subject holds `tags`; returns the sidecar's path. A sidecar
    nobody may write (no write bit at all: someone made it read-only) is left as it is (`XmpError`): the atomic
    rename would replace it even so, since renaming needs only the folder's permission."""
    path = sidecar_path(photo)
    existing = path.read_bytes() if path.exists() else None
    if existing is not None and not path.stat().st_mode & 0o222:
        raise XmpError(f"{path} is read-only; left unchanged")
    _atomic_write(path, merge_subjects(existing, tags, name=str(path)))
    return path


def written_by_loupe(path: str | os.PathLike[str]) -> bool:
    """True only for a sidecar Loupe created and nobody changed since: `x:xmptk="Loupe"`, one rdf:Description that
    holds nothing but dc:subject and loupe:autoTags, and every subject one of Loupe's own. Such a file carries
    nothing but Loupe's tags, so Loupe may remove it; any other sidecar is never touched."""
    try:
        root = _parse(Path(path).read_bytes(), str(path))
    except (OSError, XmpError):
        return False
    rdf = root.find(_q("rdf", "RDF"))
    if root.get(_q("x", "xmptk")) != "Loupe" or rdf is None or len(rdf) != 1:
        return False
    description = rdf[0]
    if description.tag != _q("rdf", "Description") or set(description.attrib) - {_q("rdf", "about")}:
        return False
    if {child.tag for child in description} - {_q("dc", "subject"), _q("loupe", "autoTags")}:
        return False
    return set(_items_text(description, "dc", "subject")) <= set(_items_text(description, "loupe", "autoTags"))


def _items(description: ET.Element, prefix: str, name: str) -> list[ET.Element]:
    prop = description.find(_q(prefix, name))
    return [] if prop is None else list(prop.iter(_q("rdf", "li")))


def _items_text(description: ET.Element, prefix: str, name: str) -> list[str]:
    return [li.text or "" for li in _items(description, prefix, name)]


def stale_sidecars(folder: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """`<photo>.xmp` files under `folder` whose photo is gone (renamed, moved, deleted): (Loupe's own, which may be
    removed; others that hold Loupe's tags merged into a person's sidecar, which are only reported)."""
    own, kept = [], []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(names):
            if not name.lower().endswith(".xmp") or name.startswith("."):
                continue
            sidecar = Path(parent) / name
            if sidecar.with_name(name[:-4]).exists() or "." not in name[:-4]:
                continue  # its photo is there, or it is `IMG_1.xmp` naming (Lightroom's), which Loupe never writes
            if written_by_loupe(sidecar):
                own.append(sidecar)
            elif _has_loupe_tags(sidecar):
                kept.append(sidecar)
    return own, kept


def _has_loupe_tags(path: Path) -> bool:
    try:
        return bool(path.read_bytes().count(NS["loupe"].encode()))
    except OSError:
        return False


def read_subjects(path: str | os.PathLike[str]) -> list[str]:
    """The dc:subject keywords of a sidecar, in order."""
    root = _parse(Path(path).read_bytes(), str(path))
    return [li.text or "" for subject in root.iter(_q("dc", "subject")) for li in subject.iter(_q("rdf", "li"))]


def merge_subjects(existing: bytes | str | None, tags: Iterable[str], name: str = "sidecar") -> str:
    """The sidecar text with Loupe's previous keywords replaced by `tags`; everything else kept."""
    root = _parse(existing, name) if existing else _new_document()
    description = _description(root, name)
    container = _container(description, "dc", "subject")
    auto = _container(description, "loupe", "autoTags")
    previous = {li.text for li in auto.findall(_q("rdf", "li"))}
    for li in container.findall(_q("rdf", "li")):
        if li.text in previous:
            container.remove(li)
    kept = {(li.text or "").casefold() for li in container.findall(_q("rdf", "li"))}
    # only what a person had not set already, whatever its case ("Family" set by hand: no "family" beside it)
    added = [tag for tag in dict.fromkeys(tags) if tag.casefold() not in kept]
    _set_items(container, [li.text or "" for li in container.findall(_q("rdf", "li"))] + added)
    _set_items(auto, added)
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    if existing and _raw(existing).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<?xpacket"):
        return XPACKET_BEGIN + body + XPACKET_END
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _raw(text: bytes | str) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


def _parse(text: bytes | str, name: str) -> ET.Element:
    """The root element, after registering the document's own prefixes so they are written back unchanged.

    (ElementTree's prefix map is process-global; XMP prefixes are conventional, so sharing them is harmless.)
    """
    data = _raw(text)
    try:
        for _event, (prefix, uri) in ET.iterparse(io.BytesIO(data), events=("start-ns",)):
            with contextlib.suppress(ValueError):  # ElementTree reserves 'ns<N>' prefixes
                ET.register_namespace(prefix, uri)
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise XmpError(f"{name} is not valid XML ({err}); left unchanged") from err
    for prefix, uri in NS.items():
        ET.register_namespace(prefix, uri)
    if root.tag not in (_q("x", "xmpmeta"), _q("rdf", "RDF")):
        raise XmpError(f"{name} is not an XMP sidecar (root element {root.tag}); left unchanged")
    return root


def _new_document() -> ET.Element:
    for prefix, uri in NS.items():
        ET.register_namespace(prefix, uri)
    root = ET.Element(_q("x", "xmpmeta"), {_q("x", "xmptk"): "Loupe"})
    ET.SubElement(ET.SubElement(root, _q("rdf", "RDF")), _q("rdf", "Description"), {_q("rdf", "about"): ""})
    return root


def _description(root: ET.Element, name: str) -> ET.Element:
    """The rdf:Description holding dc:subject, else the first one (created when there is none)."""
    rdf = root if root.tag == _q("rdf", "RDF") else root.find(_q("rdf", "RDF"))
    if rdf is None:
        raise XmpError(f"{name} has no rdf:RDF element; left unchanged")
    descriptions = rdf.findall(_q("rdf", "Description"))
    for description in descriptions:
        if description.find(_q("dc", "subject")) is not None:
            return description
    if descriptions:
        return descriptions[0]
    return ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})


def _container(description: ET.Element, prefix: str, name: str) -> ET.Element:
    """The rdf:Bag (or whatever container the file uses) inside `prefix:name`, created when missing."""
    prop = description.find(_q(prefix, name))
    if prop is None:
        prop = ET.SubElement(description, _q(prefix, name))
    for child in prop:
        if child.tag in (_q("rdf", "Bag"), _q("rdf", "Seq"), _q("rdf", "Alt")):
            return child
    return ET.SubElement(prop, _q("rdf", "Bag"))


def _set_items(container: ET.Element, items: list[str]) -> None:
    for li in container.findall(_q("rdf", "li")):
        container.remove(li)
    for item in items:
        ET.SubElement(container, _q("rdf", "li")).text = item


def _atomic_write(path: Path, text: str) -> None:
    """Write beside, then rename over: a reader sees the old sidecar or the new one, never half. The new file gets
    the old one's mode, or for a new sidecar what any program's new file gets (0666 less the umask), never
    mkstemp's private 0600 (digiKam or a file share running as another user must read it)."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # name the sidecar, not the temporary file nobody asked for
        raise OSError(err.errno, f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it where /proc tells it (setting it is process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current
