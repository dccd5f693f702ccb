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


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "uvicorn.access", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def print_report(report, as_json: bool) -> None:
    data = asdict(report)
    if as_json:
        print(json.dumps(data))
        return
    print(f"{data['embedded']} embedded, {data['reused']} reused (moved/renamed/duplicate), {data['failed']} failed, "
          f"{data['deleted']} deleted, {data['unchanged']} unchanged in {data['seconds']:.1f}s")
    for root in data["skipped_roots"]:
        print(f"warning: {root} looked unmounted or empty; its files were left as they are", file=sys.stderr)


def install_stop_handlers(stop) -> None:
    """Ctrl-C / SIGTERM: finish the batch in flight, flush, exit 0 (a second Ctrl-C aborts at once)."""

    def handler(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("stopping after the current batch (Ctrl-C again to abort)")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
