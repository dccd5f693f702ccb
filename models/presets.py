"""Built-in presets that need no download: `test-tiny` and custom `timm:<arch>+hf:<source>` pairs.

`offline-lite` lives in models.offline_lite, the LiT checkpoints in models.lit_presets; models.registry is the one
module that knows all of them by name.
"""

from __future__ import annotations

import logging

from models.building import bundle_for, seeded, timm_image_tower
from models.bundle import ModelBundle
from models.model import LitModel
from models.tokenizers import HFTokenizer
from models.towers import TextTower

log = logging.getLogger(__name__)
TINY_SEED = 1234


def test_tiny(seed: int = TINY_SEED, dim: int = 32) -> ModelBundle:
    from transformers import BertConfig, BertModel

    from models.offline_lite import minilm_dir

    with seeded(seed):
        image = timm_image_tower("test_efficientnet", pretrained=False, head_dim=dim)
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, hidden_act="gelu_pytorch_tanh")
        encoder = BertModel(config, add_pooling_layer=False)
        text = TextTower(encoder, HFTokenizer(minilm_dir(), max_length=16), source="tiny-bert", hidden_dim=32,
                         pooling="cls", head_spec=[{"type": "linear", "in": 32, "out": dim}])
        model = LitModel(image, text)
    return bundle_for("test-tiny", model, {"seed": seed, "dim": dim})


def custom(name: str, *, pretrained: bool = True, dim: int | None = None, pooling: str = "mean",
           max_length: int = 64) -> ModelBundle:
    """`timm:<arch>+hf:<name or dir>`: any timm image tower with any transformers text encoder and a linear head.

    The image tower keeps its native features (no head) unless `dim` asks for a projection; the text head maps
    into that space and is what `models.train` tunes.
    """
    from transformers import AutoModel

    image_part, _, text_part = name.partition("+")
    if not text_part.startswith("hf:"):
        raise ValueError(f"custom model must look like 'timm:<arch>+hf:<name or dir>', got {name!r}")
    arch, source = image_part[len("timm:"):], text_part[len("hf:"):]
    image = timm_image_tower(arch, pretrained=pretrained, head_dim=dim)
    try:
        encoder = AutoModel.from_pretrained(source)
    except OSError as err:
        raise RuntimeError(f"could not load text encoder {source!r}: {err}. Give a local directory.") from err
    hidden = encoder.config.hidden_size
    text = TextTower(encoder, HFTokenizer(source, max_length), source=source, hidden_dim=hidden, pooling=pooling,
                     head_spec=[{"type": "linear", "in": hidden, "out": image.output_dim}])
    options = {"pretrained": pretrained, "dim": dim, "pooling": pooling, "max_length": max_length}
    return bundle_for(name, LitModel(image, text), options)

