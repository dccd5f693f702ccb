"""Zero-shot classification as LiT's reported numbers compute it (big_vision's discriminative classifier).

Class names and templates are canonicalised (lower case, punctuation stripped, `_` → space), only a class's first
alias is used, and each class is the mean of its normalised prompt embeddings, re-normalised
(shared/docs/lit-checkpoints.md §5). `search.tag` and the indexer's tag-on-arrival reuse the same classifier, so a
tag scores exactly like an ImageNet class.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence

import torch

from models.model import l2_normalize
from models.templates import LIT_ZEROSHOT_TEMPLATES

_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def canonicalize(text: str, keep: str | None = None) -> str:
    """big_vision's `canonicalize_text`: `_` → space, punctuation removed (except the exact string `keep`),
    lower case, whitespace collapsed."""
    text = text.replace("_", " ")
    parts = text.split(keep) if keep else [text]
    text = (keep or "").join(part.translate(_NO_PUNCTUATION) for part in parts)
    return re.sub(r"\s+", " ", text.lower()).strip()


def first_alias(name: str) -> str:
    """'tench, Tinca tinca' → 'tench' (WordNet-style descriptions list synonyms after commas)."""
    return name.split(",")[0].strip()


def class_prompts(classname: str, templates: Sequence[str]) -> list[str]:
    name = canonicalize(first_alias(classname))
    return [canonicalize(template, keep="{}").format(name) for template in templates]


def build_zeroshot_classifier(model, classnames: Sequence[str], templates: Sequence[str] = LIT_ZEROSHOT_TEMPLATES,
                              *, batch_size: int = 256,
                              progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """(C, D) unit rows, one per class. `model` is anything with `encode_texts(list[str]) -> (N, D)` unit vectors
    (a `LitModel`); `progress(n)` is called after each batch of n prompts (e.g. a tqdm bar's `update`)."""
    prompts = [prompt for name in classnames for prompt in class_prompts(name, templates)]  # C·T strings
    chunks = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        chunks.append(l2_normalize(model.encode_texts(batch)).cpu())  # (b, D)
        if progress is not None:
            progress(len(batch))
    vectors = torch.cat(chunks).view(len(classnames), len(templates), -1)  # (C, T, D)
    return l2_normalize(vectors.mean(dim=1))  # (C, D)


def topk_accuracy(image_vectors: torch.Tensor, labels: Sequence[int], classifier: torch.Tensor,
                  ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{'top1': …, 'top5': …}: fraction of images whose label is among the k classes of highest zimg · zclass."""
    if len(labels) == 0:
        return {f"top{k}": float("nan") for k in ks}
    logits = image_vectors.float() @ classifier.float().T  # (N, C)
    top = logits.topk(min(max(ks), classifier.shape[0]), dim=1).indices  # (N, K)
    hits = top == torch.as_tensor(list(labels)).view(-1, 1)  # (N, K)
    return {f"top{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks}
