"""Photos from Debian's `gcompris-qt-data` package, read straight out of the Qt resource (.rcc) files it ships.

GCompris (an educational suite, GPL/CC-BY-SA artwork) carries hundreds of real, freely licensed photos — animals,
tools, kitchenware, monuments — which makes it a rare offline source of captionable real photos. The package
stores them inside Qt binary resource files, `/usr/share/gcompris-qt/rcc/<activity>.rcc`, one per activity, so
this module does two things, both in pure Python (no Qt, no dpkg needed):

- `RccArchive`: parse a `.rcc` file and read a file by its path inside it;
- `GcomprisSource`: find the package's .rcc files — an installed `/usr/share/gcompris-qt`, a `.deb` named by
  `$LOUPE_GCOMPRIS_DEB` / `$LOUPE_TEST_GCOMPRIS_DEB`, a .deb in the download cache (or the repo's
  `scratch/offline/debs/`), or, when allowed, `apt-get download gcompris-qt-data` into the cache — and read files
  from them without installing anything (the .deb is an `ar` archive holding `data.tar.*`).

Qt rcc binary format (`QResourceRoot`, qtbase `src/corelib/io/qresource.cpp`; all integers big-endian):

    header   'qres', u32 version (1-3), u32 tree offset, u32 data offset, u32 names offset [, u32 flags (v3)]
    tree     entries of 14 bytes (v1) or 22 bytes (v2+, a u64 modification time appended); entry 0 is the root
               directory: u32 name offset, u16 flags (2 = directory), u32 child count, u32 first child index
               file:      u32 name offset, u16 flags (1 = zlib, 4 = zstd), u16 territory, u16 language,
                          u32 data offset
    names    at names offset + name offset: u16 length (UTF-16 units), u32 hash, the name in UTF-16BE
    data     at data offset + data offset: u32 size, then the payload; zlib payloads are qCompress blocks
             (u32 uncompressed size, then a zlib stream), zstd payloads are plain zstd frames
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import struct
import subprocess
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "gcompris-qt-data"
INSTALLED_RCC_DIR = Path("/usr/share/gcompris-qt/rcc")
RCC_DIR_IN_PACKAGE = "usr/share/gcompris-qt/rcc"
DEB_ENV_VARS = ("LOUPE_GCOMPRIS_DEB", "LOUPE_TEST_GCOMPRIS_DEB")  # a path to gcompris-qt-data_*.deb
CACHE_ENV_VAR = "LOUPE_DEB_CACHE"  # where downloaded .debs are kept (default ~/.cache/loupe/debs)
REPO_DEB_DIR = Path(__file__).resolve().parents[2] / "scratch" / "offline" / "debs"  # git-ignored, local runs only

FLAG_ZLIB, FLAG_DIRECTORY, FLAG_ZSTD = 1, 2, 4
MAX_DECOMPRESSED = 1 << 28  # 256 MiB: no photo is that large; a corrupt size field must not exhaust memory


class RccError(ValueError):
    """A file that is not a readable Qt binary resource."""


class GcomprisUnavailable(RuntimeError):
    """Neither an installed gcompris-qt-data, nor its .deb, nor a way to download it."""


@dataclass(frozen=True)
class _Entry:
    flags: int
    data_offset: int


class RccArchive:
    """One Qt binary resource file: `paths()` lists the files in it, `read(path)` returns one file's bytes."""

    def __init__(self, data: bytes, name: str = "<rcc>"):
        self.data, self.name = data, name
        if data[:4] != b"qres" or len(data) < 20:
            raise RccError(f"{name}: not a Qt resource file (no 'qres' magic)")
        self.version, self._tree, self._payload, self._names = struct.unpack(">IIII", data[4:20])
        if not 1 <= self.version <= 3:
            raise RccError(f"{name}: unsupported rcc format version {self.version}")
        self._entry_size = 14 if self.version == 1 else 22
        self._files = self._walk()

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> RccArchive:
        return cls(Path(path).read_bytes(), str(path))

    def paths(self) -> list[str]:
        """Every file's path inside the resource, e.g. 'gcompris/src/activities/erase/resource/koala.webp'."""
        return list(self._files)

    def __contains__(self, path: str) -> bool:
        return path.strip("/") in self._files

    def read(self, path: str) -> bytes:
        """The (decompressed) content of the file at `path`; KeyError when it is not in this resource."""
        entry = self._files.get(path.strip("/"))
        if entry is None:
            raise KeyError(f"{path} is not in {self.name}")
        start = self._payload + entry.data_offset
        (size,) = self._unpack(">I", start)
        raw = self.data[start + 4:start + 4 + size]
        if entry.flags & FLAG_ZLIB:
            return _decompress_zlib(raw[4:], self.name, path)  # skip qCompress's u32 uncompressed-size prefix
        if entry.flags & FLAG_ZSTD:
            return _decompress_zstd(raw, self.name, path)
        return raw

    def _walk(self) -> dict[str, _Entry]:
        """Depth-first over the tree from the root (entry 0); each entry is visited at most once."""
        files: dict[str, _Entry] = {}
        stack, seen = [(0, "")], set()
        while stack:
            index, prefix = stack.pop()
            if index in seen:
                raise RccError(f"{self.name}: the resource tree has a cycle at entry {index}")
            seen.add(index)
            base = self._tree + index * self._entry_size
            name_offset, flags = self._unpack(">IH", base)
            path = f"{prefix}/{self._name(name_offset)}".strip("/") if index else ""
            if flags & FLAG_DIRECTORY:
                count, first = self._unpack(">II", base + 6)
                stack.extend((first + i, path) for i in reversed(range(count)))
            else:
                _territory, _language, data_offset = self._unpack(">HHI", base + 6)
                files[path] = _Entry(flags, data_offset)
        return files

    def _name(self, offset: int) -> str:
        start = self._names + offset
        (length,) = self._unpack(">H", start)
        raw = self.data[start + 6:start + 6 + 2 * length]  # skip the u16 length and the u32 hash
        if len(raw) != 2 * length:
            raise RccError(f"{self.name}: a name runs past the end of the file")
        return raw.decode("utf-16-be")

    def _unpack(self, fmt: str, offset: int) -> tuple:
        try:
            return struct.unpack_from(fmt, self.data, offset)
        except struct.error as err:
            raise RccError(f"{self.name}: truncated or corrupt at byte {offset}") from err


