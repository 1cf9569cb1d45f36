"""Ranking metrics as pure functions over ranked id lists and relevant-id sets.

All functions take `ranked` (best first; ids of any hashable type, or an int array of item
indices) and `relevant` (the held-out items). They return floats in [0, 1]. Binary relevance.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Sequence

import numpy as np


def _top(ranked: Sequence[Hashable] | np.ndarray, k: int) -> list[Hashable]:
    if k <= 0:
        raise ValueError(f"k must be a positive integer, got {k}")
    return list(ranked[:k])


def recall_at_k(
    ranked: Sequence[Hashable] | np.ndarray, relevant: Collection[Hashable], k: int
) -> float:
    """Fraction of the relevant items found in the top k. 0.0 when `relevant` is empty."""
    if not relevant:
        return 0.0
    rel = set(relevant)
    return sum(1 for i in _top(ranked, k) if i in rel) / len(rel)


def precision_at_k(
    ranked: Sequence[Hashable] | np.ndarray, relevant: Collection[Hashable], k: int
) -> float:
    """Relevant items in the top k divided by k."""
    rel = set(relevant)
    return sum(1 for i in _top(ranked, k) if i in rel) / k


def hit_rate_at_k(
    ranked: Sequence[Hashable] | np.ndarray, relevant: Collection[Hashable], k: int
) -> float:
    """1.0 if any relevant item is in the top k, else 0.0."""
    rel = set(relevant)
    return 1.0 if any(i in rel for i in _top(ranked, k)) else 0.0


def ndcg_of_rank(rank: np.ndarray | float, k: int) -> np.ndarray | float:
    """NDCG@k with ONE relevant item at 1-based `rank`: 1/log2(rank+1) inside the top k, else 0.

    The one place the single-item gain is written; vectorised over an array of ranks.
    """
    r = np.asarray(rank, dtype=np.float64)
    out = np.where(r <= k, 1.0 / np.log2(np.maximum(r, 1.0) + 1.0), 0.0)
    return float(out) if out.ndim == 0 else out


def ndcg_at_k(
    ranked: Sequence[Hashable] | np.ndarray, relevant: Collection[Hashable], k: int
) -> float:
    """Binary-relevance NDCG@k: DCG with gain 1/log2(rank+1), divided by the ideal DCG.

    With one relevant item at 1-based rank r <= k this is 1/log2(r+1).
    """
    rel = set(relevant)
    if not rel:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(_top(ranked, k)) if i in rel)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), k)))
    return dcg / idcg


def ranking_metrics_at_k(
    rankings: Iterable[Sequence[Hashable] | np.ndarray],
    relevants: Iterable[Collection[Hashable]],
    ks: Sequence[int] = (10, 20, 50),
) -> dict[str, float]:
    """Mean recall/ndcg/hr/precision at each k over users.

    Args:
        rankings: one ranked list per user (best first), at least max(ks) long where possible.
        relevants: one collection of held-out items per user, aligned with `rankings`.
        ks: cut-offs.

    Returns:
        {"recall@10": .., "ndcg@10": .., "hr@10": .., "precision@10": .., ...} averaged over
        users; {} keys still present (0.0) when there are no users.
    """
    sums: dict[str, float] = {
        f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hr", "precision")
    }
    n = 0
    for ranked, rel in zip(rankings, relevants, strict=True):
        n += 1
        for k in ks:
            sums[f"recall@{k}"] += recall_at_k(ranked, rel, k)
            sums[f"ndcg@{k}"] += ndcg_at_k(ranked, rel, k)
            sums[f"hr@{k}"] += hit_rate_at_k(ranked, rel, k)
            sums[f"precision@{k}"] += precision_at_k(ranked, rel, k)
    return {key: (v / n if n else 0.0) for key, v in sums.items()}


def rank_of(scores: np.ndarray, target: int, *, exclude: np.ndarray | None = None) -> int:
    """1-based rank of `target` under `scores` (higher is better), ties counted pessimistically.

    Args:
        scores: `(n_items,)` float scores.
        target: item index whose rank is wanted.
        exclude: item indices removed from the ranking (the user's seen items).
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    if exclude is not None and len(exclude):
        s[np.asarray(exclude)] = -np.inf
    t = s[target]
    return int(np.sum(s > t) + np.sum(s == t))  # ties: the target ranks after every tied item


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (10, 20, 50)) -> dict[str, float]:
    """Recall/NDCG/HR at each k from 1-based ranks of a single held-out item per user.

    Equivalent to `ranking_metrics_at_k` with one relevant item, but O(users).
    """
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = r <= k
        out[f"recall@{k}"] = float(hit.mean()) if len(r) else 0.0
        out[f"hr@{k}"] = out[f"recall@{k}"]
        out[f"ndcg@{k}"] = float(ndcg_of_rank(r, k).mean()) if len(r) else 0.0
    return out
