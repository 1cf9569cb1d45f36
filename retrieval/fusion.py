"""Every score fusion, as pure numpy, built so every score decomposes exactly into its parts.

- modalities: per-modality cosines weighted and renormalised (`renormalise`, `profile_vector`,
  `history_contributions`); `space_weights` turns [fusion] modality weights into merge weights;
- candidate sources: per-row min-max, weighted sum (`normalise`, `merge_scores`) or RRF;
- retriever + LLM: `fuse_scores` (alpha-weighted min-max within one request).

Content score of an item for a user = sum over modalities m of w_m * cos(p_m, v_m), where
p_m = sum_h a_h v_m(h) / ||sum_h a_h v_m(h)|| is the user's profile in modality m and the
weights w_m are renormalised over the modalities both sides have. Because p_m is a linear
combination of history vectors, cos(p_m, v_m) splits into one term per history item h:
w_m * a_h * (v_m(h) . v_m) / ||sum_h a_h v_m(h)||. Those terms are what explanations cite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def renormalise(weights: Mapping[str, float], present: Sequence[str]) -> dict[str, float]:
    """Weights of the `present` modalities scaled to sum to 1 (missing modalities drop out)."""
    kept = {m: max(0.0, float(weights.get(m, 0.0))) for m in present}
    total = sum(kept.values())
    return {m: w / total for m, w in kept.items()} if total > 0 else {}


def profile_vector(vectors: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted sum of history vectors and its norm.

    Args:
        vectors: `(h, dim)` float32, L2-normalised history item vectors.
        weights: `(h,)` history weights a_h (negative for dislikes).

    Returns:
        The unnormalised profile `(dim,)` float32 and its L2 norm (0 for an empty history).
    """
    if len(vectors) == 0:
        return np.zeros(vectors.shape[1] if vectors.ndim == 2 else 0, np.float32), 0.0
    raw = (np.asarray(weights, np.float32)[:, None] * vectors).sum(0)
    return raw.astype(np.float32), float(np.linalg.norm(raw))


def history_contributions(
    history_vectors: np.ndarray,
    history_weights: np.ndarray,
    item_vector: np.ndarray,
    modality_weight: float,
) -> np.ndarray:
    """Exact per-history-item terms of `modality_weight * cos(profile, item)`.

    Returns:
        `(h,)` float64 terms whose sum equals the modality's weighted cosine.
    """
    _, norm = profile_vector(history_vectors, history_weights)
    if norm == 0.0:
        return np.zeros(len(history_vectors))
    sims = history_vectors.astype(np.float64) @ item_vector.astype(np.float64)
    return modality_weight * np.asarray(history_weights, np.float64) * sims / norm


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]],
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """RRF: score(i) = sum_r w_r / (k + rank_r(i)), ranks 1-based; robust to score scales."""
    fused: dict[str, float] = {}
    for name, ids in rankings.items():
        w = 1.0 if weights is None else weights.get(name, 0.0)
        for rank, item_id in enumerate(ids, start=1):
            fused[item_id] = fused.get(item_id, 0.0) + w / (k + rank)
    return fused


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] within one request; a constant vector becomes all 0.5."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    lo, hi = float(np.min(s)), float(np.max(s))
    return np.full_like(s, 0.5) if hi - lo < 1e-12 else (s - lo) / (hi - lo)


def fuse_scores(retriever: np.ndarray, llm: np.ndarray, alpha: float) -> np.ndarray:
    """`alpha * minmax(llm) + (1 - alpha) * minmax(retriever)`; `(n,)` in, `(n,)` float64 out."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * minmax(llm) + (1.0 - alpha) * minmax(retriever)


def normalise(scores: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Per-row min-max over unseen, retrieved items -> [0, 1]; NaN (not retrieved) -> 0.

    Args:
        scores: `(m, n)` raw source scores, NaN where not retrieved.
        seen: `(m, n)` bool mask of items excluded from the ranking.
    """
    # in place on one float64 copy: 3-4x fewer passes than temporaries (1M items: docs/scale.md)
    shape = np.broadcast_shapes(np.shape(scores), np.shape(seen))
    s = np.array(np.broadcast_to(scores, shape), dtype=np.float64)  # a copy
    s[np.broadcast_to(seen, shape)] = np.nan
    s[np.isinf(s)] = np.nan  # +-inf count as not retrieved, like NaN
    with np.errstate(all="ignore"):
        lo = np.fmin.reduce(s, axis=1, keepdims=True)  # skips NaN; NaN for an all-NaN row
        hi = np.fmax.reduce(s, axis=1, keepdims=True)
        s -= lo
        s /= hi - lo
    s[~np.isfinite(s)] = 0.0  # not retrieved, seen, constant or absent rows -> 0
    return s


def merge_scores(
    raw: Mapping[str, np.ndarray], seen: np.ndarray, weights: Mapping[str, float]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of normalised sources; seen items get -inf.

    Returns:
        merged `(m, n)` float64 and {source: weight x normalised score} (the exact parts).
    """
    m, n = seen.shape
    merged = np.zeros((m, n))
    contrib: dict[str, np.ndarray] = {}
    for name, s in raw.items():
        w = float(weights.get(name, 0.0))
        if w:
            contrib[name] = w * normalise(s, seen)
            merged += contrib[name]
    merged[seen] = -np.inf
    return merged, contrib


def space_weights(
    weights: Mapping[str, float], modality_weights: Mapping[str, float], spaces: Sequence[str]
) -> dict[str, float]:
    """Merge weights with a `content-<space>` weight for each content space present.

    Image and audio profiles weigh relative to text as the [fusion] modality weights say:
    `content-<s>` = modality_weights[s] x weights["content-text"] (default 0.1), unless the
    weights already name that source.
    """
    out = dict(weights)
    for s in spaces:
        out.setdefault(
            f"content-{s}", float(modality_weights.get(s, 0.0)) * out.get("content-text", 0.1)
        )
    return out
