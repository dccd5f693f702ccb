"""Evaluation protocol (zero-shot classifier, Recall@K) and the `models.evaluate` CLI end to end on tiny data."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from models.evaluate import main
from models.model import l2_normalize
from models.retrieval import recall_at_k
from models.zeroshot import build_zeroshot_classifier, canonicalize, class_prompts, topk_accuracy

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 230)}


# ---- protocol units ----

def test_recall_at_k_is_one_for_a_perfectly_separable_toy_case():
    images = torch.eye(3)  # image i points along axis i
    texts = torch.eye(3).repeat_interleave(2, dim=0)  # two captions per image, each along its image's axis
    result = recall_at_k(images, texts, [0, 0, 1, 1, 2, 2])
    assert result == {"image_to_text": {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0},
                      "text_to_image": {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0}}


def test_recall_at_k_counts_misses_in_each_direction():
    images = l2_normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    texts = l2_normalize(torch.tensor([[1.0, 0.1], [1.0, 0.2], [0.9, 1.0]]))  # caption 1 is image 1's but looks like 0
    result = recall_at_k(images, texts, [0, 1, 1], ks=(1, 2))
    assert result["text_to_image"] == {"R@1": pytest.approx(2 / 3), "R@2": 1.0}
    assert result["image_to_text"]["R@1"] == 1.0  # image 1's best caption (2) is one of its own
    with pytest.raises(ValueError, match="captions"):
        recall_at_k(images, texts, [0, 1])


def test_canonicalisation_and_first_alias_follow_big_vision():
    assert canonicalize("Golden_Retriever's  (dog)!") == "golden retrievers dog"
    assert canonicalize("a photo of a {}.", keep="{}") == "a photo of a {}"
    assert class_prompts("Tench, Tinca tinca", ["itap of a {}.", "{}"]) == ["itap of a tench", "tench"]


class _HashTexts:
    """A text encoder we control: each distinct string gets a fixed random unit vector."""

    dim = 8

    def encode_texts(self, texts):
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(hash(t) % 2**31)) for t in texts]
        return l2_normalize(torch.stack(rows))


def test_zeroshot_classifier_is_the_renormalised_mean_of_prompt_embeddings():
    model, templates = _HashTexts(), ["a photo of a {}.", "{}"]
    classifier = build_zeroshot_classifier(model, ["Red_Panda", "tench, Tinca tinca"], templates, batch_size=3)
    expected = l2_normalize(model.encode_texts(["a photo of a red panda", "red panda"]).mean(0, keepdim=True))[0]
    assert classifier.shape == (2, 8) and torch.allclose(classifier[0], expected, atol=1e-6)
    assert torch.allclose(classifier.norm(dim=1), torch.ones(2))
    accuracy = topk_accuracy(classifier[[1, 0, 1]], [1, 0, 0], classifier, ks=(1, 2))
    assert accuracy == {"top1": pytest.approx(2 / 3), "top2": 1.0}


# ---- CLI end to end ----

def _square(path, colour, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture()
def class_tree(tmp_path):
    root = tmp_path / "val"
    for name, colour in COLOURS.items():
        for i in range(2):
            _square(root / name / f"{i}.png", colour, (40 + i, 30))
    (root / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def _run(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_zeroshot_cli_on_class_folders(class_tree, tmp_path, capsys):
    templates = tmp_path / "templates.txt"
    templates.write_text("# two prompts\na photo of a {}.\n{}\n")
    result = _run(capsys, ["zeroshot", str(class_tree), "--model", "test-tiny", "--device", "cpu", "--json",
                           "--no-progress", "--templates", str(templates), "--batch-size", "4"])
    assert result["task"] == "zeroshot" and result["classes"] == 3 and result["templates"] == 2
    assert result["images"] == 6 and result["skipped"] == 1 and "broken.jpg" in result["skipped_examples"][0]["path"]
    assert 0.0 <= result["top1"] <= result["top5"] == 1.0  # 3 classes: the label is always in the top 5


def test_zeroshot_cli_with_a_labels_file_and_limit(class_tree, tmp_path, capsys):
    labels, names = tmp_path / "labels.csv", tmp_path / "names.txt"
    names.write_text("red\ngreen\nblue\n")
    labels.write_text("image,label\n" + "".join(f"{c}/{i}.png,{k}\n" for k, c in enumerate(COLOURS) for i in range(2)))
    result = _run(capsys, ["zeroshot", str(labels), "--classnames", str(names), "--images-root", str(class_tree),
                           "--model", "test-tiny", "--device", "cpu", "--json", "--no-progress", "--limit", "3"])
    assert result["images"] == 3 and result["skipped"] == 0 and result["templates"] == 81


def test_retrieval_cli_scores_a_model_we_control_perfectly(tmp_path, capsys, monkeypatch):
    """Colour words vs mean colour: a separable toy task, so every caption finds its image and back (R@1 = 1),
    and the captions of an unreadable image leave with it."""
    for name, colour in COLOURS.items():
        _square(tmp_path / "img" / f"{name}.png", colour)
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG broken")
    rows = [f"img/{name}.png\t{text} {name} square\n" for name in [*COLOURS, "broken"] for text in ("a", "one")]
    captions = tmp_path / "captions.tsv"
    captions.write_text("image\tcaption\n" + "".join(rows))

    def encode_images(pixels):  # (N, 3) mean colours → one-hot of the dominant channel
        return torch.nn.functional.one_hot(pixels.argmax(dim=1), 3).float()

    def encode_texts(texts):
        return l2_normalize(torch.tensor([[float(c in t) for c in COLOURS] for t in texts]))

    fake = SimpleNamespace(preprocess=lambda im: torch.tensor(im.convert("RGB").getpixel((0, 0)), dtype=torch.float),
                           image_tower_id="colour-1", model=SimpleNamespace(
                               dim=3, encode_images=encode_images, encode_texts=encode_texts))
    monkeypatch.setattr("models.create", lambda *a, **k: fake)
    result = _run(capsys, ["retrieval", str(captions), "--json", "--no-progress", "--model", "colour"])
    assert result["images"] == 3 and result["captions"] == 6 and result["skipped"] == 1
    assert result["image_to_text"]["R@1"] == result["text_to_image"]["R@1"] == 1.0


def test_retrieval_cli_on_a_coco_karpathy_json(tmp_path, capsys):
    entries = []
    for i, (name, colour) in enumerate(COLOURS.items()):
        _square(tmp_path / "coco" / "val2014" / f"COCO_val2014_{i:012d}.jpg", colour)
        entries.append({"filepath": "val2014", "filename": f"COCO_val2014_{i:012d}.jpg", "split": "test",
                        "sentences": [{"raw": f"A {name} square."}, {"raw": f"Something {name}."}]})
    entries.append({"filepath": "train2014", "filename": "x.jpg", "split": "train", "sentences": [{"raw": "no"}]})
    karpathy = tmp_path / "dataset_coco.json"
    karpathy.write_text(json.dumps({"images": entries}))
    result = _run(capsys, ["retrieval", str(karpathy), "--images-root", str(tmp_path / "coco"),
                           "--model", "test-tiny", "--device", "cpu", "--json", "--no-progress"])
    assert result["images"] == 3 and result["captions"] == 6 and result["skipped"] == 0
    assert set(result["image_to_text"]) == set(result["text_to_image"]) == {"R@1", "R@5", "R@10"}
    assert all(0.0 <= v <= 1.0 for d in ("image_to_text", "text_to_image") for v in result[d].values())


def test_cli_reports_user_errors_without_a_traceback(tmp_path, capsys):
    assert main(["zeroshot", str(tmp_path / "labels.csv"), "--model", "test-tiny", "--device", "cpu"]) == 2
    assert "--classnames" in capsys.readouterr().err
