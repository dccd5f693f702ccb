"""The tag classifier's mechanics with a transparent fake text encoder: prompt ensembles, the background gate, the
library thresholds, overrides, stored calibrations, and vocabulary parsing (errors name their lines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.tagging import (
    BACKGROUND_PROMPTS,
    MIN_LIBRARY,
    Calibration,
    Tag,
    TagClassifier,
    TagPolicy,
    Vocabulary,
    VocabularyError,
    fit_policy,
)

DIM = 512
FILLER = {"a", "an", "the", "of", "photo", "picture", "image", "snapshot", "random", "ordinary", "scene", "something",
          "object", "thing", "stuff"}


_WORDS: dict[str, int] = {}


def word_vector(word: str) -> np.ndarray:
    """One axis per word (no collisions: axes are handed out in order of first use)."""
    vector = np.zeros(DIM, np.float32)
    vector[_WORDS.setdefault(word, len(_WORDS))] = 1.0
    return vector


def fake_encode(texts: list[str]) -> np.ndarray:
    """Bag of words: content words dominate, filler words ('a photo of') are shared by every prompt."""
    rows = []
    for text in texts:
        words = text.lower().replace(",", " ").split()
        vector = sum((word_vector(w) * (0.3 if w in FILLER else 1.0) for w in words), np.zeros(DIM, np.float32))
        rows.append(vector / np.linalg.norm(vector))
    return np.stack(rows)


def photo_of(*words: str, weight: float = 1.0, seed: int = 0) -> np.ndarray:
    """An 'image' vector close to these words (as if the photo showed them) plus generic photo-ness and noise."""
    rng = np.random.default_rng(seed)
    vector = sum((weight * word_vector(w) for w in words), 0.5 * word_vector("photo"))
    vector = vector + 0.02 * rng.standard_normal(DIM).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


VOCAB = Vocabulary.parse("cat: kitten\ndog: puppy\ncar\nbeach | a day at the {} | sand and sea\n", "test")
SUBJECTS = [("cat",), ("dog",), ("car",), ("beach",), ("zzz",), ("yyy",), ("dog", "beach"), ("xxx",)]


def library(n: int = 24, subjects=SUBJECTS) -> np.ndarray:
    """A small library: each photo shows one entry of `subjects` (most tags are absent from most photos)."""
    return np.stack([photo_of(*subjects[i % len(subjects)], seed=i) for i in range(n)])


@pytest.fixture(scope="module")
def classifier() -> TagClassifier:
    return TagClassifier.build(fake_encode, VOCAB).calibrate(library())


def test_matrix_is_the_renormalised_mean_of_each_tags_prompt_ensemble(classifier):
    assert classifier.names == ("cat", "dog", "car", "beach")
    assert classifier.matrix.shape == (4, DIM) and classifier.background.shape == (len(BACKGROUND_PROMPTS), DIM)
    assert np.allclose(np.linalg.norm(classifier.matrix, axis=1), 1.0, atol=1e-5)
    prompts = VOCAB.tags[0].prompts_for(("a photo of {}", "a photo of a {}", "{}", "a picture of {}"))
    assert len(prompts) == 8 and "a photo of a kitten" in prompts
    expected = fake_encode(prompts).mean(axis=0)
    assert np.allclose(classifier.matrix[0], expected / np.linalg.norm(expected), atol=1e-5)


def test_tag_prompt_overrides_replace_the_templates():
    tag = Vocabulary.parse("beach: seaside | a day at the {} | sand and sea").tags[0]
    assert tag == Tag("beach", ("seaside",), ("a day at the {}", "sand and sea"))
    assert tag.prompts_for(("ignored {}",)) == ["a day at the beach", "a day at the seaside", "sand and sea"]


def test_a_photo_gets_the_tags_that_apply_not_the_top_k(classifier):
    cat, both, nothing = photo_of("cat", seed=50), photo_of("dog", "beach", seed=51), photo_of("www", seed=52)
    tags = classifier.assign(np.stack([cat, both, nothing]))
    assert list(tags[0]) == ["cat"]
    assert set(tags[1]) == {"dog", "beach"}
    assert tags[2] == {}  # nothing in the vocabulary: no tag at all rather than the least bad one
    assert all(0.5 <= p <= 1.0 for row in tags for p in row.values())


def test_top_k_caps_and_threshold_overrides(classifier):
    both = photo_of("dog", "beach", seed=51)
    assert len(classifier.assign(both, top_k=1)[0]) == 1
    # a looser threshold than the policy's bar is ignored: nothing below the bar is ever given
    assert classifier.assign(both, threshold=0.0)[0] == classifier.assign(both)[0]
    loose = classifier.with_policy(TagPolicy(threshold=0.0, max_tags=10))
    everything = loose.assign(both, threshold=0.0)[0]
    assert set(everything) == set(VOCAB.names)
    assert list(everything.values()) == sorted(everything.values(), reverse=True)
    strict = classifier.assign(both, threshold=0.9999)[0]
    assert set(strict) <= set(classifier.assign(both)[0])
    assert classifier.assign(torch.from_numpy(both))[0] == classifier.assign(both)[0]  # tensors are fine too


def test_library_calibration_silences_a_tag_that_fits_every_photo():
    clf = TagClassifier.build(fake_encode, Vocabulary.parse("cat\nsky\ncar\n"))
    # Every photo shows a sky (a generic concept for this library); two of them also show a cat.
    shots = library(MIN_LIBRARY + 10, [("sky", "car"), ("sky", "zzz"), ("sky", "yyy")])
    cats = np.stack([photo_of("sky", "cat", seed=100), photo_of("sky", "cat", seed=101)])
    assert clf.assign(cats) == [{}, {}]  # uncalibrated: no tags rather than guesses
    calibrated = clf.calibrate(np.concatenate([shots, cats]))
    assert calibrated.calibration is not None and calibrated.calibration.library_size == len(shots) + 2
    assert [set(row) for row in calibrated.assign(cats)] == [{"cat"}, {"cat"}]
    assert calibrated.calibration.threshold("sky") > calibrated.calibration.threshold("cat")


def test_too_small_a_library_is_not_calibrated(classifier):
    small = classifier.calibrate(library(MIN_LIBRARY - 1))
    assert small.calibration is None and small.assign(photo_of("cat")) == [{}]
    with pytest.raises(ValueError, match="not calibrated"):
        small.probabilities(photo_of("cat"))


def test_calibration_round_trips_and_is_tied_to_the_classifier(classifier):
    text = classifier.to_json()
    assert Calibration.from_json(text) == classifier.calibration
    uncalibrated = TagClassifier.build(fake_encode, VOCAB)
    restored = uncalibrated.with_calibration(text)
    shots = library()
    assert restored is not None and restored.assign(shots) == classifier.assign(shots)
    other = TagClassifier.build(fake_encode, Vocabulary.parse("cat\ndog\n"))
    assert other.with_calibration(text) is None  # another vocabulary: calibrate again
    assert uncalibrated.with_calibration("{not json") is None
    assert not classifier.calibration.stale(48) and classifier.calibration.stale(49)


def test_default_vocabulary_is_large_and_well_formed():
    vocabulary = Vocabulary.load("default")
    assert len(vocabulary.tags) >= 300 and len(set(vocabulary.names)) == len(vocabulary.names)
    for expected in ("beach", "cat", "dog", "coffee", "sunset", "snow", "birthday party", "night", "car", "pizza"):
        assert expected in vocabulary.names
    assert all(tag.prompts_for(("a photo of {}",)) for tag in vocabulary.tags)


def test_custom_vocabulary_errors_name_every_bad_line(tmp_path):
    path = tmp_path / "tags.txt"
    path.write_text("# my tags\ncat: kitten\n\nbad, name\nCat\ndog: , puppy\nsun | a {} and a {}\nsea |\n:x\n")
    with pytest.raises(VocabularyError) as err:
        Vocabulary.load(path)
    message = str(err.value)
    assert str(path) in message and "6 bad line(s)" in message
    assert "line 4: a tag name may hold only" in message and "'bad, name'" in message  # commas belong after ':'
    assert "line 5: tag 'cat' is already defined on line 2" in message
    assert "line 6: empty synonym" in message
    assert "line 7: prompt 'a {} and a {}' may hold at most one" in message
    assert "line 8: empty prompt" in message and "line 9: no tag name" in message


def test_vocabulary_files_that_cannot_be_used(tmp_path):
    with pytest.raises(VocabularyError, match="no vocabulary file"):
        Vocabulary.load(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(VocabularyError, match="holds no tags"):
        Vocabulary.load(tmp_path / "empty.txt")
    (tmp_path / "odd.txt").write_text("caf\u00e9 racer\nsun/moon\n")
    with pytest.raises(VocabularyError, match="line 2: a tag name may hold only .*'sun/moon'"):
        Vocabulary.load(tmp_path / "odd.txt")  # line 1 is fine: tags may be in any script


def test_policy_bar_handful_and_disabled_tags(classifier):
    both = photo_of("dog", "beach", seed=51)
    open_policy = classifier.with_policy(TagPolicy(threshold=0.0, max_tags=10))
    assert set(open_policy.assign(both)[0]) == set(VOCAB.names)
    capped = classifier.with_policy(TagPolicy(threshold=0.0, max_tags=2))
    assert len(capped.assign(both, top_k=5)[0]) == 2  # top_k cannot loosen the handful either
    without_dog = classifier.with_policy(TagPolicy(disabled=("dog",)))
    assert "dog" not in without_dog.assign(both)[0] and "beach" in without_dog.assign(both)[0]
    strict = classifier.with_policy(TagPolicy(threshold=0.999999))
    assert all(p >= 0.999999 for p in strict.assign(both)[0].values())


def test_fit_policy_disables_a_tag_that_is_given_but_never_right():
    rng = np.random.default_rng(0)
    names = ("cat", "knife", "sky")
    probabilities = rng.uniform(0.0, 0.4, (40, 3))
    right = np.zeros((40, 3), bool)
    right[:10, 0] = True
    probabilities[:10, 0] = rng.uniform(0.7, 1.0, 10)  # cat: given on its ten photos, right
    probabilities[10:20, 1] = rng.uniform(0.6, 0.9, 10)  # knife: given on ten photos, none a knife
    right[20:30, 2] = True
    probabilities[20:30, 2] = np.linspace(0.55, 0.95, 10)  # sky: right where given
    probabilities[30:, 2] = np.linspace(0.5, 0.6, 10)  # ... and given wrongly just above 0.5
    policy = fit_policy(probabilities, right, names, precision=0.9, model="synthetic")
    assert policy.disabled == ("knife",)
    assert 0.5 < policy.threshold <= 0.7
    assert policy.report["precision"] >= 0.9 and policy.report["coverage"] > 0.4
    assert TagPolicy.from_json(policy.to_json()) == policy


def test_a_model_without_its_own_policy_keeps_no_other_models_disabled_tags():
    policy = TagPolicy.for_model("no-such-model")
    assert policy.disabled == () and 0.0 < policy.threshold <= 1.0 and policy.max_tags >= 1
