"""Text→image recall of `offline-lite` variants on real captioned photos, side by side.

    python bench/offline_eval.py CAPTIONS.tsv [--image-temperatures 1 2] [--weights NAME=FILE ...]

CAPTIONS.tsv: `path<TAB>caption` per line (paths relative to the file's folder, or absolute). Each caption's target
is its own photo; photos that share the exact same caption are not counted against each other. Prints a markdown
table of T→I R@1/5/10 for:

- `names → class prob`: the zero-training baseline (query → nearest ImageNet class name by MiniLM cosine → rank
  photos by that class's probability);
- `hellinger wordnet`: query → softmax over cosines with the WordNet descriptions (T 0.03) → Bhattacharyya
  coefficient with each photo's class distribution (what the description-initialised head computes);
- `untuned head`: `models.create('offline-lite', tuned=False)` (random text head);
- `shipped`: `models.create('offline-lite')` with models/weights/offline_lite_text.safetensors;
- each `--weights NAME=FILE`: the preset with those text tensors loaded instead.

Every model row runs the real inference path (`encode_images` / `encode_texts`) once per image temperature.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from models.offline_lite import SHIPPED_TEXT_WEIGHTS  # noqa: E402
from models.recipes.imagenet_text import class_descriptions, synonyms  # noqa: E402
from models.recipes.offline_lite import pooled_features  # noqa: E402
from models.saved import load_partial_state  # noqa: E402


def read_captions(path: Path) -> tuple[list[Path], list[str]]:
    paths, captions = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        image, caption = line.split("\t", 1)
        image_path = Path(image) if Path(image).is_absolute() else path.parent / image
        paths.append(image_path)
        captions.append(caption.strip())
    return paths, captions


def load_rgb(path: Path) -> Image.Image:
    image = Image.open(path)
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, "white")
        background.alpha_composite(image)
        image = background
    return image.convert("RGB")


def recall(scores: np.ndarray, captions: list[str], ks=(1, 5, 10)) -> dict[int, float]:
    n = len(scores)
    own = scores[np.arange(n), np.arange(n)][:, None]
    beats = (scores > own) | ((scores == own) & ~np.eye(n, dtype=bool))
    same_caption = np.array([[a == b for b in captions] for a in captions])
    rank = (beats & ~same_caption).sum(1)
    return {k: float((rank < k).mean() * 100) for k in ks}


@torch.inference_mode()
def encode_images(bundle, paths: list[Path], batch: int = 32) -> torch.Tensor:
    out = []
    for i in range(0, len(paths), batch):
        pixels = torch.stack([bundle.preprocess(load_rgb(p)) for p in paths[i:i + batch]])
        out.append(bundle.model.encode_images(pixels).cpu())
    return torch.cat(out)


def zero_training_rows(model, image_vectors: torch.Tensor, captions: list[str]) -> dict[str, np.ndarray]:
    """Scores of the two training-free baselines; image class probabilities are the squared image vectors."""
    probs = (image_vectors.double() ** 2).numpy()
    queries = pooled_features(model, captions).numpy()
    descriptions = class_descriptions()
    names = pooled_features(model, [synonyms(d)[0] for d in descriptions]).numpy()
    best_class = (queries @ names.T).argmax(1)
    wordnet = pooled_features(model, descriptions).numpy()
    logits = queries @ wordnet.T / 0.03
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    return {"names → class prob": probs[:, best_class].T, "hellinger wordnet": np.sqrt(q) @ np.sqrt(probs).T}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("captions", type=Path)
    parser.add_argument("--image-temperatures", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--weights", nargs="*", default=[], metavar="NAME=FILE",
                        help="extra text-weight files to compare (safetensors with text_tower.* keys)")
    args = parser.parse_args(argv)
    from safetensors.torch import load_file

    torch.manual_seed(0)
    paths, captions = read_captions(args.captions)
    variants: list[tuple[str, dict | None]] = [("untuned head", None)]
    if SHIPPED_TEXT_WEIGHTS.is_file():
        variants.append(("shipped", load_file(str(SHIPPED_TEXT_WEIGHTS))))
    for spec in args.weights:
        name, _, file = spec.partition("=")
        variants.append((name, load_file(file)))
    table: dict[str, dict[float, dict[int, float]]] = {}
    for temperature in args.image_temperatures:
        bundle = models.create("offline-lite", tuned=False, image_temperature=temperature)
        model = bundle.model.eval()
        image_vectors = encode_images(bundle, paths)
        for name, scores in zero_training_rows(model, image_vectors, captions).items():
            table.setdefault(name, {})[temperature] = recall(scores, captions)
        random_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("text_tower.head.")}
        for name, tensors in variants:
            load_partial_state(model, tensors if tensors is not None else random_head)
            text_vectors = model.encode_texts(captions)
            table.setdefault(name, {})[temperature] = recall((text_vectors @ image_vectors.T).numpy(), captions)
        print(f"image temperature {temperature:g}: image tower {model.image_tower_id}", file=sys.stderr)
    temps = args.image_temperatures
    print(f"{len(captions)} captioned photos from {args.captions} (T→I R@1 / R@5 / R@10, %)\n")
    print("| variant | " + " | ".join(f"T_img={t:g}" for t in temps) + " |")
    print("|---|" + "---|" * len(temps))
    for name, by_temp in table.items():
        cells = [" / ".join(f"{by_temp[t][k]:.1f}" for k in (1, 5, 10)) for t in temps]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
