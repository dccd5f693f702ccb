"""models.relevance: the scale-free statistic, its tiers, the fit, and where constants are looked up."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models import relevance
from models.relevance import GOOD, POSSIBLE, WEAK, Constants, Thresholds


def test_excess_is_scale_free_and_pays_for_best_of_n():
    rng = np.random.default_rng(0)
    background = rng.normal(0.3, 0.02, 500)
    scores = np.array([0.3, 0.36, 0.5])
    base = relevance.excess(scores, background, 500)
    # any positive affine change of the model's score scale leaves the statistic alone
    np.testing.assert_allclose(relevance.excess(3 * scores - 1, 3 * background - 1, 500), base, atol=1e-9)
    # a bigger library asks more of the same score: its luckiest unrelated photo lands higher
    assert np.all(relevance.excess(scores, background, 50_000) < base)
    gap = base - relevance.excess(scores, background, 50_000)
    np.testing.assert_allclose(gap, math.sqrt(2 * math.log(50_000)) - math.sqrt(2 * math.log(500)))


def test_outliers_do_not_widen_the_spread_they_are_measured_against():
    background = np.concatenate([np.full(90, 0.3) + np.linspace(-0.01, 0.01, 90), np.full(10, 0.9)])
    robust = relevance.excess(np.array([0.9]), background, 100)[0]
    assert robust > 20  # a mean/std z of the same score would be about 3


def test_too_small_a_background_decides_nothing():
    assert relevance.excess(np.array([0.9]), np.array([0.1, 0.2]), 2)[0] == -np.inf
    tiers, calibrated = relevance.decide(np.array([0.9]), np.array([0.1, 0.2]), 2, Thresholds(1.0, 0.0))
    assert tiers == [WEAK] and calibrated[0] == 0.0


def test_tiers_and_calibrated_scores():
    thresholds = Thresholds(good=2.0, possible=0.5)
    assert [thresholds.tier(v) for v in (3.0, 2.0, 1.0, 0.5, -1.0)] == [GOOD, GOOD, POSSIBLE, POSSIBLE, WEAK]
    calibrated = thresholds.calibrated(np.array([2.0, 0.5, 10.0, -10.0]))
    np.testing.assert_allclose(calibrated[:2], [0.5, relevance.POSSIBLE_CALIBRATED])
    assert calibrated[2] > 0.99 and calibrated[3] < 0.01


def test_constants_round_trip_and_lookup_order(tmp_path):
    fitted = Constants(Thresholds(4.0, 1.0), Thresholds(3.0, 0.0), model="custom", image_tower_id="tower/x:1")
    assert Constants.from_json(fitted.to_json()) == fitted
    # nothing fitted in the home: the preset's shipped constants, else offline-lite's
    shipped = relevance.load_constants("offline-lite", "tower/x:1", tmp_path)
    assert shipped.model == "offline-lite" and shipped.fitted_on
    assert relevance.load_constants("no-such-model", "tower/x:1", tmp_path) == shipped
    fitted.save(relevance.constants_path(tmp_path, "tower/x:1"))
    assert relevance.load_constants("offline-lite", "tower/x:1", tmp_path) == fitted
    with pytest.raises(ValueError, match="not a relevance constants file"):
        Constants.from_json('{"format": "other"}')


def test_query_prompts_ensemble_short_queries_only():
    assert relevance.query_prompts("a cat") == ["a cat", "a photo of a cat", "a picture of a cat"]
    assert relevance.query_prompts("a dog running on the beach") == ["a dog running on the beach"]


def _clustered(rng, subjects: int, per: int, dim: int = 64):
    centres = rng.normal(size=(subjects, dim))
    images = np.repeat(centres, per, axis=0) + 0.8 * rng.normal(size=(subjects * per, dim))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    labels = [f"s{i // per}" for i in range(subjects * per)]
    return centres / np.linalg.norm(centres, axis=1, keepdims=True), images, labels


def test_fit_meets_its_precision_target_on_the_data_it_saw():
    rng = np.random.default_rng(1)
    centres, images, labels = _clustered(rng, subjects=12, per=5)
    absent = rng.normal(size=(20, images.shape[1]))
    absent /= np.linalg.norm(absent, axis=1, keepdims=True)
    queries = np.concatenate([centres, absent])
    query_labels = [f"s{i}" for i in range(12)] + [None] * 20
    reference = images[::3]
    constants = relevance.fit(images, labels, queries, query_labels, reference, model="synthetic")
    report = constants.report["text"]["good"]
    assert report["precision"] >= relevance.GOOD_PRECISION
    assert report["nonsense_flagged"] <= relevance.NONSENSE_RATE
    assert report["recall"] > 0.5  # clusters this clear are found
    assert constants.text.possible <= constants.text.good
    assert constants.image.possible <= constants.image.good


def test_calibrator_backs_a_tiny_library_with_the_reference_set_and_splits_text_from_image():
    from search.calibration import Calibrator

    rng = np.random.default_rng(2)
    centres, images, labels = _clustered(rng, subjects=10, per=5)
    library = np.concatenate([images[:5], images[25:30]])  # 10 photos: 5 of subject s0
    reference = images[5:25]
    query = centres[0]
    constants = Constants(Thresholds(good=1.0, possible=0.0), Thresholds(good=50.0, possible=40.0))
    alone = Calibrator(library[:3], np.zeros((0, library.shape[1])), 10, constants)
    assert alone.decide(query, library @ query).tiers == [WEAK] * 10  # 3 background scores: cannot judge
    backed = Calibrator(library, reference, len(library), constants)
    text = backed.decide(query, library @ query, "text")
    assert text.relevant[:5] == [True] * 5 and not any(text.relevant[5:])
    image = backed.decide(query, library @ query, "image")  # same scores, the image thresholds
    assert not any(image.relevant)


def test_visual_thresholds_are_their_own_and_older_files_fall_back_on_the_image_ones():
    older = Constants(Thresholds(4.0, 1.0), Thresholds(3.0, 0.0))
    assert older.thresholds("visual") == older.image  # fitted before "more like this" had its own space
    data = json.loads(older.to_json())
    data.pop("visual")  # a file written before the field existed
    assert Constants.from_json(json.dumps(data)) == older
    newer = Constants(Thresholds(4.0, 1.0), Thresholds(3.0, 0.0), visual=Thresholds(2.5, -1.0))
    assert Constants.from_json(newer.to_json()) == newer
    assert newer.thresholds("visual") == Thresholds(2.5, -1.0) and newer.thresholds("image").good == 3.0


def test_fit_with_visual_vectors_fits_the_reweighted_space_without_a_reference_set():
    from models.visual import layout_dims, like_vector

    rng = np.random.default_rng(3)
    centres, images, labels = _clustered(rng, subjects=12, per=5)
    # visual vectors: features that cluster by subject, thumbnails that are noise (what "more like this" ignores)
    layout, fine = layout_dims()
    parts = [images, rng.normal(size=(len(images), layout)), rng.normal(size=(len(images), fine))]
    visual = np.concatenate([p / np.linalg.norm(p, axis=1, keepdims=True) for p in parts], axis=1) / math.sqrt(3)
    constants = relevance.fit(images, labels, centres, [f"s{i}" for i in range(12)], images[::3], visual=visual)
    assert constants.visual is not None and constants.visual.possible <= constants.visual.good
    report = constants.report["visual"]["good"]
    assert report["precision"] >= relevance.GOOD_PRECISION and report["recall"] > 0.5
    # the fit judged what the engine computes: stored visual vectors against the reweighted query
    query = like_vector(visual[0])
    assert np.isclose(np.linalg.norm(query), 1.0)
    assert relevance.fit(images, labels, centres, [f"s{i}" for i in range(12)], images[::3]).visual is None
