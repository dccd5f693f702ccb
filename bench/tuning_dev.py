"""Which tuning defaults to ship, chosen without looking at the held-out photos: k-fold on the in-house captions.

    python bench/tuning_dev.py [--photoset DIR] [--mode head] [--folds 4] [--sizes 100 0]
                               [--candidates "lr=1e-3" "lr=3e-3,batch_size=16" ...]

`bench/tuning.py` reports the held-out gain of each mode's defaults; if those defaults were picked by that number,
the number would no longer say what tuning does on photos nobody looked at. So the defaults (`models/train/config.py`)
are chosen here, on `inhouse_train.tsv` alone (dev photos): its photos are split by image into `--folds` seeded
folds; for each fold, a run trains through `models.train.train` on pairs of the other folds (`--sizes`: the first N
of a seeded shuffle; 0 = all of them, ~3/4 of the 369 pairs) with the candidate's settings — the CLI's own 10%
validation split is held out as usual — and T→I R@1/5/10 is measured on the fold's captions against the fold's
photos only (a caption whose text another fold photo also has is not counted against). Scores are averaged over the
folds; the table prints each candidate's mean gain over the untuned model and over the first candidate.

A candidate is `key=value[,key=value…]` with `TrainConfig` fields (lr, epochs, patience, batch_size, weight_decay,
val_fraction, keep, warmup_fraction…); an empty string is this checkout's defaults. Image vectors are embedded once
with the locked tower.

What it chose (seed 0, 4 folds): `keep` — with ~10% of 100-300 pairs held out (8-20 photos), letting that split pick
the best of 10 epochs picked epoch 1-3 in half the folds and lost to the last epoch of the cosine schedule
(`--candidates keep=best ""`: dev R@1 +0.5 at 100 pairs, +3.4 at ~277; R@5 +2.6 at both), so `--keep auto` keeps
the last epoch below `MIN_SELECT_VAL_IMAGES` validation photos. Other candidates (lr 3e-4 / 3e-3, 30 epochs, batch
16 / 32, no validation split) were within noise or worse, except batch 16 (R@5 +1.8, R@1 ≤ +0.4 over `keep`
alone: not changed) and `val_fraction=0,batch_size=16` (R@1 +1.4 / +5.7 over the old default, but a run without
validation cannot be judged or promoted, so it is no default). On top of `keep auto`, 20 epochs (± batch 16), lr 2e-3
and weight decay 0.1 were mixed or flat (best: 20 epochs + batch 16, dev R@1 −0.7 at 100 pairs, +2.9 at ~277), so
nothing else changed.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from bench.offline_eval import encode_images, encode_texts  # noqa: E402
from bench.tuning import photo_folds, read_pairs, write_pairs  # noqa: E402

DEFAULT_CANDIDATES = ["keep=best", "", "lr=3e-3", "lr=3e-4", "batch_size=16", "batch_size=32", "epochs=30,patience=5",
                      "val_fraction=0"]


def parse_candidate(text: str) -> dict:
    from models.train import TrainConfig

    types = {f.name: f.type for f in fields(TrainConfig)}
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in types:
            raise SystemExit(f"unknown TrainConfig field {key!r}")
        kind = str(types[key])
        out[key] = value if "str" in kind else int(value) if "int" in kind and "float" not in kind else float(value)
    return out


def fold_recall(bundle, pairs: list[tuple[str, str]], vectors: dict[str, np.ndarray]) -> dict[int, float]:
    """T→I R@K of the fold's captions among the fold's photos; photos sharing the caption's text don't count."""
    keys = list(dict.fromkeys(k for k, _ in pairs))
    gallery = np.stack([vectors[k] for k in keys])
    bundle.model.eval()
    captions = [c for _, c in pairs]
    scores = encode_texts(bundle, captions) @ gallery.T  # (N, I)
    own = np.array([keys.index(k) for k, _ in pairs])
    texts_of = {k: {c for kk, c in pairs if kk == k} for k in keys}
    ranks = []
    for i, (_, caption) in enumerate(pairs):
        beats = scores[i] > scores[i, own[i]]
        same = np.array([caption in texts_of[k] for k in keys])
        ranks.append(int((beats & ~same).sum()))
    ranks = np.array(ranks)
    return {k: float((ranks < k).mean() * 100) for k in (1, 5, 10)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photoset", type=Path)
    parser.add_argument("--model", default="offline-lite")
    parser.add_argument("--mode", default="head")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 0])
    parser.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from bench.data import photoset
    from models.train import NpzVectorSource, TrainConfig, train

    folder = args.photoset or photoset.default_dir()
    if not (folder / "inhouse_train.tsv").is_file():
        photoset.materialize(folder)
    inhouse = read_pairs(folder / "inhouse_train.tsv")  # heldout.tsv is never read here
    torch.manual_seed(args.seed)
    base = models.create(args.model, device="cpu")
    base.model.eval()
    keys = list(dict.fromkeys(k for k, _ in inhouse))
    stored = encode_images(base, [folder / k for k in keys])
    vectors = dict(zip(keys, stored, strict=True))
    fold_of = photo_folds(keys, args.folds, args.seed)
    candidates = [(c or "(defaults)", parse_candidate(c)) for c in args.candidates]
    results: dict[tuple[str, int], list[dict]] = {}
    base_scores: dict[int, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="loupe-tuning-dev-") as tmp:
        tmp = Path(tmp)
        npz = tmp / "vectors.npz"
        np.savez(npz, keys=np.array(keys), vectors=stored)
        for fold in range(args.folds):
            test = [p for p in inhouse if fold_of[p[0]] == fold]
            pool = [p for p in inhouse if fold_of[p[0]] != fold]
            random.Random(args.seed + fold).shuffle(pool)
            base_fold = fold_recall(base, test, vectors)
            for size in args.sizes:
                base_scores.setdefault(size, []).append(base_fold)
                train_pairs = pool[:size] if size else pool
                captions = write_pairs(tmp / f"f{fold}-{size}.tsv", train_pairs)
                for label, overrides in candidates:
                    start = time.perf_counter()
                    config = TrainConfig(captions=captions, image_vectors=npz, model=args.model, train=args.mode,
                                         seed=args.seed, device="cpu", name=f"r{len(results)}-{fold}-{size}-"
                                         f"{abs(hash(label)) % 10**8}", **overrides)
                    bundle = copy.deepcopy(base)
                    result = train(config, image_vectors=NpzVectorSource(npz, dim=bundle.dim), bundle=bundle,
                                   home=tmp / "home", progress=False)
                    recall = fold_recall(bundle, test, vectors) | {"epoch": result.best_epoch}
                    results.setdefault((label, size), []).append(recall)
                    print(f"fold {fold} size {size or len(pool)} {label}: R@1 {base_fold[1]:.1f} → {recall[1]:.1f} "
                          f"(best epoch {result.best_epoch}, {time.perf_counter() - start:.0f}s)", file=sys.stderr,
                          flush=True)
    n_captions = len(inhouse)
    print(f"\nDev selection: {args.mode}, {args.folds}-fold by image over inhouse_train.tsv ({n_captions} pairs, "
          f"{len(keys)} photos; seed {args.seed}); T→I on each fold's own photos, mean over folds. "
          "heldout.tsv unused.\n")
    first = candidates[0][0]
    print(f"| candidate | train pairs | dev T→I R@1 / R@5 / R@10 | Δ R@1 vs untuned | Δ R@1 vs {first} | Δ R@5 vs "
          f"{first} | best epochs |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        b = {k: np.mean([r[k] for r in base_scores[size]]) for k in (1, 5, 10)}
        print(f"| untuned | - | {b[1]:.1f} / {b[5]:.1f} / {b[10]:.1f} | | | | |")
        ref = {k: np.mean([r[k] for r in results[(candidates[0][0], size)]]) for k in (1, 5, 10)}
        for label, _ in candidates:
            rows = results[(label, size)]
            m = {k: np.mean([r[k] for r in rows]) for k in (1, 5, 10)}
            epochs = ",".join(str(r["epoch"]) for r in rows)
            print(f"| {label} | {size or 'all (~' + str(round(n_captions * (1 - 1 / args.folds))) + ')'} | "
                  f"{m[1]:.1f} / {m[5]:.1f} / {m[10]:.1f} | {m[1] - b[1]:+.1f} | {m[1] - ref[1]:+.1f} | "
                  f"{m[5] - ref[5]:+.1f} | {epochs} |")


if __name__ == "__main__":
    main()
