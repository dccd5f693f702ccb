"""One owner per data home: a lock, an owner file (pid, port) and a token file, so other processes find the owner.

Qdrant Edge and qdrant-client's local mode each admit one process at a time, yet the watcher runs for days while
people search. So the process that holds `owner.lock` (an `flock`, released by the kernel when the process dies,
even on kill -9: a stale lock can never block anyone) serves the local API, and everyone else talks to it.
`owner.json` says where; `owner.token` (mode 0600) is the shared secret only this user can read.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from indexer.stores.homedir import prepare_home

LOCK, INFO, TOKEN = "owner.lock", "owner.json", "owner.token"
# What a request without the right token is told, by the API and by a lean owner's parent alike
# (indexer.watcher.proxy answers `/status` itself while its worker sleeps): clients see one answer.
UNAUTHORIZED = f"missing or wrong token: send 'Authorization: Bearer <token>' with the token in the data home's {TOKEN}"


@dataclass(frozen=True)
class OwnerInfo:
    pid: int
    host: str
    port: int
    started: float
    purpose: str  # e.g. "indexer --watch", "ui"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class HomeOwnedError(RuntimeError):
    """Another live process owns the data home."""

    def __init__(self, home: Path, owner: OwnerInfo | None):
        self.owner = owner
        who = f"process {owner.pid} ({owner.purpose}, API {owner.url})" if owner else "another Loupe process"
        super().__init__(
            f"{home} is owned by {who}. Only one process may write a data home: stop it first, or let this command "
            "go through it (search and the UI do that on their own)."
        )


class Ownership:
    """The held lock. Create with `acquire`; `publish` once the API listens; `release` (or process exit) frees it."""

    def __init__(self, home: Path, fd: int, purpose: str):
        self.home, self._fd, self.purpose = home, fd, purpose
        self.token = secrets.token_urlsafe(32)

    @classmethod
    def acquire(cls, home: Path, purpose: str, *, create: bool = True) -> Ownership:
        """Take the lock; `create=False` (readers) raises `NoHomeError` for a home that does not exist."""
        prepare_home(home, create=create)
        fd = os.open(home / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HomeOwnedError(home, read_owner_file(home)) from None
        _remove_quietly(home / INFO)  # left by a dead owner: the lock we now hold proves it is stale
        return cls(home, fd, purpose)

    @property
    def fd(self) -> int:
        """The locked file descriptor: a worker process inherits it, so the lock outlives a parent killed with -9
        until the worker has closed the stores (`indexer.watcher.supervisor`)."""
        return self._fd

    def publish(self, host: str, port: int) -> OwnerInfo:
        """Write the token (0600) and then the owner file, each atomically; clients read the token first."""
        _write_private(self.home / TOKEN, self.token)
        info = OwnerInfo(os.getpid(), host, port, time.time(), self.purpose)
        _write_private(self.home / INFO, json.dumps(asdict(info)))
        return info

    def release(self) -> None:
        if self._fd < 0:
            return
        _remove_quietly(self.home / INFO)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> Ownership:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def find_owner(home: Path) -> tuple[OwnerInfo, str] | None:
    """The live owner and its token, or None when nobody holds the lock (a crashed owner's files are ignored)."""
    if not (home / LOCK).exists() or not is_locked(home):
        return None
    info = read_owner_file(home)
    if info is None:
        return None  # the owner is starting and has not published yet
    try:
        token = (home / TOKEN).read_text().strip()
    except OSError:
        return None
    return info, token


def is_locked(home: Path) -> bool:
    """Probe the lock without keeping it: True when a live process holds it."""
    try:
        fd = os.open(home / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def read_owner_file(home: Path) -> OwnerInfo | None:
    try:
        return OwnerInfo(**json.loads((home / INFO).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
