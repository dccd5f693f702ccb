"""What every indexer command line shares: common options, logging, the report line, stop handlers.

`indexer.cli` (scan/watch), `indexer.cli_admin` (status, forget) and `indexer.run` all import this module and it
imports none of them, so the command-line modules form no circle.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from dataclasses import asdict

log = logging.getLogger("indexer")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help="data home (default: $LOUPE_HOME or ~/.loupe)")
    parser.add_argument("--db-url", help="SQLAlchemy URL of the catalog (default: SQLite in the data home; "
                                         "env LOUPE_DB_URL)")
    parser.add_argument("--qdrant-url", help="Qdrant server URL (default: embedded Qdrant Edge; env LOUPE_QDRANT_URL)")
    parser.add_argument("--qdrant-api-key", help="Qdrant API key (env LOUPE_QDRANT_API_KEY)")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


NOT_SETTINGS = {"help", "paths", "home", "json", "verbose", "folder"}  # flags that say what to do, not how


def given_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The settings flags given on the command line (values other than their defaults), as `--name`."""
    return [max(action.option_strings, key=len) for action in parser._actions
            if action.option_strings and action.dest not in NOT_SETTINGS
            and getattr(args, action.dest, action.default) != action.default]


def ignored_flags_warning(flags: list[str], pid) -> str | None:
    """Said on stderr when the owner does the work with its own settings, so a flag would be silently ignored."""
    if not flags:
        return None
    return (f"warning: {', '.join(flags)} cannot take effect: process {pid or '?'} owns the data home and works with "
            "its own settings (stop it and run again, or start it with these flags)")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "uvicorn.access", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def print_report(report, as_json: bool) -> None:
    data = report if isinstance(report, dict) else asdict(report)
    if as_json:
        print(json.dumps(data))
        return
    print(report_line(data))
    for root in data.get("skipped_roots", []):
        print(f"warning: {root} looked unmounted or empty; its files were left as they are", file=sys.stderr)


def report_line(data: dict) -> str:
    """One sentence a person reads: '3 new photos embedded, 1 moved or renamed, … in 2.1 s' (zeros left out)."""
    moved = data.get("moved", 0)
    copies = max(0, data.get("reused", 0) - moved)  # known photos at new paths that are not the far end of a move
    parts = [(data.get("embedded", 0), "new photo embedded", "new photos embedded"),
             (moved, "moved or renamed", "moved or renamed"),
             (copies, "copy of a known photo", "copies of known photos"),
             (data.get("deleted", 0), "deleted", "deleted"),
             (data.get("failed", 0), "failed (see `python -m indexer status`)",
              "failed (see `python -m indexer status`)")]
    said = [f"{n} {one if n == 1 else many}" for n, one, many in parts if n]
    unchanged = data.get("unchanged", 0)
    if unchanged:
        said.append(f"{unchanged} unchanged")
    return f"{', '.join(said) or 'nothing to index'} in {data.get('seconds', 0.0):.1f} s"


def install_stop_handlers(stop) -> None:
    """Ctrl-C / SIGTERM: finish the batch in flight, flush, exit 0 (a second Ctrl-C aborts at once)."""

    def handler(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("stopping after the current batch (Ctrl-C again to abort)")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run_guarded(job, home) -> int:
    """`job()`'s exit status, with a full disk, a missing data home or an unknown model name said in one line (the
    indexer's command and the `--watch` worker's main)."""
    from indexer.stores.diskspace import BATCH_WRITE_BYTES, DiskFullError, is_disk_full
    from indexer.stores.homedir import NoHomeError

    try:
        return job()
    except KeyError as err:
        from models.registry import UnknownModelError

        if not isinstance(err, UnknownModelError):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if not (is_disk_full(err) or isinstance(err, NoHomeError)):
            raise
        message = err if isinstance(err, (DiskFullError, NoHomeError)) else DiskFullError(
            home, BATCH_WRITE_BYTES, None, "writing the index")
        log.debug("stopped by", exc_info=err)
        print(f"error: {message}", file=sys.stderr)
        return 1
