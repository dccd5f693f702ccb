"""Reproduce `models/weights/offline_lite_text.safetensors`, the tuned text head of the `offline-lite` preset.

    python -m models.recipes.offline_lite --out models/weights/offline_lite_text.safetensors

Offline and deterministic (CPU, fixed seed; ~2 minutes on 2 cores, most of it MiniLM embedding ~11k short texts).

1. Init (the "Hellinger with WordNet" zero-shot recipe, as a head): row c of the head's linear layer is the unit
   MiniLM embedding of ImageNet class c's WordNet description ("names, synonyms: gloss"), bias 0, text temperature
   0.03. Since the head l2-normalises its input, a query's text vector is sqrt(softmax(cos(query, class desc)/T)):
   its cosine with a photo's vector is the Bhattacharyya coefficient of the two class distributions.
2. Tune (InfoNCE, text → class directions): pairs (templated synonym / description / "a name, gloss", e_c) for all
   1000 classes; e_c, the one-hot direction, is the point of the image space where the classifier is certain of c.
   Logits s·<text vector, e_j> over all 1000 classes (s = 10), cross-entropy to the text's class, plus an L2 pull
   (0.1) back to the init so that queries outside ImageNet keep the description-similarity behaviour. Linear weight,
   bias and text temperature are tuned; Adam lr 1e-3, 300 steps of 1024 texts.

The targets do not depend on the image temperature, so the same head serves `image_temperature` 1 or 2.
This does the equivalent of `python -m models.train CLASSES --image-vectors E.npz --train head` with the model core
directly (the cached MiniLM features make it a pure linear-head problem): it needs the description init and the pull
to it, which the CLI does not have.

Measured on real photos (bench/offline_eval.py, scratch eval set of 107 captioned photos): see the report there.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import torch
from torch.nn import functional as F

from models.recipes.imagenet_text import class_descriptions, class_texts

log = logging.getLogger(__name__)
INIT_TEMPERATURE = 0.03
SEED, STEPS, BATCH, LR, SCALE, PULL = 0, 300, 1024, 1e-3, 10.0, 0.1
HEAD_KEYS = ("text_tower.head.1.weight", "text_tower.head.1.bias", "text_tower.head.2.log_temperature")


@torch.inference_mode()
def pooled_features(model, texts: list[str], batch: int = 256) -> torch.Tensor:
    """The text tower's mean-pooled MiniLM features (the head's input), unit-normalised like the head's L2Norm."""
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


def description_init(model) -> dict[str, torch.Tensor]:
    weight = pooled_features(model, class_descriptions())
    return {HEAD_KEYS[0]: weight, HEAD_KEYS[1]: torch.zeros(weight.shape[0]),
            HEAD_KEYS[2]: torch.tensor(math.log(INIT_TEMPERATURE))}


def tune(init: dict[str, torch.Tensor], features: torch.Tensor, labels: torch.Tensor, *, steps: int = STEPS,
         batch: int = BATCH, lr: float = LR, scale: float = SCALE, pull: float = PULL, seed: int = SEED
         ) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    w0 = init[HEAD_KEYS[0]]
    weight = w0.clone().requires_grad_()
    bias = init[HEAD_KEYS[1]].clone().requires_grad_()
    log_t = init[HEAD_KEYS[2]].clone().float().requires_grad_()
    directions = torch.eye(w0.shape[0])  # e_c: class c's direction in sqrt-probability space
    optimizer = torch.optim.Adam([weight, bias, log_t], lr=lr)
    for step in range(steps):
        idx = torch.randint(0, len(features), (batch,), generator=generator)
        text = torch.softmax((features[idx] @ weight.T + bias) / log_t.exp(), -1).clamp_min(1e-12).sqrt()
        loss = F.cross_entropy(scale * text @ directions.T, labels[idx]) + pull * ((weight - w0) ** 2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            log.info("step %d loss %.4f T %.4f", step, loss.item(), log_t.exp().item())
    return {HEAD_KEYS[0]: weight.detach().contiguous(), HEAD_KEYS[1]: bias.detach().contiguous(),
            HEAD_KEYS[2]: log_t.detach().reshape(())}


def build(no_tune: bool = False) -> dict[str, torch.Tensor]:
    import models
    from models.presets import seeded

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with seeded(SEED):
        model = models.create("offline-lite", tuned=False).model.eval()
        init = description_init(model)
        if no_tune:
            return init
        texts, labels = class_texts()
        log.info("embedding %d class texts", len(texts))
        features = pooled_features(model, texts)
        return tune(init, features, torch.tensor(labels))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.recipes.offline_lite", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "weights" / "offline_lite_text.safetensors")
    parser.add_argument("--no-tune", action="store_true", help="write the description init only (variant c)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from safetensors.torch import save_file

    tensors = build(no_tune=args.no_tune)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out),
              metadata={"recipe": "models.recipes.offline_lite", "tuned": str(not args.no_tune)})
    log.info("wrote %s (%.0f KB)", args.out, args.out.stat().st_size / 1024)


if __name__ == "__main__":
    main()