def _decompress_zlib(raw: bytes, archive: str, path: str) -> bytes:
    decompressor = zlib.decompressobj()
    try:
        out = decompressor.decompress(raw, MAX_DECOMPRESSED)
    except zlib.error as err:
        raise RccError(f"{archive}: {path}: bad zlib data ({err})") from err
    if decompressor.unconsumed_tail:
        raise RccError(f"{archive}: {path}: decompresses to more than {MAX_DECOMPRESSED} bytes")
    return out


def _decompress_zstd(raw: bytes, archive: str, path: str) -> bytes:
    """zstd entries (Qt 6 `rcc` picks zstd when built with it); needs the `zstandard` package or a `zstd` binary."""
    try:
        import zstandard
    except ImportError:
        if shutil.which("zstd") is None:
            raise RccError(f"{archive}: {path} is zstd-compressed: pip install zstandard (or install zstd)") from None
        return subprocess.run(["zstd", "-dc"], input=raw, stdout=subprocess.PIPE, check=True).stdout
    return zstandard.ZstdDecompressor().decompress(raw, max_output_size=MAX_DECOMPRESSED)


# -- finding the package ---------------------------------------------------------------------------------------------

def activity_of(path: str) -> str | None:
    """'gcompris/src/activities/erase/resource/x.webp' → 'erase': each activity ships as `<activity>.rcc`."""
    parts = path.strip("/").split("/")
    if len(parts) > 3 and parts[:3] == ["gcompris", "src", "activities"]:
        return parts[3]
    return None


