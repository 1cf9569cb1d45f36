"""Ranking metrics on tiny hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retrieval.metrics import (
    hit_rate_at_k,
    metrics_from_ranks,
    ndcg_at_k,
    precision_at_k,
    rank_of,
    ranking_metrics_at_k,
    recall_at_k,
)


def test_single_relevant_item() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, {"c"}, 2) == 0.0
    assert recall_at_k(ranked, {"c"}, 3) == 1.0
    assert hit_rate_at_k(ranked, {"c"}, 3) == 1.0
    assert ndcg_at_k(ranked, {"c"}, 3) == pytest.approx(1 / math.log2(4))
    assert ndcg_at_k(ranked, {"a"}, 1) == 1.0


def test_two_relevant_items() -> None:
    ranked = ["x", "a", "y", "b"]
    assert recall_at_k(ranked, {"a", "b"}, 2) == 0.5
    assert precision_at_k(ranked, {"a", "b"}, 4) == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert ndcg_at_k(ranked, {"a", "b"}, 4) == pytest.approx(dcg / idcg)


def test_empty_relevant_and_bad_k() -> None:
    assert recall_at_k(["a"], set(), 5) == 0.0
    assert ndcg_at_k(["a"], set(), 5) == 0.0
    with pytest.raises(ValueError, match="positive"):
        recall_at_k(["a"], {"a"}, 0)


def test_mean_over_users_matches_ranks() -> None:
    rankings = [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"]]
    relevants = [{"a"}, {"a"}, {"c"}]
    m = ranking_metrics_at_k(rankings, relevants, ks=(1, 2, 3))
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(3)) / 3)
    fast = metrics_from_ranks(np.array([1, 3, 2]), ks=(1, 2, 3))
    for key in ("recall@1", "recall@2", "ndcg@2", "ndcg@3", "hr@3"):
        assert fast[key] == pytest.approx(m[key])


def test_rank_of_excludes_seen_and_counts_ties_against_target() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    assert rank_of(scores, 1) == 3  # tied with item 2: pessimistic
    assert rank_of(scores, 1, exclude=np.array([0])) == 2
    assert rank_of(scores, 3, exclude=np.array([0, 1, 2])) == 1
