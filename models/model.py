"""`LitModel`: a locked image tower, a trainable text tower and a learnable temperature (Zhai et al., LiT, 2022).

LiT's finding is that a *locked* pretrained image tower with a text tower tuned to read its space beats tuning both.
For Loupe the lock is also a product property: every stored image vector stays valid while the text side changes,
so a user can tune on their captions without re-embedding a single photo. The lock is therefore enforced here,
not just requested: no gradients, eval mode forever (batch-norm statistics frozen), checked by `assert_locked`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.device import autocast
from models.towers import ImageTower, TextTower

UNIT_NORM_TOLERANCE = 1e-3


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """The one normalisation used for both towers: fp32, z / (‖z‖ + 1e-8) as in the LiT reference code."""
    x = x.float()
    return x / (x.norm(dim=-1, keepdim=True) + 1e-8)


def assert_unit_norm(vectors: torch.Tensor) -> None:
    """Raise if any row is not a unit vector (guards every vector before it is stored or compared)."""
    norms = vectors.float().norm(dim=-1)
    if norms.numel() and (norms - 1).abs().max() > UNIT_NORM_TOLERANCE:
        raise ValueError(f"expected unit vectors, got norms in [{norms.min():.4f}, {norms.max():.4f}]")


class LitModel(nn.Module):
    """Two towers in one embedding space. `encode_images` / `encode_texts` return unit vectors (N, D)."""

    def __init__(self, image_tower: ImageTower, text_tower: TextTower, *, init_logit_scale: float = math.log(10.0)):
        super().__init__()
        if image_tower.output_dim != text_tower.output_dim:
            raise ValueError(
                f"tower widths differ: image {image_tower.output_dim} vs text {text_tower.output_dim}; "
                "give the text tower a head into the image space"
            )
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self._image_tower_id: str | None = None
        self._image_runtime = None  # inference outside torch (models.runtime): pixels -> features
        self._text_runtime = None  # (ids, mask -> features, the text tower it was exported from)
        # What encodes each tower, as recorded with a collection (models.runtime): 'torch fp32', 'onnxruntime fp32',
        # 'torch bf16'; on CUDA the towers run torch with the GPU's autocast whatever this says.
        self.inference = {"image": "torch fp32", "text": "torch fp32"}
        self.lock_image_tower()
        self.eval()  # towers built from a config start in train mode (dropout on); inference is the default

    @property
    def dim(self) -> int:
        return self.image_tower.output_dim

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def image_tower_id(self) -> str:
        """Identity of the locked tower's weights; computed once (the tower never changes after locking)."""
        if self._image_tower_id is None:
            self._image_tower_id = self.image_tower.fingerprint()
        return self._image_tower_id

    def lock_image_tower(self) -> None:
        """LiT's 'Lu' setting: the pretrained image tower is frozen entirely, including BN running statistics."""
        self.image_tower.requires_grad_(False)
        self.image_tower.eval()
        self._image_tower_id = None

    def train(self, mode: bool = True) -> LitModel:
        """Switches the text side only; the image tower stays in eval mode so BN statistics never update."""
        super().train(mode)
        self.image_tower.eval()
        return self

    def assert_locked(self) -> None:
        trainable = [n for n, p in self.image_tower.named_parameters() if p.requires_grad]
        if trainable or self.image_tower.training:
            raise AssertionError(f"image tower is not locked (trainable: {trainable[:3]}, training mode: "
                                 f"{self.image_tower.training})")

    @property
    def visual_dim(self) -> int:
        """Width of the visual vectors `encode_images(..., with_visual=True)` returns."""
        return self.image_tower.visual_dim

    def set_inference(self, image=None, text=None, labels: dict[str, str] | None = None) -> None:
        """Encode with another runtime (models.runtime): `image(pixels)`, `text = (fn(ids, mask), tower)`; an image
        fn with a `with_visual(pixels)` attribute also serves `encode_images(..., with_visual=True)`. `labels`
        names what now encodes each tower (`inference`)."""
        self._image_runtime, self._text_runtime = image, text
        self.inference = {"image": "torch fp32", "text": "torch fp32", **(labels or {})}

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor, with_visual: bool = False):
        """(N, 3, H, W) -> (N, D) unit fp32 vectors in the shared space; with `with_visual`, the pair
        (embedding (N, D), visual (N, V)), both unit, from the same forward pass (see `ImageTower.forward_with_visual`).
        """
        self.assert_locked()
        if self._image_runtime is not None and not with_visual:
            return l2_normalize(self._image_runtime(pixels).float())
        if self._image_runtime is not None and hasattr(self._image_runtime, "with_visual"):
            features, visual = self._image_runtime.with_visual(pixels)
            return l2_normalize(features), l2_normalize(visual)
        # The visual vector needs the backbone's pooled features, which an exported graph does not give: torch path.
        pixels = pixels.to(self.device, non_blocking=True)
        with autocast(self.device):
            if not with_visual:
                return l2_normalize(self.image_tower(pixels))
            features, visual = self.image_tower.forward_with_visual(pixels)
        return l2_normalize(features), l2_normalize(visual)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Unit text vectors *with* autograd, for training; `encode_texts` is the inference path."""
        tokens = self.text_tower.tokenizer(list(texts))
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        with autocast(self.device):
            features = self.text_tower(tokens["input_ids"], tokens["attention_mask"])
        return l2_normalize(features)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:  # list of N strings -> (N, D) unit, fp32
        if not texts:
            return torch.empty(0, self.dim)
        if self._text_runtime is not None and self._text_runtime[1] is self.text_tower:  # not after a promotion
            tokens = self.text_tower.tokenizer(list(texts))
            return l2_normalize(self._text_runtime[0](tokens["input_ids"], tokens["attention_mask"]).float())
        return self.text_features(texts)

    def contrastive_logits(self, image_vectors: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
        """exp(t) · zimg @ ztxtᵀ, the LiT/CLIP logits (temperature learnable, clamped like CLIP at 100)."""
        return self.logit_scale.exp().clamp(max=100.0) * image_vectors @ text_vectors.T
