"""Command-line options every `search` entry point shares: where the index is, and how to reach it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_index_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local", action="store_true", help="open the stores here even if an indexer owns the home")
    parser.add_argument("--home", help="data home (default: $LOUPE_HOME or ~/.loupe)")
    parser.add_argument("--db-url", help="catalog URL (env LOUPE_DB_URL)")
    parser.add_argument("--qdrant-url", help="Qdrant server URL (env LOUPE_QDRANT_URL)")
    parser.add_argument("--device", help="cpu, cuda (in-process only)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def index_location(args: argparse.Namespace) -> tuple[Path, dict]:
    """(data home, keyword options for `open_backend`) from the flags, with the deployment env vars as fallback."""
    from models.home import data_home

    options = {
        "prefer_owner": not args.local,
        "db_url": args.db_url or os.environ.get("LOUPE_DB_URL") or None,
        "qdrant_url": args.qdrant_url or os.environ.get("LOUPE_QDRANT_URL") or None,
        "device": args.device,
    }
    return data_home(args.home), options


OWNER_IGNORES = (("--qdrant-url", "qdrant_url"), ("--db-url", "db_url"), ("--device", "device"))


def ignored_by_owner(args: argparse.Namespace, backend, flags=OWNER_IGNORES) -> str | None:
    """A warning when flags that only an in-process search can use were given but the owner answers (it has its own
    stores and model): without it `--qdrant-url` would be silently ignored."""
    if getattr(backend, "kind", None) != "owner":
        return None
    given = [flag for flag, name in flags if getattr(args, name, None)]
    if not given:
        return None
    pid = getattr(getattr(backend, "client", None), "pid", "?")
    return (f"warning: {', '.join(given)} cannot take effect: process {pid} owns the data home and answers with its "
            "own stores and model (add --local to open the stores here instead)")
