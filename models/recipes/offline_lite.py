"""Reproduce offline-lite's shipped text head, `models/weights/offline_lite2_text.safetensors` (image spaces 2 and 3:
it is trained on concept targets, not on photos, so the image preprocessing does not enter it).

    python -m models.recipes.offline_lite [--out FILE] [--workdir DIR] [--epochs 1] [--no-tune]

Offline and deterministic (CPU, seed 0, one CPU thread: reruns give bit-identical tensors). One thread because a
float sum's order depends on how many threads split it: the same recipe on 2 threads gave tensors one float16 step
apart in places, so the shipped file was reproducible only on a machine with as many cores as the one that made it.
The concept hierarchy it reads,
`models/data/offline_lite_concepts.json`, is built from WordNet by `python -m models.recipes.concepts` (only that
step needs Debian's `wordnet-base`); this recipe needs only the PyPI packages. The weights are produced by Loupe's own
tuning CLI, `python -m models.train`, so what ships is exactly what a user's tuning run would produce from the same
data:

1. **Init** (zero-shot, no training): row k of the concept layer is the unit MiniLM embedding of concept k's text
   (class descriptions "names: gloss", and the WordNet hypernyms/hyponyms in the same format), bias 0, temperature
   0.03, `direct` 0. A query's class distribution is then softmax(cos(query, concept texts) / T) spread over each
   concept's member classes, compared with a photo's class distribution by the Bhattacharyya coefficient (the
   "Hellinger with WordNet" recipe of shared/docs/environment.md, extended to the hierarchy). Saved as a Loupe
   model (`models.save(..., parts="text")` in `<workdir>/init`): the base the CLI tunes.
2. **Data**: `<workdir>/concepts.tsv` pairs short phrasings of every concept (class synonyms × templates, one
   phrasing per hypernym/hyponym lemma) with the key `concept:<wnid>`; `<workdir>/concept_targets.npz` maps each
   key to the image-space vector a photo of exactly that concept would have ([a·sqrt(members' uniform
   distribution), b·unit(its classes' feature prototypes)]). `<workdir>/val.tsv` holds one held-out phrasing per
   class (templates never used in training) for the CLI's validation and best-epoch choice (the CLI warns that the
   validation "images" are training targets too: expected, what is held out is the phrasing).
3. **Tune**: `python -m models.train concepts.tsv --image-vectors concept_targets.npz --val val.tsv --model
   <workdir>/init --train head --seed 0 --json` (a subprocess: the CLI's own code path and defaults). The best
   epoch by validation T→I recall is what the CLI saves, the init included.
4. **Ship**: only the head's trained tensors (`HEAD_KEYS`) as float16 (~3.5 MB); MiniLM itself comes from its PyPI
   package unchanged, and the head's buffers (hierarchy, class prototypes) are rebuilt from the shipped JSON and the
   locked classifier at load time.

The preset's image→text hub correction (`models.offline_lite.HUB_STRENGTH`, a constant chosen on dev photos by
bench/hub_fit.py) is applied after the head at query time; the recipe trains with it off (`hub_strength=0`), so
the shipped tensors do not depend on it.

Measured: see README.md (offline-lite) and `python bench/offline_eval.py` (dev and held-out side by side).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.recipes.imagenet_text import TEMPLATES, synonyms, validation_texts

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "weights" / "offline_lite2_text.safetensors"
INIT_TEMPERATURE = 0.03
SEED = 0
EPOCHS = 1  # MiniLM re-reads every training phrase each epoch (head mode): ~6k phrases, minutes on 2 cores
VERSION_NAME = "offline-lite2-text"
THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # for the CLI run: see the module docstring
HEAD = "text_tower.head.0."
HEAD_KEYS = tuple(HEAD + k for k in ("concept.weight", "concept.bias", "log_temperature", "direct.weight"))
CLASS_SYNONYMS, CLASS_TEMPLATES = 2, TEMPLATES[:2]  # per class: 2 names × 2 phrasings


@torch.inference_mode()
def pooled_features(model, texts: list[str], batch: int = 256) -> torch.Tensor:
    """The text tower's mean-pooled MiniLM features (the head's input), unit-normalised like the head's L2Norm.

    Also used by bench/offline_eval.py for the training-free baselines.
    """
    tower = model.text_tower
    head, tower.head = tower.head, None
    try:
        out = []
        for i in range(0, len(texts), batch):
            tokens = tower.tokenizer(texts[i:i + batch])
            out.append(tower(tokens["input_ids"], tokens["attention_mask"]).float())
    finally:
        tower.head = head
    return F.normalize(torch.cat(out), dim=-1)


def concept_init(model, concepts: list[dict]) -> dict[str, torch.Tensor]:
    """Head tensors whose concept distribution is softmax(cos(query, concept texts) / T); `direct` 0."""
    weight = pooled_features(model, [c["text"] for c in concepts])
    return {HEAD_KEYS[0]: weight, HEAD_KEYS[1]: torch.zeros(weight.shape[0]),
            HEAD_KEYS[2]: torch.tensor(math.log(INIT_TEMPERATURE)),
            HEAD_KEYS[3]: torch.zeros(model.text_tower.head[0].direct.weight.shape)}


def build_init(directory: Path | None = None) -> dict[str, torch.Tensor]:
    """The concept-initialised head; with `directory`, also saved there as a Loupe model (the tuning base).

    Built on `offline-lite` with `tuned=False`, so the base never depends on the file this recipe writes.
    """
    import models
    from models.building import seeded
    from models.offline_lite import read_concepts
    from models.saved import load_partial_state

    with seeded(SEED):  # hub_strength 0: the head is trained on the text vectors before the hub correction
        bundle = models.create("offline-lite", tuned=False, hub_strength=0.0, device="cpu")
    init = concept_init(bundle.model.eval(), read_concepts()["concepts"])
    if directory is not None:
        load_partial_state(bundle.model, init)
        models.save(bundle, directory, parts="text",
                    metadata={"recipe": "models.recipes.offline_lite", "stage": "concept-init"})
        log.info("saved the concept-initialised base to %s", directory)
    return init


def concept_key(wnid: str) -> str:
    return f"concept:{wnid}"


def concept_phrases(concepts: list[dict]) -> list[tuple[str, str]]:
    """(key, phrase) training rows: class synonyms in the training templates, one 'a <lemma>' per other lemma."""
    rows = []
    for concept in concepts:
        key = concept_key(concept["wnid"])
        names = synonyms(concept["text"])
        if concept["kind"] == "class":
            rows += [(key, t.format(n)) for n in names[:CLASS_SYNONYMS] for t in CLASS_TEMPLATES]
        else:
            rows += [(key, f"a {n}") for n in names[:2]]
    return rows


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A TSV the CLI reads (header `key<TAB>caption`); csv quoting keeps glosses with quotes intact."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["key", "caption"])
        writer.writerows(rows)
    return path


def concept_targets(concepts: list[dict]) -> np.ndarray:
    """(K, D) image-space vectors of a photo that is exactly concept k: what zero-shot produces for a one-hot q."""
    import models
    from models.building import seeded
    from models.offline_lite import CLASS_WEIGHT, mixing_matrix

    with seeded(SEED):
        bundle = models.create("offline-lite", tuned=False, device="cpu")
    head = bundle.model.text_tower.head[0]
    mix = mixing_matrix(concepts)
    features = F.normalize(mix @ head.proto, dim=-1)
    vectors = torch.cat([CLASS_WEIGHT * mix.sqrt(), math.sqrt(1 - CLASS_WEIGHT ** 2) * features], dim=-1)
    return F.normalize(vectors, dim=-1).numpy().astype(np.float32)


def write_training_data(workdir: Path) -> tuple[Path, Path, Path]:
    """(train captions, validation captions, concept targets .npz) for `python -m models.train`.

    The .npz layout is NpzVectorSource's: `keys` (N,) strings and `vectors` (N, D) unit float32 rows.
    """
    from models.offline_lite import read_concepts

    concepts = read_concepts()["concepts"]
    train = write_rows(workdir / "concepts.tsv", concept_phrases(concepts))
    val_texts, val_labels = validation_texts()
    val = write_rows(workdir / "val.tsv", [(concept_key(concepts[c]["wnid"]), t)
                                           for t, c in zip(val_texts, val_labels, strict=True)])
    vectors = workdir / "concept_targets.npz"
    np.savez(vectors, keys=np.array([concept_key(c["wnid"]) for c in concepts]), vectors=concept_targets(concepts))
    return train, val, vectors


def train_with_cli(workdir: Path, init: Path, *, epochs: int = EPOCHS, seed: int = SEED) -> dict:
    """Run `python -m models.train` in a subprocess on the files of `write_training_data`; its --json result."""
    train, val, vectors = write_training_data(workdir)
    command = [sys.executable, "-m", "models.train", str(train), "--image-vectors", str(vectors), "--val", str(val),
               "--model", str(init), "--train", "head", "--epochs", str(epochs), "--patience", "1", "-q",
               "--seed", str(seed), "--device", "cpu", "--home", str(workdir / "home"), "--name", VERSION_NAME,
               "--json"]
    log.info("running: %s", " ".join(command))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           **THREADS_ENV}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"python -m models.train failed with status {done.returncode} (its errors are above)")
    return json.loads(done.stdout)


def head_tensors(version_dir: Path) -> dict[str, torch.Tensor]:
    """Only the head of a saved text tower: the encoder is MiniLM from PyPI, unchanged by `--train head`."""
    from safetensors.torch import load_file

    from models.saved import WEIGHTS

    tensors = load_file(str(version_dir / WEIGHTS))
    return {k: tensors[k].to(torch.float16).contiguous() for k in HEAD_KEYS}


def build(workdir: Path, *, epochs: int = EPOCHS) -> tuple[dict[str, torch.Tensor], dict]:
    """Init → data → CLI → head tensors, plus the provenance stored in the shipped file."""
    init_dir = workdir / "init"
    build_init(init_dir)
    result = train_with_cli(workdir, init_dir, epochs=epochs)
    log.info("best epoch %d of %d; val T→I R@1 %.1f → %.1f", result["best_epoch"], result["epochs_completed"],
             100 * result["metrics_before"]["t2i_r1"], 100 * result["metrics_after"]["t2i_r1"])
    provenance = {"recipe": "models.recipes.offline_lite", "tuned": True, "trained_with": "python -m models.train",
                  "data_fingerprint": result["data_fingerprint"], "best_epoch": result["best_epoch"],
                  "epochs": epochs, "seed": SEED, "val_metrics_before": result["metrics_before"],
                  "val_metrics_after": result["metrics_after"]}
    return head_tensors(Path(result["output"])), provenance


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.recipes.offline_lite", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to write the head (default: {DEFAULT_OUT})")
    parser.add_argument("--workdir", type=Path, help="keep the init model, data files and CLI home here "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"CLI epochs (default: {EPOCHS})")
    parser.add_argument("--no-tune", action="store_true",
                        help="write the untrained concept-initialised head only (for comparisons)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from safetensors.torch import save_file

    torch.set_num_threads(1)  # the init's embeddings too (module docstring); the CLI run gets THREADS_ENV

    if args.no_tune:
        tensors, provenance = build_init(), {"recipe": "models.recipes.offline_lite", "tuned": False}
        tensors = {k: v.to(torch.float16) for k, v in tensors.items()}
    elif args.workdir is not None:
        if args.workdir.is_dir() and any(args.workdir.iterdir()):
            parser.error(f"--workdir {args.workdir} is not empty (saved models are immutable): give a new folder")
        args.workdir.mkdir(parents=True, exist_ok=True)
        tensors, provenance = build(args.workdir.resolve(), epochs=args.epochs)
    else:
        with tempfile.TemporaryDirectory(prefix="offline-lite-recipe-") as tmp:
            tensors, provenance = build(Path(tmp), epochs=args.epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # One metadata key: safetensors writes several in hash order, which would make reruns differ byte-wise.
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out),
              metadata={"loupe_provenance": json.dumps(provenance, sort_keys=True)})
    log.info("wrote %s (%.0f KB)", args.out, args.out.stat().st_size / 1024)


if __name__ == "__main__":
    main()
