"""`python -m search`: find photos by typing what is in them.

    python -m search "dog on the beach"
    python -m search "beach + 0.5*sunset - people"          weighted terms; '-' pushes results down
    python -m search beach --and sunset --not people        the same with flags
    python -m search --like ~/Pictures/cat.jpg              more like this photo (in the library or not)
    python -m search "birthday cake" --folder ~/Pictures/2023 --after 2023-06-01 --type jpg --json
    python -m search egypt --mode words                     only the words people gave their photos

Photos are listed as good matches ("good": precision first, `relevant` in --json) or possible ones ("maybe"),
decided against the library's own scores and a fixed reference set (models.relevance); when nothing is a good
match the answer says so. `--min-score 0` lists the closest photos anyway. By default (`--mode hybrid`) a query
also matches the words people gave their photos (folder and file names, XMP/IPTC keywords and captions, sidecars,
manual tags) and each result says what it matched. When an indexer owns the data home
the query goes through it (no model load here); otherwise the stores are opened in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from indexer.stores.vectors import VectorFilter
from search.fusion import MODES
from search.options import add_index_options, ignored_by_owner, index_location


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", nargs="?", default="", help="what to look for; inline syntax: a + 0.5*b - c")
    p.add_argument("--and", dest="also", action="append", default=[], metavar="TEXT", help="another positive term")
    p.add_argument("--not", dest="without", action="append", default=[], metavar="TEXT", help="a negative term")
    p.add_argument("--like", action="append", default=[], type=Path, metavar="IMAGE", help="more like this image")
    p.add_argument("--unlike", action="append", default=[], type=Path, metavar="IMAGE", help="less like this image")
    f = p.add_argument_group("filters")
    f.add_argument("--folder", type=Path, help="only this folder and its subfolders")
    f.add_argument("--after", type=_date, help="taken on or after this date (YYYY-MM-DD or ISO 8601)")
    f.add_argument("--before", type=_date, help="taken before this date")
    f.add_argument("--tag", action="append", default=[], help="has this tag (repeat: all of them)")
    f.add_argument("--any-tag", action="append", default=[], help="has any of these tags")
    f.add_argument("--type", action="append", default=[], metavar="EXT", help="file type, e.g. jpg, heic")
    f.add_argument("--camera", action="append", default=[], help="camera 'Make Model'")
    p.add_argument("--limit", type=_bounded(1, MAX_LIMIT), default=20, help="results per page (default 20)")
    p.add_argument("--offset", type=_bounded(0, MAX_OFFSET), default=0, help="results to skip (paging; default 0)")
    p.add_argument("--min-score", type=float, help="keep results with calibrated score ≥ this (0..1); "
                                                   "default: relevant ones only")
    p.add_argument("--no-collapse", action="store_true", help="show near-duplicates separately")
    p.add_argument("--mode", choices=MODES, default=MODES[0],
                   help="rank by what photos show and the words people gave them (default), by what they show "
                        "only, or by the words only")
    add_index_options(p)
    return p


def parse_date(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _date(text: str) -> str:
    """An argparse type: a date `parse_date` reads (checked when the arguments are parsed: exit 2)."""
    try:
        parse_date(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


MAX_LIMIT, MAX_OFFSET = 10_000, 1_000_000  # beyond these a vector store cannot page (and no person reads)


def _bounded(low: int, high: int):
    """An argparse type: an integer in [low, high], else argparse's own one-line error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high:,}, not {value}")
        return value

    return parse


def filter_from(args: argparse.Namespace) -> VectorFilter | None:
    flt = VectorFilter(
        folder=str(args.folder.expanduser().resolve()) if args.folder else None,
        taken_from=parse_date(args.after), taken_to=parse_date(args.before), tags_all=tuple(args.tag),
        tags_any=tuple(args.any_tag), exts=tuple(e.lower().lstrip(".") for e in args.type),
        cameras=tuple(args.camera))
    return None if flt == VectorFilter() else flt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from search.backend import NoIndexError
    from search.engine import SearchEngine
    from search.query import build_query

    try:
        query = build_query(args.query, also=args.also, without=args.without, like=args.like, unlike=args.unlike)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.like + args.unlike if not p.expanduser().is_file()]
    if missing:
        print(f"error: no such image: {', '.join(missing)}", file=sys.stderr)
        return 2
    home, options = index_location(args)
    try:
        engine = SearchEngine.open(home, **options)
    except (NoIndexError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    warning = ignored_by_owner(args, engine.backend)
    if warning:
        print(warning, file=sys.stderr)
    if getattr(engine.backend, "asleep", False):  # say why this one query takes seconds, not milliseconds
        print("waking the indexer: it let its model go after a quiet spell, and loads it again (a few seconds)",
              file=sys.stderr)
    from indexer.owner.client import OwnerRequestError
    from indexer.scan.decode import DecodeError
    from search.query import QueryError

    flt = filter_from(args)
    try:
        page = engine.search(query, filter=flt, limit=args.limit, offset=args.offset,
                             min_score=args.min_score, collapse_duplicates=not args.no_collapse, mode=args.mode)
    except OwnerRequestError as err:  # the owner refused (422: an image it cannot decode): its words, one line
        print(f"error: {err.detail}", file=sys.stderr)
        return 2 if err.status == 422 else 1
    except DecodeError as err:  # a query image that is not a photo: bad input
        print(f"error: the query image is not a photo Loupe can read ({err.reason})", file=sys.stderr)
        return 2
    except QueryError as err:  # e.g. a query that cancels itself out: bad input
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as err:  # the owner went away, a store error, a file it could not read: one line
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    print(json.dumps(page.to_json(), indent=2) if args.json else
          render(page, args.min_score, filtered=flt is not None))
    return 0


TIER_LABELS = {"good": "good", "possible": "maybe", "weak": "-"}


def render(page, min_score: float | None = None, filtered: bool = False) -> str:
    from indexer.stores.fsnames import display  # names that are not UTF-8 print as \xNN, never crash the print

    if not page.results:
        if page.offset:
            return f"no results for {page.query!r} past the first {page.offset}"
        if filtered and min_score == 0:  # every photo was a candidate: the filters left none
            return f"no indexed photo passes the filters (--folder, dates, tags, type, camera) for {page.query!r}"
        hint = " (try --min-score 0 for the closest photos)" if page.no_good_match and min_score != 0 else ""
        return f"no good match for {page.query!r}{hint}"
    lines = [f"{'score':>5}  {'match':5}  {'taken':10}  path"]
    for r in page.results:
        taken = (r.taken_at or "")[:10]
        extra = f"  (+{len(r.duplicates)} similar)" if r.duplicates else ""
        why = f"  matched: {', '.join(r.matched)}" if r.matched else ""
        lines.append(f"{r.calibrated:5.2f}  {TIER_LABELS.get(r.tier, r.tier):5}  {taken:10}  {display(r.path)}{extra}"
                     f"{why}")
    if page.no_good_match:
        lines.append("no good match; these are " + ("possible matches only" if any(r.tier == "possible" for r in
                                                   page.results) else "the closest photos"))
    return "\n".join(lines)
