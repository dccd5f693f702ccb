"""LiT .npz → Loupe: tiny random checkpoints in the official key tree, checked against an independent numpy forward.

Every layout variant of shared/docs/lit-checkpoints.md §2 is built here (Linen / pre-Linen names, vit_jax 1+N /
big_vision N position rows, `params/` prefix with optimizer state, 16 / 512 text positions, bfloat16 stored as
2-byte void, with / without `img/head`), loaded through `models.create(preset, weights=…, vocab=…)`, and compared
with a float64 numpy reference of ViT (tanh GELU) + post-LN BERT (with the padding mask) + heads + L2 norm.
"""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest
import torch

import models

D, DEPTH, HEADS, MLP, PATCH, GRID = 32, 2, 2, 64, 4, 4  # image: 16×16 px → 4×4 patches
DT, TEXT_DEPTH, TEXT_MLP = 128, 2, 256  # text; BERT heads are 64 wide → 2 heads
TEXT_HEADS = 2
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "the", "cat", "dog", "red", "car", "on",
         "beach", "sunset", "over", "mountains", "##s", "big", "small", "blue", "sky", "with", "and"]
TEXTS = ["a photo of a cat", "red cars on the beach", "sunset over mountains with a big blue sky and a small dog",
         "", "Dogs"]


