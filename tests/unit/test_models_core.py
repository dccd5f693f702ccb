"""The model core: presets build offline, encodings are unit vectors, the image tower is locked, save/load."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import models
from models.model import assert_unit_norm


def _images(bundle, n=3):
    colours = ["red", "green", "blue", "white", "black"]
    return torch.stack([bundle.preprocess(Image.new("RGB", (97 + 13 * i, 61), colours[i % 5])) for i in range(n)])


@pytest.mark.parametrize("fixture", ["tiny_bundle", "lite_bundle"])
def test_presets_encode_unit_vectors(fixture, request):
    bundle = request.getfixturevalue(fixture)
    images = bundle.model.encode_images(_images(bundle))
    texts = bundle.model.encode_texts(["a photo of a cat", "a red car", ""])
    assert images.shape == (3, bundle.dim) and texts.shape == (3, bundle.dim)
    assert images.dtype == texts.dtype == torch.float32
    assert_unit_norm(images)
    assert_unit_norm(texts)
    assert bundle.model.encode_texts([]).shape == (0, bundle.dim)


def test_list_presets_names_every_builtin():
    names = set(models.list_presets())
    assert {"offline-lite", "test-tiny"} <= names


def test_unknown_preset_lists_known_names():
    with pytest.raises(KeyError, match="offline-lite"):
        models.create("no-such-model")


@pytest.mark.parametrize("fixture", ["tiny_bundle", "lite_bundle"])
def test_image_tower_is_locked(fixture, request):
    model = request.getfixturevalue(fixture).model
    assert not [n for n, p in model.image_tower.named_parameters() if p.requires_grad]
    model.train()
    assert not model.image_tower.training and model.text_tower.training
    model.assert_locked()
    model.eval()


def test_batch_norm_statistics_do_not_move_in_train_mode(tiny_bundle):
    model = tiny_bundle.model
    before = {k: v.clone() for k, v in model.image_tower.state_dict().items()}
    model.train()
    with torch.no_grad():
        model.image_tower(torch.randn(4, 3, 160, 160) * 5 + 3)
    model.eval()
    after = model.image_tower.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_encode_images_refuses_an_unlocked_tower():
    bundle = models.create("test-tiny")
    bundle.model.image_tower.requires_grad_(True)
    with pytest.raises(AssertionError, match="not locked"):
        bundle.model.encode_images(_images(bundle, 1))


def test_test_tiny_is_deterministic_across_builds(tiny_bundle):
    again = models.create("test-tiny")
    assert again.image_tower_id == tiny_bundle.image_tower_id
    texts = ["a dog", "the sea"]
    assert torch.allclose(again.model.encode_texts(texts), tiny_bundle.model.encode_texts(texts))


def test_image_tower_id_tracks_weights(tiny_bundle):
    other = models.create("test-tiny", seed=99)
    assert other.image_tower_id != tiny_bundle.image_tower_id
    assert tiny_bundle.image_tower_id.startswith("test_efficientnet-")


def test_preprocess_comes_from_the_tower_config(lite_bundle, tiny_bundle):
    lite_cfg = lite_bundle.model.image_tower.preprocess_config
    assert lite_cfg["input_size"] == [3, 224, 224] and lite_cfg["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert lite_bundle.preprocess(Image.new("RGB", (640, 480))).shape == (3, 224, 224)
    assert tiny_bundle.preprocess(Image.new("RGB", (640, 480))).shape == (3, 160, 160)
    assert lite_bundle.input_size == 224


@pytest.mark.parametrize("parts", ["text", "all"])
def test_save_load_round_trip(tmp_path, parts):
    bundle = models.create("test-tiny")
    with torch.no_grad():  # make the saved text tower differ from the preset's
        bundle.model.text_tower.head[0].weight.add_(0.5)
        bundle.model.logit_scale.fill_(3.0)
    target = models.save(bundle, tmp_path / "tuned", parts=parts, metadata={"note": "x"})
    loaded = models.create(str(target))
    texts = ["a red square", "blue stripes"]
    assert torch.equal(loaded.model.encode_texts(texts), bundle.model.encode_texts(texts))
    pixels = _images(bundle, 2)
    assert torch.equal(loaded.model.encode_images(pixels), bundle.model.encode_images(pixels))
    assert loaded.model.logit_scale.item() == 3.0
    assert loaded.image_tower_id == bundle.image_tower_id and loaded.metadata["note"] == "x"
    loaded.model.assert_locked()


def test_text_only_save_is_small_and_refuses_overwrite(tmp_path):
    bundle = models.create("test-tiny")
    target = models.save(bundle, tmp_path / "t")
    from safetensors.torch import load_file

    keys = load_file(str(target / "model.safetensors"))
    assert keys and all(k.startswith(("text_tower.", "logit_scale")) for k in keys)
    with pytest.raises(FileExistsError):
        models.save(bundle, tmp_path / "t")


def test_load_refuses_weights_of_another_architecture(tmp_path):
    from models.saved import load_partial_state

    bundle = models.create("test-tiny")
    with pytest.raises(KeyError, match="typo"):
        load_partial_state(bundle.model, {"text_tower.nonsense": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape mismatch"):
        load_partial_state(bundle.model, {"logit_scale": torch.zeros(3)})


def test_custom_towers_from_local_dirs():
    from models.offline_lite import minilm_dir

    bundle = models.create(f"timm:test_vit+hf:{minilm_dir()}", pretrained=False)
    out = bundle.model.encode_texts(["hello"])
    assert out.shape == (1, bundle.model.image_tower.output_dim) == (1, 64)
    assert_unit_norm(bundle.model.encode_images(_images(bundle, 2)))
    with pytest.raises(ValueError, match="timm:<arch>"):
        models.create("timm:test_vit")


def test_offline_lite_image_tower_is_imagenet_trained(lite_bundle):
    """scikit-image's `chelsea` is a tabby cat: a cat class (ImageNet 281-285) must be in the top 3."""
    from skimage import data

    image = Image.fromarray(data.chelsea())
    pixels = lite_bundle.preprocess(image)[None]
    tower = lite_bundle.model.image_tower
    with torch.no_grad():
        logits = tower.head[0](tower.backbone(pixels))  # the ImageNet classifier of the loaded weights
    top3 = logits.topk(3).indices[0].tolist()
    assert set(top3) & set(range(281, 286)), top3


def test_cpu_device_is_default_here_and_cuda_request_is_clear():
    from models.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device(None).type == "cpu"
    with pytest.raises(RuntimeError, match="--device cpu"):
        resolve_device("cuda")