def cache_dir() -> Path:
    """Where `download_deb` keeps packages: $LOUPE_DEB_CACHE, else $XDG_CACHE_HOME/loupe/debs (~/.cache/…)."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "loupe" / "debs"


def find_deb(extra_dirs: Iterable[Path] = ()) -> Path | None:
    """A gcompris-qt-data .deb already on this machine: named by an env var, in the cache, or in the repo scratch."""
    for var in DEB_ENV_VARS:
        value = os.environ.get(var)
        if value and Path(value).expanduser().is_file():
            return Path(value).expanduser()
        if value:
            log.warning("$%s=%s is not a file; looking elsewhere", var, value)
    for folder in (*extra_dirs, cache_dir(), REPO_DEB_DIR):
        debs = sorted(Path(folder).glob(f"{PACKAGE}_*.deb")) if Path(folder).is_dir() else []
        if debs:
            return debs[-1]
    return None


def download_deb(target_dir: Path | None = None) -> Path:
    """`apt-get download gcompris-qt-data` into the cache (no root needed; uses this machine's apt sources)."""
    target_dir = Path(target_dir or cache_dir()).expanduser()
    if shutil.which("apt-get") is None:
        raise GcomprisUnavailable(f"apt-get is not available to download {PACKAGE}; fetch the .deb from a Debian "
                                  f"mirror and point ${DEB_ENV_VARS[0]} at it")
    target_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s (apt-get download)", PACKAGE, target_dir)
    done = subprocess.run(["apt-get", "download", PACKAGE], cwd=target_dir, capture_output=True, text=True,
                          check=False)
    debs = sorted(target_dir.glob(f"{PACKAGE}_*.deb"))
    if done.returncode != 0 or not debs:
        raise GcomprisUnavailable(f"apt-get download {PACKAGE} failed ({done.returncode}): "
                                  f"{done.stderr.strip()[-500:]}")
    return debs[-1]


def deb_data_tar(deb: Path) -> tarfile.TarFile:
    """The `data.tar.*` member of a .deb (an `ar` archive: '!<arch>\\n', then 60-byte member headers), opened for
    streaming. xz/gz/bz2/plain via tarfile; zstd (newer Debian/Ubuntu) via `zstandard` if installed."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise GcomprisUnavailable(f"{deb} is not a Debian package (no ar header)")
        while header := f.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            if name.startswith("data.tar"):
                payload = f.read(size)
                if name.endswith(".zst"):
                    payload = _decompress_zstd(payload, str(deb), name)
                return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")
            f.seek(size + (size & 1), os.SEEK_CUR)  # members are 2-byte aligned
    raise GcomprisUnavailable(f"{deb} has no data.tar member")


class GcomprisSource:
    """Files of gcompris-qt-data by their path inside its .rcc resources, from an installed copy or a .deb."""

    def __init__(self, *, rcc_dir: Path | None = None, deb: Path | None = None):
        if (rcc_dir is None) == (deb is None):
            raise ValueError("give exactly one of rcc_dir (installed package) or deb")
        self.rcc_dir, self.deb = rcc_dir, deb

    def __repr__(self) -> str:
        return f"GcomprisSource({self.rcc_dir or self.deb})"

    @classmethod
    def locate(cls, *, deb: Path | None = None, download: bool = False) -> GcomprisSource:
        """`deb` if given; else an installed package; else a .deb on this machine (`find_deb`); else, with
        `download`, `apt-get download` into the cache. Raises GcomprisUnavailable with what was tried."""
        if deb is not None:
            return cls(deb=Path(deb).expanduser())
        if INSTALLED_RCC_DIR.is_dir() and any(INSTALLED_RCC_DIR.glob("*.rcc")):
            return cls(rcc_dir=INSTALLED_RCC_DIR)
        found = find_deb()
        if found is not None:
            return cls(deb=found)
        if download:
            return cls(deb=download_deb())
        raise GcomprisUnavailable(
            f"{PACKAGE} is not available offline: not installed ({INSTALLED_RCC_DIR}), no .deb named by "
            f"${' or $'.join(DEB_ENV_VARS)}, none in {cache_dir()} or {REPO_DEB_DIR}. Fetch it with "
            f"`cd {cache_dir()} && apt-get download {PACKAGE}`")

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """{path: bytes} for paths inside the resources; KeyError naming those found in none of them.

        Each path is looked up in its activity's .rcc first; leftovers make one pass over every .rcc.
        """
        wanted = list(dict.fromkeys(p.strip("/") for p in paths))
        by_activity = {f"{activity_of(p)}.rcc" for p in wanted if activity_of(p)}
        out: dict[str, bytes] = {}
        for archive in self._archives(lambda n: n in by_activity):
            out.update({p: archive.read(p) for p in wanted if p not in out and p in archive})
        missing = [p for p in wanted if p not in out]
        if missing:
            for archive in self._archives(lambda n: n not in by_activity):
                out.update({p: archive.read(p) for p in missing if p not in out and p in archive})
        missing = [p for p in wanted if p not in out]
        if missing:
            raise KeyError(f"not in {self}: {', '.join(missing[:10])}" + (" …" if len(missing) > 10 else ""))
        return out

    def _archives(self, want: Callable[[str], bool]) -> Iterator[RccArchive]:
        """Each .rcc whose file name ('erase.rcc') passes `want`, loaded one at a time (they can be 10s of MB)."""
        if self.rcc_dir is not None:
            for path in sorted(self.rcc_dir.glob("*.rcc")):
                if want(path.name):
                    yield RccArchive.from_file(path)
            return
        with deb_data_tar(self.deb) as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and name.startswith(RCC_DIR_IN_PACKAGE + "/") and name.endswith(".rcc"):
                    base = name.rsplit("/", 1)[-1]
                    if want(base):
                        yield RccArchive(tar.extractfile(member).read(), f"{self.deb.name}:{name}")
