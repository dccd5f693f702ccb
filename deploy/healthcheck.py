"""Container healthchecks for Loupe's images: standard library only, so a probe costs milliseconds and no model load.

    python /opt/loupe/healthcheck.py http://127.0.0.1:8501/_stcore/health   the UI (Streamlit's health endpoint)
    python /opt/loupe/healthcheck.py owner                                  the indexer (its local API's /health)

Why `owner` reads `$LOUPE_HOME/owner.json` instead of a fixed URL: `python -m indexer --watch` serves its local API
on 127.0.0.1 at a free port unless told one, and publishes where in owner.json
(indexer.owner.ownership). Reading it checks
what matters: the watcher holds the data home and its API answers. The image has no curl (and needs none).

Exit status 0 when healthy, 1 otherwise, with one line saying why (Docker keeps it in `docker inspect`).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT = 4.0  # seconds; below compose's healthcheck timeout so the reason is printed, not cut off


def check_url(url: str) -> str:
    """GET `url`; returns a short status line, raises on anything but HTTP 200."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 (loopback URLs from our compose)
        if response.status != 200:
            raise RuntimeError(f"{url} answered HTTP {response.status}")
        return f"{url}: HTTP 200"


def check_owner(home: Path) -> str:
    """The data home's owner is alive and its API's open /health endpoint answers."""
    info_path = home / "owner.json"
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError:
        raise RuntimeError(f"no {info_path}: the indexer has not started its API yet (or is not watching)") from None
    pid = int(info["pid"])
    try:
        os.kill(pid, 0)  # same container, same pid namespace: signal 0 only asks "does it exist?"
    except ProcessLookupError:
        raise RuntimeError(f"owner pid {pid} in {info_path} is gone") from None
    except PermissionError:
        pass  # exists, owned by someone else: alive is all we ask
    return check_url(f"http://{info['host']}:{int(info['port'])}/health")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: healthcheck.py URL | owner", file=sys.stderr)
        return 2
    try:
        if args[0] == "owner":
            home = Path(os.environ.get("LOUPE_HOME") or Path.home() / ".loupe")
            print(check_owner(home))
        else:
            print(check_url(args[0]))
    except (OSError, RuntimeError, ValueError, KeyError, urllib.error.URLError) as err:
        print(f"unhealthy: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