def _linen_params(rng: np.random.Generator, *, layout: str, text_positions: int, img_head: int) -> dict:
    """Random parameters with today's (Linen) names; values scaled so activations stay O(1)."""
    def w(*shape, fan_in=None):
        return rng.normal(0, 1 / np.sqrt(fan_in or shape[0]), shape).astype(np.float32)

    def b(*shape):
        return rng.normal(0, 0.1, shape).astype(np.float32)

    p = {"img/embedding/kernel": w(PATCH, PATCH, 3, D, fan_in=PATCH * PATCH * 3), "img/embedding/bias": b(D),
         "img/cls": b(1, 1, D), "img/Transformer/encoder_norm/scale": 1 + b(D),
         "img/Transformer/encoder_norm/bias": b(D)}
    if layout == "vit_jax":
        p["img/Transformer/posembed_input/pos_embedding"] = b(1, GRID * GRID + 1, D)
    else:
        p["img/pos_embedding"] = b(1, GRID * GRID, D)
    for i in range(DEPTH):
        blk = f"img/Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_1"):
            p |= {blk + ln + "/scale": 1 + b(D), blk + ln + "/bias": b(D)}
        for name in ("query", "key", "value"):
            p |= {f"{blk}MultiHeadDotProductAttention_0/{name}/kernel": w(D, HEADS, D // HEADS),
                  f"{blk}MultiHeadDotProductAttention_0/{name}/bias": b(HEADS, D // HEADS)}
        p |= {blk + "MultiHeadDotProductAttention_0/out/kernel": w(HEADS, D // HEADS, D, fan_in=D),
              blk + "MultiHeadDotProductAttention_0/out/bias": b(D),
              blk + "MlpBlock_0/Dense_0/kernel": w(D, MLP), blk + "MlpBlock_0/Dense_0/bias": b(MLP),
              blk + "MlpBlock_0/Dense_1/kernel": w(MLP, D), blk + "MlpBlock_0/Dense_1/bias": b(D)}
    embed = img_head or D
    if img_head:
        p |= {"img/head/kernel": w(D, img_head), "img/head/bias": b(img_head)}
    enc = "txt/BertEncoder_0/"
    p |= {enc + "embedder/embedders_token_ids/embedding": b(len(WORDS), DT) * 10,
          enc + "embedder/embedders_position_ids/embedding": b(text_positions, DT),
          enc + "embedder/embedders_segment_ids/embedding": b(2, DT),
          enc + "layer_norm/scale": 1 + b(DT), enc + "layer_norm/bias": b(DT)}
    for j in range(TEXT_DEPTH):
        lay = f"{enc}encoder_block/layer_sequence/layers_{j}/"
        for name in ("query", "key", "value"):
            p |= {f"{lay}attention_block/attention_layer/{name}/kernel": w(DT, DT),
                  f"{lay}attention_block/attention_layer/{name}/bias": b(DT)}
        p |= {lay + "attention_block/dense_layer/kernel": w(DT, DT), lay + "attention_block/dense_layer/bias": b(DT),
              lay + "attention_block/layer_norm/scale": 1 + b(DT), lay + "attention_block/layer_norm/bias": b(DT),
              lay + "mlp_block/mlp/dense_layer/kernel": w(DT, TEXT_MLP),
              lay + "mlp_block/mlp/dense_layer/bias": b(TEXT_MLP),
              lay + "mlp_block/dense_layer/kernel": w(TEXT_MLP, DT), lay + "mlp_block/dense_layer/bias": b(DT),
              lay + "mlp_block/layer_norm/scale": 1 + b(DT), lay + "mlp_block/layer_norm/bias": b(DT)}
    p |= {"txt/head/kernel": w(DT, embed), "txt/head/bias": b(embed), "t": np.array([2.3], np.float32)}
    return p


PRE_LINEN = {"LayerNorm_0": "LayerNorm_0", "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
             "LayerNorm_1": "LayerNorm_2", "MlpBlock_0": "MlpBlock_3"}


def _to_pre_linen(key: str) -> str:
    return re.sub(r"(encoderblock_\d+/)(\w+_\d)", lambda m: m.group(1) + PRE_LINEN[m.group(2)], key)


def write_checkpoint(path, *, layout="vit_jax", text_positions=512, img_head=0, pre_linen=False, prefix="",
                     bf16=False, seed=0) -> dict:
    """Save a tiny checkpoint as the releases store it; return the (Linen-named, float32) values it holds."""
    params = _linen_params(np.random.default_rng(seed), layout=layout, text_positions=text_positions,
                           img_head=img_head)
    if bf16:  # what the file holds is bf16; the reference must use the same rounded values
        params = {k: v.astype(ml_dtypes.bfloat16).astype(np.float32) for k, v in params.items()}
    stored = {}
    for key, value in params.items():
        name = prefix + (_to_pre_linen(key) if pre_linen else key)
        stored[name] = value.astype(ml_dtypes.bfloat16).view("V2") if bf16 else value
    if prefix:  # big_vision checkpoints carry optimizer and clock state next to params/
        stored |= {"opt/state/mu/img/cls": np.zeros(3, np.float32), "chrono/accum_train_time": np.zeros(1)}
    np.savez(path, **stored)
    return params


# ---- independent numpy reference (float64) ----

def _ln(x, scale, bias, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * scale + bias


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _unit(x):
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def reference_images(p: dict, pixels: np.ndarray, layout: str) -> np.ndarray:
    p = {k: v.astype(np.float64) for k, v in p.items()}
    x = pixels.astype(np.float64).transpose(0, 2, 3, 1)  # (N, H, W, 3)
    n = x.shape[0]
    patches = x.reshape(n, GRID, PATCH, GRID, PATCH, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, GRID * GRID, -1)
    tokens = patches @ p["img/embedding/kernel"].reshape(-1, D) + p["img/embedding/bias"]  # (N, 16, D)
    cls = np.repeat(p["img/cls"], n, axis=0)
    if layout == "vit_jax":
        x = np.concatenate([cls, tokens], 1) + p["img/Transformer/posembed_input/pos_embedding"]
    else:
        x = np.concatenate([cls, tokens + p["img/pos_embedding"]], 1)
    for i in range(DEPTH):
        blk = f"img/Transformer/encoderblock_{i}/"
        att = blk + "MultiHeadDotProductAttention_0/"
        y = _ln(x, p[blk + "LayerNorm_0/scale"], p[blk + "LayerNorm_0/bias"], 1e-6)
        q, k, v = (np.einsum("nld,dhk->nlhk", y, p[f"{att}{m}/kernel"]) + p[f"{att}{m}/bias"]
                   for m in ("query", "key", "value"))
        w = _softmax(np.einsum("nqhk,nshk->nhqs", q, k) / np.sqrt(D // HEADS))
        o = np.einsum("nhqs,nshk->nqhk", w, v)
        x = x + np.einsum("nqhk,hkd->nqd", o, p[att + "out/kernel"]) + p[att + "out/bias"]
        y = _ln(x, p[blk + "LayerNorm_1/scale"], p[blk + "LayerNorm_1/bias"], 1e-6)
        h = _gelu_tanh(y @ p[blk + "MlpBlock_0/Dense_0/kernel"] + p[blk + "MlpBlock_0/Dense_0/bias"])
        x = x + h @ p[blk + "MlpBlock_0/Dense_1/kernel"] + p[blk + "MlpBlock_0/Dense_1/bias"]
    out = _ln(x, p["img/Transformer/encoder_norm/scale"], p["img/Transformer/encoder_norm/bias"], 1e-6)[:, 0]
    if "img/head/kernel" in p:
        out = out @ p["img/head/kernel"] + p["img/head/bias"]
    return _unit(out)


def reference_texts(p: dict, ids: np.ndarray) -> np.ndarray:
    p = {k: v.astype(np.float64) for k, v in p.items()}
    enc, hd = "txt/BertEncoder_0/", DT // TEXT_HEADS
    n, length = ids.shape
    x = (p[enc + "embedder/embedders_token_ids/embedding"][ids]
         + p[enc + "embedder/embedders_position_ids/embedding"][:length]
         + p[enc + "embedder/embedders_segment_ids/embedding"][0])
    x = _ln(x, p[enc + "layer_norm/scale"], p[enc + "layer_norm/bias"], 1e-12)
    blocked = np.where(ids != 0, 0.0, -1e9)[:, None, None, :]  # (N, 1, 1, L): padded keys are never attended
    for j in range(TEXT_DEPTH):
        lay = f"{enc}encoder_block/layer_sequence/layers_{j}/"
        att = lay + "attention_block/"
        q, k, v = ((x @ p[f"{att}attention_layer/{m}/kernel"] + p[f"{att}attention_layer/{m}/bias"])
                   .reshape(n, length, TEXT_HEADS, hd) for m in ("query", "key", "value"))
        w = _softmax(np.einsum("nqhk,nshk->nhqs", q, k) / np.sqrt(hd) + blocked)
        ctx = np.einsum("nhqs,nshk->nqhk", w, v).reshape(n, length, DT)
        x = _ln(x + ctx @ p[att + "dense_layer/kernel"] + p[att + "dense_layer/bias"],
                p[att + "layer_norm/scale"], p[att + "layer_norm/bias"], 1e-12)
        mlp = lay + "mlp_block/"
        h = _gelu_tanh(x @ p[mlp + "mlp/dense_layer/kernel"] + p[mlp + "mlp/dense_layer/bias"])
        x = _ln(x + h @ p[mlp + "dense_layer/kernel"] + p[mlp + "dense_layer/bias"],
                p[mlp + "layer_norm/scale"], p[mlp + "layer_norm/bias"], 1e-12)
    return _unit(x[:, 0] @ p["txt/head/kernel"] + p["txt/head/bias"])


# ---- tests ----

@pytest.fixture()
def vocab(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


VARIANTS = {  # preset, checkpoint layout options
    "b16b-linen-vitjax-512-f32-head": ("lit-b16b", dict(img_head=48)),
    "b16b2-prelinen-16": ("lit-b16b-2", dict(pre_linen=True, text_positions=16)),
    "l16l-bf16-16": ("lit-l16l", dict(bf16=True, text_positions=16)),
    "coco-bigvision-params-bf16": ("lit-coco-b16b", dict(layout="big_vision", prefix="params/", bf16=True)),
    "b16b-prelinen-bigvision-params-head": ("lit-b16b", dict(layout="big_vision", prefix="params/", pre_linen=True,
                                                             img_head=40, text_positions=16)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_converted_towers_match_the_numpy_reference(variant, tmp_path, vocab, home):
    preset, options = VARIANTS[variant]
    npz = tmp_path / "tiny.npz"
    params = write_checkpoint(npz, **options)
    if options.get("bf16"):
        assert np.load(npz)[options.get("prefix", "") + "t"].dtype == np.dtype("V2")  # what numpy really returns
    bundle = models.create(preset, device="cpu", weights=str(npz), vocab=str(vocab), check_arch=False)

    pixels = torch.rand(3, 3, GRID * PATCH, GRID * PATCH) * 2 - 1
    images = bundle.model.encode_images(pixels).numpy()
    expected = reference_images(params, pixels.numpy(), options.get("layout", "vit_jax"))
    assert np.abs(images - expected).max() <= 1e-4

    ids = bundle.tokenizer(TEXTS)["input_ids"].numpy()
    assert (ids == 0).any() and (ids[:, 0] == WORDS.index("[CLS]")).all()
    texts = bundle.model.encode_texts(TEXTS).numpy()
    assert np.abs(texts - reference_texts(params, ids)).max() <= 1e-4

    assert bundle.model.logit_scale.item() == pytest.approx(float(params["t"][0]))
    assert bundle.dim == (options.get("img_head") or D)
    assert bundle.model.image_tower.preprocess_config["type"] == "lit"
    assert bundle.preprocess.__class__.__name__ == "LitPreprocess" and bundle.input_size == GRID * PATCH
    bundle.model.assert_locked()


def test_pre_linen_renumbering_uses_natural_order():
    from models.lit_npz import convert_pre_linen, flatten, unflatten

    keys = [f"T/encoderblock_{i}/{m}/x" for i in range(12) for m in PRE_LINEN.values()]
    renamed = flatten(convert_pre_linen(unflatten(dict.fromkeys(keys, 0))))
    expected = {f"T/encoderblock_{i}/{m}/x" for i in range(12) for m in PRE_LINEN}
    assert set(renamed) == expected  # encoderblock_10 and _11 stay after _9; Linen names are unchanged


def test_missing_and_leftover_keys_are_listed(tmp_path, vocab, home):
    npz = tmp_path / "broken.npz"
    params = write_checkpoint(npz)
    params.pop("txt/head/bias")
    params["img/Transformer/encoderblock_0/typo/kernel"] = np.zeros(3, np.float32)
    np.savez(npz, **params)
    with pytest.raises(ValueError) as err:
        models.create("lit-b16b-2", weights=str(npz), vocab=str(vocab), check_arch=False)
    assert "txt/head/bias" in str(err.value) and "encoderblock_0/typo/kernel" in str(err.value)


def test_preset_refuses_a_checkpoint_of_another_architecture(tmp_path, vocab, home):
    npz = tmp_path / "tiny.npz"
    write_checkpoint(npz, img_head=48)
    with pytest.raises(ValueError, match="not a lit-b16b-2 checkpoint.*image_head: 0 vs 48.*check_arch=False"):
        models.create("lit-b16b-2", weights=str(npz), vocab=str(vocab))


def test_second_start_reads_the_converted_cache_not_the_npz(tmp_path, vocab, home, monkeypatch):
    npz = tmp_path / "tiny.npz"
    write_checkpoint(npz, img_head=48)
    first = models.create("lit-b16b", weights=str(npz), vocab=str(vocab), check_arch=False)
    assert list((home / "models" / "lit" / "converted").glob("*.safetensors"))

    def no_parse(*_):
        raise AssertionError("the npz was parsed again")

    monkeypatch.setattr("models.lit_convert.read_npz", no_parse)
    monkeypatch.setattr("models.lit_download.sha256_file", no_parse)  # the checksum is memoised by (size, mtime)
    second = models.create("lit-b16b", weights=str(npz), vocab=str(vocab), check_arch=False)
    assert second.image_tower_id == first.image_tower_id
    assert torch.equal(second.model.encode_texts(TEXTS), first.model.encode_texts(TEXTS))


def test_cached_download_is_verified_then_the_npz_may_go(tmp_path, vocab, home, monkeypatch):
    """A file already in the cache (as a finished download leaves it) loads with download=False, and once
    converted the start needs only its recorded checksum and the safetensors."""
    cache = home / "models" / "lit"
    cache.mkdir(parents=True)
    write_checkpoint(cache / "LiT-B16B_2.npz")
    (cache / "LiT-B16B_2.txt").write_text(vocab.read_text())
    first = models.create("lit-b16b-2", download=False, check_arch=False)
    assert (cache / "LiT-B16B_2.npz.sha256").is_file()
    (cache / "LiT-B16B_2.npz").unlink()
    monkeypatch.setattr("models.lit_convert.read_npz", lambda *_: pytest.fail("npz parsed"))
    second = models.create("lit-b16b-2", download=False, check_arch=False)
    assert second.image_tower_id == first.image_tower_id


def test_offline_without_a_file_explains_the_ways_out(home):
    from models.lit_download import WeightsUnavailable

    with pytest.raises(WeightsUnavailable) as err:
        models.create("lit-b16b-2", download=False)
    message = str(err.value)
    for needle in ("https://storage.googleapis.com/vit_models/lit/LiT-B16B_2.npz", "weights=", "--weights",
                   "offline-lite"):
        assert needle in message


def test_random_init_builds_the_release_architecture_without_files(home):
    bundle = models.create("lit-b16b", random_init=True, device="cpu")
    backbone = bundle.model.image_tower.backbone
    assert bundle.image_tower_id.startswith("vit_base_patch16_224-")
    assert backbone.head.weight.shape == (768, 768) and len(backbone.blocks) == 12  # B16B's img/head
    assert bundle.model.text_tower.encoder.config.num_hidden_layers == 12 and bundle.dim == 768
    assert bundle.tokenizer(["a photo of a cat"])["input_ids"].shape == (1, 16)
    assert not list(home.rglob("*.npz"))
    assert set(models.list_presets()) >= {"lit-b16b-2", "lit-b16b", "lit-l16l", "lit-coco-b16b"}


def test_tuned_text_tower_of_a_lit_preset_saves_and_loads(tmp_path, vocab, home):
    npz = tmp_path / "tiny.npz"
    write_checkpoint(npz, pre_linen=True)
    bundle = models.create("lit-b16b-2", weights=str(npz), vocab=str(vocab), check_arch=False)
    with torch.no_grad():
        bundle.model.text_tower.head[0].bias.add_(0.3)
    loaded = models.create(str(models.save(bundle, tmp_path / "tuned")))
    assert loaded.image_tower_id == bundle.image_tower_id
    assert torch.equal(loaded.model.encode_texts(TEXTS), bundle.model.encode_texts(TEXTS))
    assert loaded.preprocess.__class__.__name__ == "LitPreprocess"
