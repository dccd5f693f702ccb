"""`python -m models.train` (`loupe-train`): tune the text tower on your captions; list, promote, roll back versions.

This module is the composition root: it picks where image vectors come from (precomputed `.npz`, the Loupe index
found through the `loupe.image_vectors` entry point, or the locked tower with a cache) and hands them to
`models.train.train`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from models.home import data_home
from models.train.captions import CaptionsError
from models.train.cli import build_parser, config_from_args, print_result, print_versions
from models.train.config import TrainConfig

if TYPE_CHECKING:
    from models.bundle import ModelBundle
    from models.train.image_vectors import ImageVectorSource

# torch, numpy and the vector sources are imported where they are used: `--help`, `--list` and flag errors stay
# fast (the target is ≤ 1 s for `--help`).

log = logging.getLogger("models.train")
USER_ERRORS = (CaptionsError, ValueError, KeyError, LookupError, FileExistsError, FileNotFoundError)


IMAGE_VECTOR_ENTRY_POINTS = "loupe.image_vectors"


def index_vector_source(home: Path, image_tower_id: str) -> ImageVectorSource | None:
    """Image vectors that an installed application already holds for this tower (the Loupe index), or None.

    `models` imports nothing of the app: the indexer advertises `open_source(home=..., image_tower_id=...)` under
    the entry-point group `loupe.image_vectors` (pyproject.toml), and this composition root asks for it by name.
    Any failure falls back to embedding with the cached locked tower.
    """
    from importlib.metadata import entry_points

    for entry in entry_points(group=IMAGE_VECTOR_ENTRY_POINTS):
        try:
            source = entry.load()(home=home, image_tower_id=image_tower_id)
        except Exception as err:  # noqa: BLE001  (an unavailable index, e.g. locked by its owner, is not fatal)
            log.warning("not reading image vectors from %s (%s); embedding with the locked tower instead",
                        entry.name, err)
            continue
        if source is not None:
            return source
    return None


def image_vector_source(config: TrainConfig, bundle: ModelBundle, home: Path, progress: bool) -> ImageVectorSource:
    """`--image-vectors FILE` alone, else the index (if it has this tower's vectors) then the cached locked tower."""
    from models.train.image_vectors import ChainedSource, NpzVectorSource
    from models.train.vector_cache import CachedTowerSource

    if config.image_vectors is not None:
        return NpzVectorSource(config.image_vectors, dim=bundle.dim)
    cached = CachedTowerSource(bundle, home, progress=progress)
    index = index_vector_source(home, bundle.image_tower_id)
    return ChainedSource([index, cached]) if index is not None else cached


def run_training(args: argparse.Namespace, home: Path) -> int:
    import models
    from models.train.run import seed_everything, train

    bundle = None
    if args.from_library is not None:
        bundle = _library_captions(args, home)
    config, resume = _resolve_config(args, home)
    seed_everything(config.seed)
    if bundle is None:
        log.info("loading %s …", config.model)
        bundle = models.create(config.model, device=config.device)
    progress = not args.quiet
    source = image_vector_source(config, bundle, home, progress)
    result = train(config, image_vectors=source, bundle=bundle, home=home, resume=resume, progress=progress)
    print_result(result, as_json=args.json)
    return 0


def _library_captions(args: argparse.Namespace, home: Path) -> ModelBundle:
    """`--from-library`: the library's own captions, split by image, become `args.captions` and `args.val`.
    Returns the loaded base model (its image tower names the index collection the captions come from)."""
    import models
    from models.train.config import DEFAULT_MODEL
    from models.train.library import library_files

    if args.captions is not None or args.resume is not None:
        raise ValueError("--from-library replaces the captions file (and cannot resume a run): give one or the other")
    model = args.model or DEFAULT_MODEL
    log.info("loading %s …", model)
    bundle = models.create(model, device=args.device)
    source = index_vector_source(home, bundle.image_tower_id)
    if source is None or not hasattr(source, "captions"):
        raise LookupError(f"no index of {model}'s image tower in {home}: index your photos first "
                          "(python -m indexer FOLDER)")
    folder = str(Path(args.from_library).expanduser().resolve()) if args.from_library else None
    pairs = source.captions(folder)
    train_file, held_file = library_files(home, pairs, args.val_fraction if args.val is None else 0.0, args.seed,
                                          args.name)
    log.info("%d captions from the library: %s (held out: %s)", len(pairs), train_file, held_file or "none")
    args.captions, args.val = train_file, args.val or held_file
    if args.val is None:
        args.val_fraction = 0.0  # nothing to hold out (a single photo): say so rather than split again
    return bundle


RESUME_MAY_CHANGE = {"device", "max_epochs_this_run"}  # what a resumed run takes from the command line


def _resolve_config(args: argparse.Namespace, home: Path) -> tuple[TrainConfig, bool]:
    """A new run's config from the flags; a resumed run's from its run.json (only device and epoch budget change)."""
    from dataclasses import replace

    from models.train.checkpoint import RunDir, latest_resumable

    if args.resume is None:
        if args.captions is None:
            raise CaptionsError("give a captions file (CSV, TSV or JSONL); see --help")
        return config_from_args(args), False
    name = args.resume or args.name or latest_resumable(home)
    if not name:
        raise FileNotFoundError(f"no unfinished run to resume in {home}")
    stored = TrainConfig.from_json(RunDir(home, name).read()["config"])
    if args.captions is not None and Path(args.captions).resolve() != stored.captions:
        log.warning("ignoring %s: run %s continues on %s", args.captions, name, stored.captions)
    fresh = config_from_args(argparse.Namespace(**{**vars(args), "captions": stored.captions or Path(".")}))
    defaults = TrainConfig(captions=stored.captions)
    changed = [f.name for f in fields(TrainConfig) if f.name not in RESUME_MAY_CHANGE | {"captions", "name"}
               and getattr(fresh, f.name) != getattr(defaults, f.name)
               and getattr(fresh, f.name) != getattr(stored, f.name)]
    if changed:  # a resumed run keeps its settings: say so rather than ignore the flags silently
        log.warning("run %s continues with its own settings; ignored: %s", name,
                    ", ".join(f"--{n.replace('_', '-')}" for n in changed))
    return replace(stored, device=args.device or stored.device, max_epochs_this_run=args.max_epochs_this_run), True


def run_versions(args: argparse.Namespace, home: Path) -> int:
    from models import versions

    if args.list:
        print_versions(versions.list_versions(home), as_json=args.json)
    elif args.promote:
        version = versions.promote(home, args.promote, force=args.force)
        for problem in version.promote_problems():
            print(f"WARNING: {args.promote} promoted although {problem}", file=sys.stderr)
        _say(args, {"promoted": version.name, "image_tower_id": version.image_tower_id},
             f"active text tower for {version.image_tower_id}: {version.name}")
    else:
        tower = _tower_for_rollback(home, args.model)
        now = versions.rollback(home, tower)
        _say(args, {"rolled_back": tower, "active": now},
             f"active text tower for {tower}: {now or '(base model)'}")
    return 0


def _tower_for_rollback(home: Path, model: str | None) -> str:
    """The image tower whose history to pop: the only promoted one, or the one `--model` builds."""
    from models import versions

    promoted = versions.promoted_tower_ids(home)
    if model is None:
        if len(promoted) == 1:
            return promoted[0]
        if not promoted:
            raise LookupError("nothing to roll back: no text tower has been promoted")
        raise LookupError(f"several image towers have promoted text towers ({', '.join(promoted)}); "
                          "say which with --model BASE")
    known = {v.image_tower_id for v in versions.list_versions(home) if model in (v.base, v.name)}
    if len(known) == 1:
        return known.pop()
    import models

    return models.create(model, device="cpu").image_tower_id


def _say(args: argparse.Namespace, data: dict, text: str) -> None:
    print(json.dumps(data) if args.json else text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    home = data_home(args.home)
    try:
        if args.list or args.promote or args.rollback:
            return run_versions(args, home)
        return run_training(args, home)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, AssertionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue the run with --resume (the last finished epoch was checkpointed)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
