"""Recall@K for image↔text retrieval, as the COCO numbers of LiT and CLIP are computed.

Image→text R@K: fraction of images for which at least one of *their* captions is among the K captions of highest
dot product; text→image R@K: fraction of captions whose own image is among the K images of highest dot product
(shared/docs/lit-checkpoints.md §5). Similarities are computed in row chunks so the 5k × 25k COCO matrix never has
to exist at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_KS = (1, 5, 10)


def recall_at_k(image_vecs: torch.Tensor, text_vecs: torch.Tensor, text_to_image: Sequence[int],
                ks: Sequence[int] = DEFAULT_KS, chunk: int = 1024) -> dict[str, dict[str, float]]:
    """{'image_to_text': {'R@1': …, 'R@5': …, 'R@10': …}, 'text_to_image': {…}} for unit vectors (N, D), (M, D).

    `text_to_image[j]` is the row of caption j's image. Images without any caption do not count for image→text.
    """
    images, texts = image_vecs.float(), text_vecs.float()
    owner = torch.as_tensor(list(text_to_image), dtype=torch.long)  # (M,)
    if owner.numel() != texts.shape[0]:
        raise ValueError(f"{texts.shape[0]} captions but {owner.numel()} entries in text_to_image")
    if owner.numel() and (owner.min() < 0 or owner.max() >= images.shape[0]):
        raise ValueError("text_to_image refers to an image row that does not exist")
    k_max = max(ks)

    i2t_hits = []  # per image: (K,) bool, whether rank r holds one of its captions
    for start in range(0, images.shape[0], chunk):
        sims = images[start:start + chunk] @ texts.T  # (b, M)
        top = sims.topk(min(k_max, texts.shape[0]), dim=1).indices  # (b, K)
        rows = torch.arange(start, start + sims.shape[0]).view(-1, 1)
        i2t_hits.append(owner[top] == rows)
    t2i_hits = []
    for start in range(0, texts.shape[0], chunk):
        sims = texts[start:start + chunk] @ images.T  # (b, N)
        top = sims.topk(min(k_max, images.shape[0]), dim=1).indices  # (b, K)
        t2i_hits.append(top == owner[start:start + sims.shape[0]].view(-1, 1))

    has_caption = torch.bincount(owner, minlength=images.shape[0]) > 0  # (N,)
    return {
        "image_to_text": _recalls(torch.cat(i2t_hits)[has_caption] if i2t_hits else None, ks),
        "text_to_image": _recalls(torch.cat(t2i_hits) if t2i_hits else None, ks),
    }


def _recalls(hits: torch.Tensor | None, ks: Sequence[int]) -> dict[str, float]:
    if hits is None or hits.shape[0] == 0:
        return {f"R@{k}": float("nan") for k in ks}
    return {f"R@{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks}
