"""offline-lite's image-space-2 heads, on small random tensors: shapes, unit norm, and the hierarchy's arithmetic."""

from __future__ import annotations

import math

import torch

from models.heads import build_head, head_output_dim
from models.offline_lite import mixing_matrix

CLASS_WEIGHT = math.sqrt(0.75)


def test_image_head_is_a_weighted_pair_of_unit_parts():
    spec = [{"type": "classes_and_features", "in": 6, "classes": 4, "temperature": 2.0, "class_weight": CLASS_WEIGHT}]
    head = build_head(spec)
    head[0].center.fill_(0.5)
    out = head(torch.rand(3, 6))
    assert out.shape == (3, head_output_dim(spec, 6)) == (3, 10)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    classes, features = out[:, :4], out[:, 4:]
    assert torch.allclose((classes / CLASS_WEIGHT).square().sum(1), torch.ones(3), atol=1e-5)  # a distribution
    assert torch.allclose(features.norm(dim=1), torch.full((3,), 0.5), atol=1e-5)


def test_broad_concept_spreads_over_its_member_classes():
    # concepts 0-2 are classes 0-2; concept 3 is a broader word over classes 0 and 1
    spec = [{"type": "concept_space", "in": 4, "concepts": 4, "classes": 3, "features": 5, "temperature": 0.01,
             "class_weight": CLASS_WEIGHT}]
    head = build_head(spec)
    layer = head[0]
    layer.mix.copy_(torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0]]))
    layer.proto.copy_(torch.nn.functional.normalize(torch.rand(3, 5), dim=-1))
    with torch.no_grad():
        layer.concept.weight.copy_(torch.eye(4))
        layer.concept.bias.zero_()
    out = head(torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))  # "the broad word", "class 0"
    assert out.shape == (2, 8) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    probs = (out[:, :3] / CLASS_WEIGHT).square()
    assert torch.allclose(probs[0], torch.tensor([0.5, 0.5, 0.0]), atol=1e-3)  # both members, nothing else
    assert torch.allclose(probs[1], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)
    assert layer.direct.weight.abs().sum() == 0  # zero until tuning moves it
    # a chosen concept distribution goes through the same geometry (bench/offline_eval.py --ceiling asks it)
    chosen = layer.from_concepts(torch.tensor([[0.0, 0.0, 0.0, 1.0]]))
    assert torch.allclose(chosen, out[:1], atol=1e-3)
    assert not any(k.endswith(("mix", "proto")) for k in head.state_dict())  # rebuilt by the preset, not saved


def test_mixing_matrix_rows_are_uniform_over_members():
    mix = mixing_matrix([{"members": [3]}, {"members": [1, 2, 5, 7]}])
    assert mix.shape == (2, 1000)
    assert mix[0, 3] == 1 and mix[0].sum() == 1
    assert torch.allclose(mix[1, [1, 2, 5, 7]], torch.full((4,), 0.25)) and mix[1].sum() == 1


def test_hub_strength_removes_the_shared_class_direction_from_text_only():
    # a flat ("hub") text and a peaked one; photos: one flat, one of class 0
    spec = [{"type": "concept_space", "in": 4, "concepts": 4, "classes": 4, "features": 5, "temperature": 0.01,
             "class_weight": CLASS_WEIGHT}]
    plain, corrected = build_head(spec), build_head([{**spec[0], "hub_strength": 1.0}])
    for head in (plain, corrected):
        head[0].mix.copy_(torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.25, 0.25, 0.25, 0.25]]))
        head[0].proto.copy_(torch.nn.functional.normalize(torch.ones(4, 5), dim=-1))
        with torch.no_grad():
            head[0].concept.weight.copy_(torch.eye(4))
            head[0].concept.bias.zero_()
    texts = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])  # "the flat caption", "class 0"
    before, after = plain(texts), corrected(texts)
    assert torch.allclose(after.norm(dim=1), torch.ones(2), atol=1e-5)
    assert after[:, :4].sum(1).abs().max() < 1e-5  # class part centred (strength 1)
    assert torch.allclose(before[:, 4:] / before[:, 4:].norm(dim=1, keepdim=True),
                          after[:, 4:] / after[:, 4:].norm(dim=1, keepdim=True), atol=1e-5)  # features untouched
    photo_of_class_0 = torch.cat([CLASS_WEIGHT * torch.tensor([0.4, 0.2, 0.2, 0.2]).sqrt(), torch.zeros(5)])  # unsure
    # without the correction the flat caption beats the right one on the class-0 photo; with it, the right one wins
    assert before[0] @ photo_of_class_0 > before[1] @ photo_of_class_0
    assert after[1] @ photo_of_class_0 > after[0] @ photo_of_class_0
