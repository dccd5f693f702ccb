"""`python -m indexer`: index folders, keep them live with --watch, show status, forget folders.

    python -m indexer ~/Pictures                 scan once (new, changed, moved, deleted files)
    python -m indexer ~/Pictures --watch         scan, then follow changes until Ctrl-C; serves the local API
    python -m indexer /mnt/nas --watch --poll 30 poll instead of inotify (network mounts)
    python -m indexer status [--json]            files indexed / pending / failed (with reasons) / deleted
    python -m indexer forget FOLDER              drop a folder's files from the index (e.g. a retired drive)
    python -m indexer check [--repair] [--json]  verify catalog, vectors and files agree; --repair fixes the drift
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from indexer.cli_common import add_common_options, given_flags, setup_logging
from indexer.settings import DEFAULT_IGNORES, DEFAULT_MODEL_HELP, IndexerSettings

log = logging.getLogger("indexer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m indexer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="folders to index")
    parser.add_argument("--watch", action="store_true", help="after the scan, follow changes until Ctrl-C")
    parser.add_argument("--poll", type=float, metavar="SECONDS", help="poll every SECONDS instead of native events")
    parser.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                        help="a file must be unchanged this long before it is read (default 2)")
    parser.add_argument("--model", help=f"model preset ({DEFAULT_MODEL_HELP}); changing it builds a new collection "
                                        "while the old one serves")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when available)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, help="decode threads (default: CPU count, at most 8)")
    parser.add_argument("--torch-threads", type=int, help="torch threads for CPU inference (default: half "
                                                           "the CPU count)")
    parser.add_argument("--follow-symlinks", action="store_true", help="enter symlinked folders (loops detected)")
    parser.add_argument("--include-hidden", action="store_true", help="also index dot-files and dot-folders")
    parser.add_argument("--ignore", action="append", default=[], metavar="GLOB",
                        help=f"skip names matching GLOB (repeatable; always skipped: {' '.join(DEFAULT_IGNORES)})")
    parser.add_argument("--no-thumbnails", action="store_true", help="do not write thumbnails")
    parser.add_argument("--no-visual-vectors", action="store_true",
                        help="store only the text-aligned vector: no visual one for near-duplicates and "
                             "\"more like this\" (an older index is then not upgraded: its scan embeds nothing new)")
    parser.add_argument("--max-megapixels", type=float, default=180.0, help="refuse larger images (bomb guard)")
    parser.add_argument("--tag-vocabulary", metavar="NAME|FILE",
                        help="tag new photos as they arrive: 'default' (the shipped vocabulary) or a vocabulary file")
    parser.add_argument("--runtime", choices=("auto", "torch", "onnxruntime"),
                        help="inference runtime (default torch). onnxruntime: fp32 on CPU, measured ~4x torch with "
                             "identical vectors (pip install 'loupe[onnx]'; exports once into the model cache); "
                             "auto: times every option (and precision) on this machine once per tower and keeps "
                             "the fastest whose vectors match fp32's (cos >= 0.999)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                        help="CPU inference precision (default: auto with --runtime auto, else fp32). bf16: torch "
                             "with bf16 weights (fast on CPUs with AMX / AVX512-BF16), used only where it matches "
                             "fp32 (cos >= 0.999, checked once on this machine), so it shares fp32's collection; "
                             "auto: bf16 where it is also faster. Ignored on CUDA (GPU autocast)")
    parser.add_argument("--image-idle", type=float, metavar="SECONDS",
                        help="with --watch: let the model go after this long without new photos (default 20) ...")
    parser.add_argument("--text-idle", type=float, metavar="SECONDS",
                        help="... and without queries (default 40); the worker process that held it then stops, so an "
                             "idle owner holds ~40 MB; the next photo or query starts it again (~9 s on 2 cores)")
    parser.add_argument("--port", type=int, default=0, help="local API port with --watch (default: a free one)")
    for name, help_text in (("--shard-number", "Qdrant server: shards per collection"),
                            ("--replication-factor", "Qdrant server: copies of each shard"),
                            ("--write-consistency-factor", "Qdrant server: replicas that must ack a write")):
        parser.add_argument(name, type=int, default=1, help=help_text)
    add_common_options(parser)
    return parser


def settings_from(args: argparse.Namespace) -> IndexerSettings:
    roots = tuple(p.expanduser().resolve() for p in args.paths)
    return IndexerSettings.from_env(
        home=args.home, roots=roots, model=args.model, device=args.device, db_url=args.db_url,
        qdrant_url=args.qdrant_url, qdrant_api_key=args.qdrant_api_key, shard_number=args.shard_number,
        replication_factor=args.replication_factor, write_consistency_factor=args.write_consistency_factor,
        watch=args.watch, poll=args.poll, settle=args.settle, batch_size=args.batch_size, workers=args.workers,
        torch_threads=args.torch_threads,
        follow_symlinks=args.follow_symlinks, include_hidden=args.include_hidden,
        ignore=DEFAULT_IGNORES + tuple(args.ignore), thumbnails=not args.no_thumbnails,
        max_megapixels=args.max_megapixels, tag_vocabulary=args.tag_vocabulary,
        visual_vectors=not args.no_visual_vectors,
        image_idle_s=args.image_idle, runtime=args.runtime, precision=args.precision,
        text_idle_s=args.text_idle,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("status", "forget", "check"):
        from indexer.cli_admin import main as admin_main

        return admin_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    missing = [str(p) for p in args.paths if not p.expanduser().is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    if settings.tag_vocabulary:
        from models.tagging import Vocabulary, VocabularyError

        try:
            Vocabulary.load(settings.tag_vocabulary)
        except VocabularyError as err:
            print(f"error: --tag-vocabulary: {err}", file=sys.stderr)
            return 2
    from indexer.run import run

    return run(settings, as_json=args.json, port=args.port, flags=given_flags(parser, args))
