"""models.visual.like_vector: "more like this" reweights a visual query by part; stored vectors stay as they are."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.visual import LIKE_WEIGHTS, PARTS, layout_dims, like_vector, split


def _visual(rng, n: int, features: int = 32) -> np.ndarray:
    layout, fine = layout_dims()
    parts = [rng.normal(size=(n, d)) for d in (features, layout, fine)]
    return np.concatenate([p / np.linalg.norm(p, axis=1, keepdims=True) for p in parts], axis=1) / math.sqrt(3)


def test_stored_vectors_against_the_reweighted_query_rank_by_weighted_part_cosines():
    rng = np.random.default_rng(0)
    stored, query = _visual(rng, 50), _visual(rng, 1)[0]
    weights = {"features": 1.0, "layout": 0.0, "fine": 0.25}
    scores = stored @ like_vector(query, weights)
    parts, q = split(stored), split(query)
    expected = sum(weights[name] * (parts[name] @ q[name]) for name in PARTS)
    np.testing.assert_allclose(scores / scores.max(), expected / expected.max(), rtol=1e-5)  # one positive scale
    assert np.array_equal(np.argsort(-scores), np.argsort(-expected))


def test_the_query_is_unit_and_equal_weights_change_nothing():
    rng = np.random.default_rng(1)
    query = _visual(rng, 3)
    assert np.allclose(np.linalg.norm(like_vector(query), axis=1), 1.0)
    np.testing.assert_allclose(like_vector(query, dict.fromkeys(PARTS, 1.0)), query, atol=1e-6)
    assert LIKE_WEIGHTS["features"] > 0  # the shipped weights rank by something a photo's subject moves


def test_a_query_with_nothing_left_to_rank_by_is_refused():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="weighted 0"):
        like_vector(_visual(rng, 1)[0], dict.fromkeys(PARTS, 0.0))
