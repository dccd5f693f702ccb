"""search.dedupe.collapse: near-duplicates fold into one result, whichever copy ranks first, and a copy that links
two groups joins them (single linkage)."""

from __future__ import annotations

import numpy as np

from search.dedupe import collapse


def _unit(*values: float) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


def test_a_row_matching_two_groups_merges_them_under_the_best_ranked_head():
    crop = _unit(1.0, 0.0, 0.0)
    burst = _unit(0.0, 1.0, 0.0)  # not a near-duplicate of the crop (cosine 0)
    other = _unit(0.0, 0.0, 1.0)
    original = _unit(1.0, 1.0, 0.0)  # cosine 0.71 to both the crop and the burst
    groups = collapse([crop, burst, other, original], 0.7)
    assert groups == [[0, 1, 3], [2]]  # the family is shown once, by its best-ranked copy; the other photo alone


def test_rows_without_a_match_or_a_vector_stay_alone_and_keep_rank_order():
    a, b = _unit(1.0, 0.0), _unit(0.0, 1.0)
    assert collapse([a, None, b, a], 0.9) == [[0, 3], [1], [2]]
    assert collapse([], 0.9) == []
