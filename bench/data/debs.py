"""Files out of any Debian package's .deb, without installing it (wallpaper packages as photo sources).

`bench.data.gcompris` already knows how to find, download and stream one package's .deb; this module does the same
for any package name, so the photo set can read e.g. `mate-backgrounds` the way it reads `gcompris-qt-data`:

- `locate_deb(package)`: `$LOUPE_DEB_<PACKAGE>` (upper case, '-' → '_'), the download cache
  (`bench.data.gcompris.cache_dir()`, ~/.cache/loupe/debs) or the repo's scratch/offline/debs/; with `download`,
  `apt-get download <package>` into the cache;
- `read_members(deb, paths)`: {path: bytes} for paths inside the package's data (no leading './').
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from bench.data.gcompris import REPO_DEB_DIR, cache_dir, deb_data_tar


class DebUnavailable(RuntimeError):
    """A package whose .deb is neither on this machine nor downloadable."""


def env_var(package: str) -> str:
    return "LOUPE_DEB_" + package.upper().replace("-", "_").replace(".", "_")


def locate_deb(package: str, *, download: bool = False) -> Path:
    value = os.environ.get(env_var(package))
    if value and Path(value).expanduser().is_file():
        return Path(value).expanduser()
    for folder in (cache_dir(), REPO_DEB_DIR):
        debs = sorted(Path(folder).glob(f"{package}_*.deb")) if Path(folder).is_dir() else []
        if debs:
            return debs[-1]
    if not download:
        raise DebUnavailable(f"{package}: no .deb in {cache_dir()} (or ${env_var(package)}); fetch it with "
                             f"`cd {cache_dir()} && apt-get download {package}`")
    if shutil.which("apt-get") is None:
        raise DebUnavailable(f"{package}: apt-get is not available to download it")
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "download", package], cwd=target, capture_output=True, text=True,
                          check=False)
    debs = sorted(target.glob(f"{package}_*.deb"))
    if done.returncode != 0 or not debs:
        raise DebUnavailable(f"apt-get download {package} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return debs[-1]


def read_members(deb: Path, paths: Iterable[str]) -> dict[str, bytes]:
    """{path: bytes} for files inside the .deb's data.tar; KeyError naming any that are not there."""
    wanted = {p.strip("/").removeprefix("./") for p in paths}
    out: dict[str, bytes] = {}
    with deb_data_tar(deb) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in wanted and member.isfile():
                out[name] = tar.extractfile(member).read()
    missing = sorted(wanted - set(out))
    if missing:
        raise KeyError(f"not in {deb.name}: {', '.join(missing[:5])}")
    return out
