"""Lists that are not near-duplicates: maximal marginal relevance over the fused item vectors.

Why: a top 5 holding "Hurt sound effect 2" and "Hurt sound effect 4" side by side wastes the
user's attention. MMR (Carbonell & Goldstein, SIGIR 1998) picks each next item by
`(1 - weight) * relevance - weight * (its highest similarity to an item already picked)`, so a
close copy of a listed item has to be much more relevant to be shown next.

Similarity is the cosine of the items' stored vectors in each space (text, image, audio),
averaged with the fusion weights of the spaces both items have: the same notion of "alike" as
the content retriever. Relevance is the list's final score, min-max scaled within the pool.
Intra-list diversity (ILD, Ziegler et al. 2005) is the mean `1 - similarity` over pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from retrieval.fusion import minmax

__all__ = ["fused_similarity", "intra_list_diversity", "mmr_order"]


def fused_similarity(
    ids: Sequence[str],
    vectors: Mapping[str, Mapping[str, np.ndarray]],
    weights: Mapping[str, float],
) -> np.ndarray:
    """`(n, n)` cosine similarity of `ids`, averaged over the spaces each pair shares.

    Args:
        ids: the items, in list order.
        vectors: space -> {item id: vector}; an item missing from a space does not count there.
        weights: space -> fusion weight (spaces with weight <= 0 are ignored).
    Pairs that share no space get similarity 0.
    """
    n = len(ids)
    num = np.zeros((n, n))
    den = np.zeros((n, n))
    for space, by_id in vectors.items():
        w = float(weights.get(space, 0.0))
        have = np.asarray([i in by_id for i in ids], dtype=bool)
        if w <= 0 or not have.any():
            continue
        mat = np.asarray([by_id[i] for i in ids if i in by_id], dtype=np.float64)
        norms = np.linalg.norm(mat, axis=1, keepdims=True)
        full = np.zeros((n, mat.shape[1]))
        full[have] = mat / np.where(norms > 0, norms, 1.0)
        num += w * (full @ full.T)
        den += w * np.outer(have, have)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def mmr_order(relevance: np.ndarray, similarity: np.ndarray, weight: float, k: int) -> list[int]:
    """Indices of the `k` items MMR picks, in pick order (weight 0 = by relevance alone).

    Ties keep the input order, so with weight 0 the result is the first `k` by relevance.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"diversity weight must be in [0, 1], got {weight}")
    rel = minmax(np.asarray(relevance, dtype=np.float64))
    n = len(rel)
    k = min(k, n)
    if n == 0 or k == 0:
        return []
    picked: list[int] = []
    closest = np.full(n, -np.inf)  # each item's highest similarity to a picked one
    free = np.ones(n, dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        gain = (1.0 - weight) * rel - weight * penalty
        gain[~free] = -np.inf
        j = int(np.argmax(gain))  # first maximum: ties keep the input order
        picked.append(j)
        free[j] = False
        closest = np.maximum(closest, similarity[j])
    return picked


def intra_list_diversity(similarity: np.ndarray) -> float:
    """Mean `1 - similarity` over the distinct pairs of a list (0.0 for fewer than 2 items)."""
    n = similarity.shape[0]
    if n < 2:
        return 0.0
    iu = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - similarity[iu]))
