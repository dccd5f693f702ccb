"""Small projection heads described by JSON-able specs, so a saved model can rebuild its exact head.

A head is a list of layers, e.g. `[{"type": "l2norm"}, {"type": "linear", "in": 384, "out": 1000},
{"type": "sqrt_softmax", "temperature": 0.05}]`. `sqrt_softmax` maps logits onto the unit sphere as the square
root of a probability vector: cosine similarity between two such vectors is the Bhattacharyya coefficient of the
two distributions, which is how `offline-lite` compares ImageNet class distributions (Hellinger matching).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class L2Norm(nn.Module):
    """Unit-normalises features before a head (sentence-transformers models are trained that way)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class SqrtSoftmax(nn.Module):
    """sqrt(softmax(x / T)): a point on the unit sphere whose squares are class probabilities."""

    def __init__(self, temperature: float = 1.0, learnable: bool = False):
        super().__init__()
        log_t = torch.tensor(math.log(temperature))
        self.log_temperature = nn.Parameter(log_t, requires_grad=learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(x.float() / self.log_temperature.exp(), dim=-1)
        return probs.clamp_min(0).sqrt()


class ClassesAndFeatures(nn.Module):
    """Image side of offline-lite 2: [a·sqrt(softmax(classifier(f) / T)), b·unit(f - center)], with a² + b² = 1.

    The class part keeps zero-shot search (Hellinger matching of class distributions); the feature part carries what
    the classifier throws away (colour, layout, scene, things outside the 1000 classes), which is what a tuned text
    head can learn to read. `center` (a buffer) removes the features' common direction: pooled post-activation
    features are all positive, so uncentred they make every two photos look alike.
    """

    def __init__(self, features: int, classes: int, temperature: float, class_weight: float):
        super().__init__()
        self.classifier = nn.Linear(features, classes)
        self.register_buffer("center", torch.zeros(features))
        self.temperature = temperature
        self.class_weight = class_weight
        self.feature_weight = math.sqrt(1.0 - class_weight ** 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        probs = torch.softmax(self.classifier(x) / self.temperature, dim=-1).clamp_min(0).sqrt()
        features = F.normalize(x - self.center, dim=-1)
        return torch.cat([self.class_weight * probs, self.feature_weight * features], dim=-1)


class ConceptSpace(nn.Module):
    """Text side of offline-lite 2: text → distribution over WordNet concepts → the image side's two parts.

    `concept` scores a unit text vector against K concepts (the 1000 ImageNet classes, their WordNet hypernyms such
    as "animal" or "vehicle", and hyponyms such as "puppy"); softmax(· / T) is the query's concept distribution q.
    `mix` (K × classes, a non-persistent buffer the preset fills from the shipped hierarchy) spreads each concept
    over the classes under it, so "an animal" puts mass on every animal class. The class part is sqrt(q·mix); the
    feature part is unit(q·mix·proto + direct(t)), where `proto` (classes × features, a buffer from the locked
    classifier) holds each class's feature direction and `direct` (zero at first) is what tuning can use to reach
    feature directions no class names.

    `hub_strength` α (a fixed constant, not trained) then subtracts α × the mean of the class part from each of its
    entries, and the vector is re-normalised. Why: a text whose class distribution is flat (a generic or ambiguous
    caption) has a large share along the all-classes direction, and so does every photo (a photo's class part is
    sqrt(p), all positive), so without it a few such captions out-score the right one on every photo (image→text
    hubs). Removing that shared component from the text side lowers a caption's score on all photos by the same
    amount times how flat the photo is, which barely moves a caption's ranking of photos (text→image) but stops the
    hubs in a photo's ranking of captions (tagging). The direction is data-free; α is chosen on dev photos.
    """

    def __init__(self, dim_in: int, concepts: int, classes: int, features: int, temperature: float,
                 class_weight: float, learnable: bool = True, hub_strength: float = 0.0):
        super().__init__()
        self.concept = nn.Linear(dim_in, concepts)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learnable)
        self.direct = nn.Linear(dim_in, features, bias=False)
        nn.init.zeros_(self.direct.weight)
        self.register_buffer("mix", torch.eye(concepts, classes), persistent=False)
        self.register_buffer("proto", torch.zeros(classes, features), persistent=False)
        self.class_weight = class_weight
        self.feature_weight = math.sqrt(1.0 - class_weight ** 2)
        self.hub_strength = float(hub_strength)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = F.normalize(x.float(), dim=-1)
        q = torch.softmax(self.concept(t) / self.log_temperature.exp(), dim=-1)
        return self.from_concepts(q, self.direct(t))

    def from_concepts(self, q: torch.Tensor, direct: torch.Tensor | None = None) -> torch.Tensor:
        """The text vector of a concept distribution q (N, K), `direct` the text's own feature term (None: 0).

        Split from `forward` so that a benchmark can ask what a *chosen* distribution would retrieve (one-hot on
        "animal": bench/offline_eval.py --ceiling) through exactly the geometry a query gets."""
        p = (q @ self.mix).clamp_min(0)
        p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
        features = F.normalize(p @ self.proto + (0 if direct is None else direct), dim=-1)
        class_part = self.class_weight * p.sqrt()
        if not self.hub_strength:
            return torch.cat([class_part, self.feature_weight * features], dim=-1)
        class_part = class_part - self.hub_strength * class_part.mean(-1, keepdim=True)
        return F.normalize(torch.cat([class_part, self.feature_weight * features], dim=-1), dim=-1)


def _build_layer(spec: dict) -> nn.Module:
    kind = spec["type"]
    if kind == "linear":
        return nn.Linear(spec["in"], spec["out"], bias=spec.get("bias", True))
    if kind == "l2norm":
        return L2Norm()
    if kind == "sqrt_softmax":
        return SqrtSoftmax(spec.get("temperature", 1.0), spec.get("learnable", False))
    if kind == "classes_and_features":
        return ClassesAndFeatures(spec["in"], spec["classes"], spec.get("temperature", 1.0), spec["class_weight"])
    if kind == "concept_space":
        return ConceptSpace(spec["in"], spec["concepts"], spec["classes"], spec["features"],
                            spec.get("temperature", 0.03), spec["class_weight"], spec.get("learnable", True),
                            spec.get("hub_strength", 0.0))
    raise ValueError(f"unknown head layer type {kind!r} (known: linear, l2norm, sqrt_softmax, classes_and_features, "
                     "concept_space)")


def build_head(layers: list[dict] | None) -> nn.Module | None:
    """An `nn.Sequential` for a non-empty spec, `None` for no head."""
    if not layers:
        return None
    return nn.Sequential(*(_build_layer(layer) for layer in layers))


def head_output_dim(layers: list[dict] | None, input_dim: int) -> int:
    """Width after the head: the last linear layer's `out`, else the input width."""
    dim = input_dim
    for layer in layers or []:
        if layer["type"] == "linear":
            dim = layer["out"]
        elif layer["type"] in ("classes_and_features", "concept_space"):
            dim = layer["classes"] + (layer["features"] if "features" in layer else layer["in"])
    return dim
