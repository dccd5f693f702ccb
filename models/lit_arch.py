"""`LitArch`: the shapes that define a LiT model, and the torch towers (timm ViT + transformers BERT) they build.

The released models are ViT-B/16 or ViT-L/16 with CLS pooling after the final LayerNorm, and BERT-base or -large
read at position 0 through a Dense head (shared/docs/lit-checkpoints.md §1, §3). Both towers use tanh GELU (erf
GELU costs ~1e-3). Every field can be read off a checkpoint's array shapes (`models.lit_convert.infer_arch`), so
tiny random test checkpoints go through exactly the code the real ones do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass

import torch

from models.lit_preprocess import LitPreprocess
from models.lit_tokenizer import LitTokenizer
from models.model import LitModel
from models.towers import ImageTower, TextTower

BERT_HEAD_WIDTH = 64  # every BERT size uses 64-wide heads; flaxformer's 2-D q/k/v kernels do not store the count


@dataclass(frozen=True)
class LitArch:
    image_width: int  # ViT hidden size D (768 for B, 1024 for L)
    image_depth: int  # encoder blocks (12 B, 24 L)
    image_heads: int  # attention heads (12 B, 16 L)
    image_mlp: int  # MLP hidden size (4·D)
    patch: int  # patch side in pixels (16)
    image_size: int  # square input side (224); the position table has (image_size / patch)² patch rows
    image_head: int  # output width of `img/head` (LiT-B16B: 768); 0 = no head, CLS features are the embedding
    text_width: int  # BERT hidden size
    text_depth: int  # BERT layers
    text_heads: int  # BERT attention heads
    text_mlp: int  # BERT intermediate size
    vocab_size: int  # WordPiece vocabulary rows (30522)
    text_positions: int  # rows of the position table: 512 released, 16 accepted (LiT only ever uses 16)
    embed_dim: int  # output width of `txt/head` = the shared embedding width

    def differences(self, other: LitArch) -> list[str]:
        """Fields that differ, except the position-table length (16 or 512 rows build the same function)."""
        return [f"{f.name}: {getattr(self, f.name)} vs {getattr(other, f.name)}" for f in dataclasses.fields(self)
                if f.name != "text_positions" and getattr(self, f.name) != getattr(other, f.name)]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LitArch:
        return cls(**json.loads(text))

    @property
    def timm_arch(self) -> str:
        """timm's name when the shapes are a standard ViT (the tower id starts with it), else a descriptive one."""
        for name, (width, depth, heads) in {"vit_base_patch16_224": (768, 12, 12),
                                            "vit_large_patch16_224": (1024, 24, 16)}.items():
            if (self.image_width, self.image_depth, self.image_heads, self.image_mlp, self.patch,
                    self.image_size) == (width, depth, heads, 4 * width, 16, 224):
                return name
        return (f"vit_w{self.image_width}_d{self.image_depth}_h{self.image_heads}_m{self.image_mlp}"
                f"_p{self.patch}_{self.image_size}")


def bert_heads(width: int) -> int:
    return width // BERT_HEAD_WIDTH if width % BERT_HEAD_WIDTH == 0 and width >= BERT_HEAD_WIDTH else 1


LIT_B16B_2 = LitArch(image_width=768, image_depth=12, image_heads=12, image_mlp=3072, patch=16, image_size=224,
                     image_head=0, text_width=768, text_depth=12, text_heads=12, text_mlp=3072, vocab_size=30522,
                     text_positions=512, embed_dim=768)
LIT_B16B = dataclasses.replace(LIT_B16B_2, image_head=768)  # the first release has a Dense img/head (pitfall 4)
LIT_L16L = LitArch(image_width=1024, image_depth=24, image_heads=16, image_mlp=4096, patch=16, image_size=224,
                   image_head=0, text_width=1024, text_depth=24, text_heads=16, text_mlp=4096, vocab_size=30522,
                   text_positions=512, embed_dim=1024)


def build_image_tower(arch: LitArch, *, empty: bool = False) -> ImageTower:
    """timm ViT with CLS pooling after the final norm; `img/head` (if any) is timm's classifier head.

    `empty=True` builds it on the meta device (no random init: ViT-L's costs ~8 s on 2 cores) for a caller that
    then loads every tensor with `load_state_dict(..., assign=True)`; timm's ViT has no buffers to re-create.
    Otherwise the weights are random with PyTorch's default layer init (`weight_init='skip'` drops timm's second,
    truncated-normal pass, which took 5 of ViT-B's 6 s here): right for benchmarks and tests, and the image tower
    is never trained from scratch in Loupe anyway.
    """
    import timm

    with torch.device("meta") if empty else contextlib.nullcontext():
        backbone = timm.create_model(
            "vit_base_patch16_224", pretrained=False, img_size=arch.image_size, patch_size=arch.patch,
            embed_dim=arch.image_width, depth=arch.image_depth, num_heads=arch.image_heads,
            mlp_ratio=arch.image_mlp / arch.image_width, num_classes=arch.image_head, global_pool="token",
            act_layer="gelu_tanh", weight_init="skip",
        )
    if not empty:  # 'skip' leaves the two embeddings uninitialised (torch.empty); give them timm's own init
        torch.nn.init.normal_(backbone.pos_embed, std=0.02)
        torch.nn.init.normal_(backbone.cls_token, std=1e-6)
    return ImageTower(backbone, arch=arch.timm_arch, feature_dim=arch.image_head or arch.image_width,
                      preprocess_config=LitPreprocess(arch.image_size).config())


def build_text_tower(arch: LitArch, tokenizer: LitTokenizer, source: str) -> TextTower:
    """BERT without the pooler (LiT reads the last hidden state at [CLS]) and a Dense head into the shared space."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=arch.vocab_size, hidden_size=arch.text_width, num_hidden_layers=arch.text_depth,
        num_attention_heads=arch.text_heads, intermediate_size=arch.text_mlp, hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-12, max_position_embeddings=arch.text_positions, type_vocab_size=2,
    )
    encoder = BertModel(config, add_pooling_layer=False)
    return TextTower(encoder, tokenizer, source=source, hidden_dim=arch.text_width, pooling="cls",
                     head_spec=[{"type": "linear", "in": arch.text_width, "out": arch.embed_dim}])


def build_lit_model(arch: LitArch, tokenizer: LitTokenizer, source: str, *, empty_image: bool = False) -> LitModel:
    """Towers of `arch`, randomly initialised (or the image tower on the meta device, see `build_image_tower`)."""
    if tokenizer.vocab_size > arch.vocab_size:
        raise ValueError(f"vocabulary {tokenizer.vocab} has {tokenizer.vocab_size} pieces but the text tower has "
                         f"{arch.vocab_size} embedding rows: is it the vocabulary of this checkpoint?")
    return LitModel(build_image_tower(arch, empty=empty_image), build_text_tower(arch, tokenizer, source))
