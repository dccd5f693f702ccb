"""Pairs: image-vector lookup, the split by image, and batches with no two captions of one image."""

from __future__ import annotations

import numpy as np
import pytest

from models.train.captions import CaptionRow
from models.train.image_vectors import ChainedSource, NpzVectorSource
from models.train.pairs import PairSet, assemble, epoch_batches, split_by_image


def _pairs(captions_per_image: list[int], dim: int = 4) -> PairSet:
    index = np.repeat(np.arange(len(captions_per_image)), captions_per_image)
    vectors = np.eye(len(captions_per_image), dim, dtype=np.float32)
    return PairSet([f"caption {i}" for i in range(len(index))], index,
                   [f"img{i}" for i in range(len(captions_per_image))], vectors)


@pytest.mark.parametrize("counts, coverage", [([3] * 40, 1.0), ([1] * 50 + [30, 20], 0.85), ([5, 5, 5], 0.8)])
def test_batches_never_hold_two_captions_of_one_image(counts, coverage):
    """Full coverage when images have similar caption counts; a caption-heavy image loses the lone leftovers."""
    pairs = _pairs(counts)
    batches = epoch_batches(pairs.image_index, 16, np.random.default_rng(0))
    for batch in batches:
        images = pairs.image_index[batch]
        assert len(set(images.tolist())) == len(batch) and 2 <= len(batch) <= 16
    seen = np.concatenate(batches)
    assert len(set(seen.tolist())) == len(seen)  # each caption at most once per epoch
    assert len(seen) >= coverage * len(pairs)


def test_batches_are_seeded():
    pairs = _pairs([2] * 30)
    one = epoch_batches(pairs.image_index, 8, np.random.default_rng([7, 1]))
    two = epoch_batches(pairs.image_index, 8, np.random.default_rng([7, 1]))
    other = epoch_batches(pairs.image_index, 8, np.random.default_rng([7, 2]))
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(one, other, strict=False))


def test_split_is_by_image_and_seeded():
    pairs = _pairs([3] * 20)
    train, val = split_by_image(pairs, 0.25, seed=3)
    assert val is not None and val.n_images == 5 and train.n_images == 15 and len(val) == 15
    assert not set(train.image_keys) & set(val.image_keys)
    for part in (train, val):  # every caption still points at its own image's vector
        for caption, image in zip(part.captions, part.image_index, strict=True):
            original = pairs.image_keys[pairs.image_index[pairs.captions.index(caption)]]
            assert part.image_keys[image] == original
            assert np.array_equal(part.image_vectors[image], pairs.image_vectors[pairs.image_keys.index(original)])
    again, _ = split_by_image(pairs, 0.25, seed=3)
    assert again.image_keys == train.image_keys
    assert split_by_image(pairs, 0.0, seed=3)[1] is None


def test_assemble_drops_rows_without_vectors_and_says_why(tmp_path):
    path = tmp_path / "v.npz"
    np.savez(path, keys=np.array(["class:a", "class:b"]), vectors=np.array([[3, 4], [0, 2]], dtype=np.float32))
    rows = [CaptionRow(1, "class:a", "x"), CaptionRow(2, "class:zzz", "y"), CaptionRow(3, "class:b", "z"),
            CaptionRow(4, "class:a", "w")]
    pairs, problems = assemble([(r, r.image) for r in rows], NpzVectorSource(path))
    assert pairs.captions == ["x", "z", "w"] and pairs.image_index.tolist() == [0, 1, 0]
    np.testing.assert_allclose(pairs.image_vectors, [[0.6, 0.8], [0.0, 1.0]], atol=1e-6)  # normalised
    assert [(p.line, p.reason) for p in problems] == [(2, "key not in v.npz: class:zzz")]


def test_npz_per_key_layout_and_dimension_check(tmp_path):
    path = tmp_path / "v.npz"
    np.savez(path, **{"class:a": np.ones(4, np.float32)})
    assert set(NpzVectorSource(path, dim=4).vectors_for(["class:a", "b"])) == {"class:a"}
    with pytest.raises(ValueError, match=r"the model needs \(8,\)"):
        NpzVectorSource(path, dim=8)
    with pytest.raises(ValueError, match="cannot read image vectors"):
        NpzVectorSource(tmp_path / "absent.npz")


def test_chained_source_asks_later_sources_only_for_missing_keys():
    class Fake:
        def __init__(self, known):
            self.known, self.asked = known, []

        def vectors_for(self, keys):
            self.asked.append(list(keys))
            return {k: np.ones(2, np.float32) for k in keys if k in self.known}

        @property
        def skipped(self):
            return {k: f"{sorted(self.known)} lacks it" for batch in self.asked for k in batch if k not in self.known}

    first, second = Fake({"a"}), Fake({"b"})
    chained = ChainedSource([first, second])
    assert set(chained.vectors_for(["a", "b", "c"])) == {"a", "b"}
    assert second.asked == [["b", "c"]]
    # "c" was last looked for in the second source: its reason is the one shown (a corrupt photo says "unreadable",
    # not the index's "not in the index"); found by a breaker pass
    assert chained.skipped["c"] == "['b'] lacks it"


def test_fingerprint_names_the_rows():
    pairs = _pairs([2, 2])
    changed = _pairs([2, 2])
    changed.captions[0] = "something else"
    assert pairs.fingerprint() == _pairs([2, 2]).fingerprint() != changed.fingerprint()
