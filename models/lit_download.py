"""Fetch a checkpoint file once into the model cache: resumable, checksummed, atomic, with a progress bar.

- Resumable: bytes go to `<name>.part`; a rerun asks for the rest with an HTTP `Range` request (a server that
  ignores it answers 200 and we start over). The released LiT files are 0.4–1.3 GB, so a dropped connection must
  not cost the whole download.
- Atomic: the `.part` is renamed onto the final name only when complete and checked, so a half file is never used.
- Checksummed: the first complete download records its sha256 in `<name>.sha256` (Google publishes no digests for
  these files, so this is trust on first use); every later read of the file through `fetch` re-hashes and compares,
  and a re-download must produce the recorded digest.
- One downloader per file: an advisory lock (`<name>.lock`) serialises processes sharing a data home.

stdlib `urllib` only: no extra dependency for a once-per-machine download.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

CHUNK = 1 << 20


class WeightsUnavailable(RuntimeError):
    """The file is not cached and cannot be downloaded now; the message says how to get it another way."""


class ChecksumMismatch(RuntimeError):
    """A cached or re-downloaded file does not have the sha256 recorded when it was first downloaded."""


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def recorded_sha256(path: Path) -> str | None:
    try:
        return sidecar(path).read_text().split()[0]
    except (FileNotFoundError, IndexError):
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.replace(staging, path)


def unavailable_message(url: str, dest: Path, reason: str, option: str = "weights") -> str:
    return (f"{reason}: {url} is not in the model cache ({dest}). Download it on a machine with internet access "
            f"and pass the local file (Python: {option}='/path/{dest.name}'; CLI: --{option} PATH; a LiT model "
            f"needs both weights=/--weights and vocab=/--vocab), or copy it to {dest}. "
            "With no network at all, use the 'offline-lite' preset.")


def verify(path: Path) -> str:
    """sha256 of a cached file, checked against its sidecar (recorded now if the sidecar is missing)."""
    digest, recorded = sha256_file(path), recorded_sha256(path)
    if recorded is None:
        _write_atomic(sidecar(path), f"{digest}  {path.name}\n")
    elif recorded != digest:
        raise ChecksumMismatch(f"{path} has sha256 {digest} but {recorded} was recorded when it was downloaded: "
                               f"the file is corrupt or was replaced. Delete it (and {sidecar(path).name}) to "
                               "download it again.")
    return digest


def fetch(url: str, dest: Path, *, download: bool = True, progress: bool | None = None, timeout: float = 60,
          option: str = "weights") -> Path:
    """`dest`, downloading `url` there first if needed. `progress=None` shows a bar only on a terminal; `option`
    names the argument that takes a local copy instead (for the error message)."""
    if dest.is_file():
        verify(dest)
        return dest
    if not download:
        raise WeightsUnavailable(unavailable_message(url, dest, "downloading is turned off (download=False)", option))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest):
        if dest.is_file():  # another process finished it while we waited for the lock
            verify(dest)
            return dest
        part = dest.with_name(dest.name + ".part")
        _download(url, part, dest, progress, timeout, option)
        digest, recorded = sha256_file(part), recorded_sha256(dest)
        if recorded is not None and recorded != digest:
            part.unlink()
            raise ChecksumMismatch(f"downloaded {url} has sha256 {digest}, but {recorded} was recorded for "
                                   f"{dest.name} before: the server's file changed or the transfer was corrupted. "
                                   f"Delete {sidecar(dest)} to accept the new file.")
        _write_atomic(sidecar(dest), f"{digest}  {dest.name}\n")
        os.replace(part, dest)
    return dest


def _download(url: str, part: Path, dest: Path, progress: bool | None, timeout: float, option: str,
              retry: bool = True) -> None:
    """Append the missing bytes of `url` to `part` (all of them if the server ignores Range)."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-", "User-Agent": "loupe"} if offset else {"User-Agent": "loupe"}
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as err:
        if err.code == 416 and offset and err.headers.get("Content-Range") == f"bytes */{offset}":
            return None  # the .part is already whole (a crash came between the last byte and the rename)
        if err.code == 416 and offset and retry:  # our .part is not a prefix of what the server has: start over
            part.unlink()
            return _download(url, part, dest, progress, timeout, option, retry=False)
        raise WeightsUnavailable(unavailable_message(url, dest, f"download failed (HTTP {err.code})", option)) from err
    except (URLError, OSError) as err:
        raise WeightsUnavailable(unavailable_message(url, dest, f"could not download ({err})", option)) from err
    with response:
        if offset and not _resumes_at(response, offset):
            offset = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name,
                   disable=None if progress is None else not progress)
        try:
            with open(part, "ab" if offset else "wb") as out, bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as err:
            raise WeightsUnavailable(f"download of {url} was interrupted ({err}); run again to resume from "
                                     f"{part.stat().st_size} bytes") from err
    if total is not None and part.stat().st_size != total:
        raise WeightsUnavailable(f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                                 "run again to resume")


def _resumes_at(response, offset: int) -> bool:
    """True when the server honoured our Range request from exactly `offset` (206 + matching Content-Range)."""
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-999/1000"
    return response.status == 206 and content_range.startswith(f"bytes {offset}-")


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent first downloads are the user's problem there
        yield
        return
    with open(dest.with_name(dest.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def local_sha256(path: Path, memo_dir: Path) -> str:
    """sha256 of a user-supplied file, memoised by (path, size, mtime) so an unchanged file is hashed once."""
    stat = path.stat()
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()
    memo = memo_dir / f"{key}.json"
    identity = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        saved = json.loads(memo.read_text())
        if {k: saved[k] for k in identity} == identity:
            return saved["sha256"]
    digest = sha256_file(path)
    with contextlib.suppress(OSError):
        _write_atomic(memo, json.dumps(identity | {"sha256": digest}))
    return digest
