"""MMR on the final list: near-copies are not shown side by side, weight 0 changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.diversity import fused_similarity, intra_list_diversity, mmr_order


def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


# "hurt-2" and "hurt-4" are near-copies; "piano" and "cat" differ from both and each other
VECTORS = {
    "text": {
        "hurt-2": _unit(1, 0, 0),
        "hurt-4": _unit(0.99, 0.05, 0),
        "piano": _unit(0, 1, 0),
        "cat": _unit(0, 0, 1),
    }
}
IDS = ["hurt-2", "hurt-4", "piano", "cat"]


def test_similarity_is_the_weighted_mean_over_shared_spaces() -> None:
    vectors = {
        "text": {"a": _unit(1, 0), "b": _unit(1, 0)},  # alike in text
        "image": {"a": _unit(1, 0), "b": _unit(0, 1), "c": _unit(0, 1)},  # unlike in image
    }
    sim = fused_similarity(["a", "b", "c"], vectors, {"text": 1.0, "image": 0.5})
    assert sim[0, 1] == pytest.approx((1.0 * 1 + 0.5 * 0) / 1.5)
    assert sim[0, 2] == pytest.approx(0.0)  # only the image space is shared
    assert sim[1, 2] == pytest.approx(1.0)
    assert fused_similarity(["a", "x"], vectors, {"text": 1.0})[0, 1] == 0.0  # nothing shared


def test_mmr_keeps_a_near_copy_out_of_the_next_slot() -> None:
    sim = fused_similarity(IDS, VECTORS, {"text": 1.0})
    relevance = np.asarray([4.0, 3.0, 2.0, 1.0])
    assert mmr_order(relevance, sim, 0.0, 4) == [0, 1, 2, 3]  # weight 0: relevance alone
    picked = mmr_order(relevance, sim, 0.5, 3)
    assert picked[0] == 0 and 1 not in picked[:2]  # "hurt-4" is not second any more
    top3 = [IDS[j] for j in picked]
    assert intra_list_diversity(sim[np.ix_(picked, picked)]) > intra_list_diversity(sim[:3, :3])
    assert set(top3) == {"hurt-2", "piano", "cat"}


def test_mmr_bounds() -> None:
    sim = np.eye(3)
    assert mmr_order(np.ones(3), sim, 0.5, 10) == [0, 1, 2]  # ties keep order; k capped at n
    assert mmr_order(np.ones(0), np.zeros((0, 0)), 0.5, 5) == []
    with pytest.raises(ValueError, match="diversity weight"):
        mmr_order(np.ones(3), sim, 1.5, 2)
    assert intra_list_diversity(np.eye(1)) == 0.0
