"""Does tuning on a user's own captions help search on photos it never saw? Held-out T→I recall per mode and size.

    python bench/tuning.py [--photoset DIR] [--modes head last:2 lora whole] [--sizes 100 300] [--epochs 10]

The in-house set of `bench.data.photoset` stands in for a user's captions: `inhouse_train.tsv` (dev photos) is what
tuning sees — `--sizes` takes the first N rows of a seeded shuffle — and `heldout.tsv` (photos and captions nothing
here was fitted on) is where the gain is measured. Every run goes through `models.train.train` with the CLI's
defaults for its mode (its own 10% validation split picks the best epoch by T→I recall), on image vectors embedded
once with the locked tower and never again: the bench asserts that the stored vectors are byte-identical after all
runs and that each run's image tower fingerprint is unchanged (LiT: zero photos re-embedded).

Prints a markdown table: held-out T→I R@1/5/10 of the base model, and of each (mode, size) with its change in R@1.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from bench.offline_eval import encode_images, encode_texts, t2i_recall  # noqa: E402


def read_pairs(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{k}\t{c}\n" for k, c in pairs), encoding="utf-8")
    return path


def heldout_recall(bundle, captions: list[str], images: np.ndarray) -> dict[int, float]:
    bundle.model.eval()
    return t2i_recall(encode_texts(bundle, captions) @ images.T, captions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photoset", type=Path)
    parser.add_argument("--model", default="offline-lite")
    parser.add_argument("--modes", nargs="+", default=["head", "last:2", "lora", "whole"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 300])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from bench.data import photoset
    from models.train import NpzVectorSource, TrainConfig, train

    folder = args.photoset or photoset.default_dir()
    if not (folder / "inhouse_train.tsv").is_file():
        photoset.materialize(folder)
    inhouse = read_pairs(folder / "inhouse_train.tsv")
    heldout = read_pairs(folder / "heldout.tsv")
    torch.manual_seed(args.seed)
    base = models.create(args.model, device="cpu")
    base.model.eval()
    keys = list(dict.fromkeys([k for k, _ in inhouse] + [k for k, _ in heldout]))
    stored = encode_images(base, [folder / k for k in keys])  # the "index": embedded once, never again
    snapshot = stored.copy()
    vectors = dict(zip(keys, stored, strict=True))
    heldout_images = np.stack([vectors[k] for k, _ in heldout])
    heldout_captions = [c for _, c in heldout]
    before = heldout_recall(base, heldout_captions, heldout_images)
    tower_id = base.image_tower_id
    rows = [("base (no tuning)", "-", 0, before, None, None)]
    shuffled = inhouse[:]
    random.Random(args.seed).shuffle(shuffled)
    with tempfile.TemporaryDirectory(prefix="loupe-tuning-bench-") as tmp:
        tmp = Path(tmp)
        npz = tmp / "vectors.npz"
        np.savez(npz, keys=np.array(keys), vectors=stored)
        for size in args.sizes:
            pairs = write_pairs(tmp / f"inhouse{size}.tsv", shuffled[:size])
            for mode in args.modes:
                name = f"{mode.replace(':', '')}-{size}"
                config = TrainConfig(captions=pairs, image_vectors=npz, model=args.model, name=name, train=mode,
                                     epochs=args.epochs, seed=args.seed, device="cpu")
                bundle = models.create(args.model, device="cpu")
                result = train(config, image_vectors=NpzVectorSource(npz, dim=bundle.dim), bundle=bundle,
                               home=tmp / "home", progress=False)
                assert result.locked_check["identical"] and result.image_tower_id == tower_id
                after = heldout_recall(bundle, heldout_captions, heldout_images)
                val = (result.metrics_before or {}).get("t2i_r1"), (result.metrics_after or {}).get("t2i_r1")
                rows.append((mode, str(size), result.best_epoch, after, val, result.train_size["pairs"]))
                print(f"{name}: held-out T→I R@1 {before[1]:.1f} → {after[1]:.1f} (best epoch {result.best_epoch})",
                      file=sys.stderr, flush=True)
    assert np.array_equal(stored, snapshot), "stored image vectors changed"
    print(f"Tuning on the in-house captions (dev photos), measured on the held-out split ({len(heldout)} captions, "
          f"{folder}); image tower {tower_id}, {len(keys)} photos embedded once, 0 re-embedded.\n")
    print("| mode | pairs (train/val split 90/10) | best epoch | own val T→I R@1 before → after | held-out T→I "
          "R@1 / R@5 / R@10 | Δ R@1 |")
    print("|---|---|---|---|---|---|")
    for mode, size, epoch, recall, val, _ in rows:
        val_text = "-" if val is None or val[0] is None else f"{100 * val[0]:.1f} → {100 * val[1]:.1f}"
        delta = recall[1] - before[1]
        print(f"| {mode} | {size} | {epoch} | {val_text} | {recall[1]:.1f} / {recall[5]:.1f} / {recall[10]:.1f} | "
              f"{delta:+.1f} |")


if __name__ == "__main__":
    main()
