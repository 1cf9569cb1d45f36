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
from concurrent.futures import Executor
from dataclasses import dataclass

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


# columns per block in `normalise` and the merges: a 64k-wide float64 block (512 KB) and its
# temporaries stay in the CPU cache, so a 1M-item row is read from memory once per source,
# not once per step (docs/scale.md, round 3); the arithmetic per element is unchanged
BLOCK = 1 << 16


def _ranges(scores: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-row min and max over unseen, finite entries (`(m, 1)` float64 each, NaN if none),
    and whether any entry is +-inf.

    Taken in the scores' own float type: casting to float64 is exact and keeps the order,
    so the min of the cast values is the cast of the min.
    """
    m, n = scores.shape
    if m == 1 and n >= SPARSE_MIN_ITEMS and np.issubdtype(scores.dtype, np.floating):
        quick = _row_range(scores[0], seen[0])
        if quick is not None:
            lo, hi = quick
            return np.full((1, 1), lo), np.full((1, 1), hi), False
    kind = scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float64
    lo, hi = np.full((m, 1), np.nan), np.full((m, 1), np.nan)
    has_inf = False
    for a in range(0, n, BLOCK):
        b = np.array(scores[:, a : a + BLOCK], dtype=kind)  # a copy
        b[seen[:, a : a + BLOCK]] = np.nan
        inf = np.isinf(b)
        if inf.any():  # +-inf count as not retrieved, like NaN
            b[inf] = np.nan
            has_inf = True
        lo = np.fmin(lo, np.fmin.reduce(b, axis=1, keepdims=True))  # fmin skips NaN
        hi = np.fmax(hi, np.fmax.reduce(b, axis=1, keepdims=True))
    return lo, hi, has_inf


def _row_range(row: np.ndarray, seen: np.ndarray) -> tuple[float, float] | None:
    """One request's min and max from the row itself, without a masked copy, when provably
    the same as `_ranges`' (else None): no +-inf in the row (then fmin/fmax would return
    them), and the extremes reached by an unseen item, not only by seen ones.
    """
    with np.errstate(all="ignore"):
        lo, hi = float(np.fmin.reduce(row)), float(np.fmax.reduce(row))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None  # +-inf present, or nothing retrieved: the careful path
    idx = np.flatnonzero(seen)
    if len(idx):
        got = row[idx]
        for end in (lo, hi):
            if np.any(got == end) and np.count_nonzero(row == end) <= np.count_nonzero(got == end):
                return None  # only seen items reach this extreme
    return lo, hi


def _scaled(
    scores: np.ndarray,
    seen: np.ndarray | None,
    lo: np.ndarray,
    hi: np.ndarray,
    has_inf: bool = True,
) -> np.ndarray:
    """Min-max of one block with the whole row's ranges, as float64; 0 where not retrieved.

    Seen items become 0 afterwards (`seen` None: left as computed, for a caller that
    overwrites them). One pass per step, no masks: that was most of the merge at 1M items.
    """
    b = np.array(scores, dtype=np.float64)  # a copy
    if has_inf:
        b[np.isinf(b)] = np.nan
    b -= lo
    b /= hi - lo
    # unseen entries are now in [0, 1] (lo <= x <= hi) or NaN: not retrieved, or the 0/0 of
    # a constant row or of a row with nothing retrieved. fmax(NaN, 0) = 0 maps them to 0
    np.fmax(b, 0.0, out=b)
    if seen is not None:
        b[seen] = 0.0
    return b


def normalise(scores: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Per-row min-max over unseen, retrieved items -> [0, 1]; NaN (not retrieved) -> 0.

    Args:
        scores: `(m, n)` raw source scores, NaN where not retrieved.
        seen: `(m, n)` bool mask of items excluded from the ranking.
    """
    shape = np.broadcast_shapes(np.shape(scores), np.shape(seen))
    s, sn = np.broadcast_to(scores, shape), np.broadcast_to(seen, shape)
    out = np.empty(shape)
    with np.errstate(all="ignore"):
        lo, hi, has_inf = _ranges(s, sn)
        for a in range(0, shape[1], BLOCK):
            blk = slice(a, a + BLOCK)
            out[:, blk] = _scaled(s[:, blk], sn[:, blk], lo, hi, has_inf)
    return out


def merge_scores(
    raw: Mapping[str, np.ndarray], seen: np.ndarray, weights: Mapping[str, float]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of normalised sources; seen items get -inf.

    Returns:
        merged `(m, n)` float64 and {source: weight x normalised score} (the exact parts).
    """
    merged, parts, _ = _merge(raw, seen, weights, keep_parts=True)
    return merged, parts


@dataclass
class TopMerge:
    """The best items of a merge with their scores and parts (`merge_top`).

    Attributes:
        ids: `(m, k)` int64 item columns, best first; -1 pads a row with fewer items left.
        scores: `(m, k)` float64 merged scores (-inf at pads), as `merge_scores` gives them.
        parts: {source: `(m, k)` float64 weight x normalised score}; 0 at pads.
    """

    ids: np.ndarray
    scores: np.ndarray
    parts: dict[str, np.ndarray]


def merge_top(
    raw: Mapping[str, np.ndarray],
    seen: np.ndarray,
    weights: Mapping[str, float],
    k: int,
    *,
    pool: Executor | None = None,
) -> TopMerge:
    """`merge_scores` followed by `top_k`, with the parts computed for the top k only.

    Same ids, scores and parts (bit for bit) as `merge_scores` then `top_k`, without a
    `(m, n)` float64 array per source: at 1M items that was most of the merge (docs/scale.md).
    With a `pool`, one request on a large catalogue is merged and cut in two column halves
    at once; every element still sums its sources in the same order, and the top k of the
    two halves' top k is the top k (ties at the cut: see `retrieval.cf.top_k`).
    """
    from retrieval.cf import top_k  # cf never imports fusion: no cycle

    m, n = seen.shape
    halves = _halves(n) if pool is not None and m == 1 else None
    merged, _, ranges = _merge(raw, seen, weights, keep_parts=False, pool=pool, halves=halves)
    if halves is None or pool is None:
        ids, _ = top_k(merged, k)
    else:

        def best(cols: slice) -> np.ndarray:
            got, _ = top_k(merged[:, cols], k)
            return got[got >= 0] + cols.start

        cand = np.concatenate(list(pool.map(best, halves)))
        ids = np.full((1, min(k, n)), -1, np.int64)
        if len(cand):
            sub, _ = top_k(merged[:, cand], k)
            ids[0, : sub.shape[1]] = np.where(sub[0] >= 0, cand[np.maximum(sub[0], 0)], -1)
    cols = np.maximum(ids, 0)
    pad = ids < 0
    scores = np.take_along_axis(merged, cols, axis=1)
    scores[pad] = -np.inf
    parts = {}
    with np.errstate(all="ignore"):
        for name, (w, lo, hi, has_inf) in ranges.items():
            s = np.take_along_axis(np.broadcast_to(raw[name], (m, n)), cols, axis=1)
            part = w * _scaled(s, np.take_along_axis(seen, cols, axis=1), lo, hi, has_inf)
            part[pad] = 0.0
            parts[name] = part
    return TopMerge(ids, scores, parts)


# one request on a large catalogue: a source that scores few items (a content search's pool,
# transitions) is merged on those items only, when a strided sample finds at most this share
SPARSE_SHARE = 0.1
SPARSE_MIN_ITEMS = 1 << 16  # ... on catalogues at least this large (one block)


def _halves(n: int) -> list[slice] | None:
    """Two column ranges split at a block boundary, for catalogues of at least 4 blocks."""
    if n < 4 * BLOCK:
        return None
    mid = (n // 2 // BLOCK) * BLOCK
    return [slice(0, mid), slice(mid, n)]


def _merge(
    raw: Mapping[str, np.ndarray],
    seen: np.ndarray,
    weights: Mapping[str, float],
    *,
    keep_parts: bool,
    pool: Executor | None = None,
    halves: list[slice] | None = None,
) -> tuple[
    np.ndarray, dict[str, np.ndarray], dict[str, tuple[float, np.ndarray, np.ndarray, bool]]
]:
    """Merged scores (one source after another, in cache-sized blocks), parts, and each
    source's ranges.

    Zero-weight sources are skipped. Each element is summed in the order of `raw`, as
    0 + w1 x s1 + w2 x s2 + ..., exactly as one whole-row pass per source would. Without
    parts, a source's items that add exactly 0 (not retrieved, or at the row's minimum) are
    skipped: x + 0 = x, and the sum is never -0 (it starts at +0). With a `pool` and
    `halves`, the halves' columns are summed in two threads (disjoint columns, same order).
    """
    m, n = seen.shape
    merged = np.zeros((m, n))
    active = {
        name: (float(weights.get(name, 0.0)), np.broadcast_to(s, (m, n)))
        for name, s in raw.items()
        if float(weights.get(name, 0.0))
    }
    parts = {name: np.empty((m, n)) for name in active} if keep_parts else {}

    def source_range(name: str) -> tuple[tuple[float, np.ndarray, np.ndarray, bool], bool]:
        """A source's (weight, lo, hi, has_inf), and whether it is merged on its few items."""
        w, s = active[name]
        with np.errstate(all="ignore"):
            lo, hi, has_inf = _ranges(s, seen)
            few = False
            if not keep_parts and m == 1 and n >= SPARSE_MIN_ITEMS:
                sample = s[0][:: max(1, n // 4096)]
                few = bool(np.mean(np.isfinite(sample) & (sample != lo[0, 0])) <= SPARSE_SHARE)
        return (w, lo, hi, has_inf), few

    # each source's range is its own: with a pool, two are taken at once
    got = list((pool.map if pool is not None and halves else map)(source_range, active))
    ranges = {name: r for name, (r, _) in zip(active, got, strict=True)}
    sparse = {name: few for name, (_, few) in zip(active, got, strict=True)}

    def run(cols: slice) -> None:
        with np.errstate(all="ignore"):
            for name, (w, s) in active.items():
                _, lo, hi, has_inf = ranges[name]
                if sparse[name]:
                    row = s[0, cols]
                    live = np.flatnonzero(np.isfinite(row) & (row != lo[0, 0]))
                    # seen items among them get -inf below, like every seen item
                    part = _scaled(row[live][None, :], None, lo, hi, has_inf)
                    part *= w
                    merged[0, live + cols.start] += part[0]
                    continue
                for a in range(cols.start, cols.stop, BLOCK):
                    blk = slice(a, min(a + BLOCK, cols.stop))
                    # seen items need no 0 here: `merged[seen] = -inf` below overwrites them
                    sn = seen[:, blk] if keep_parts else None
                    part = _scaled(s[:, blk], sn, lo, hi, has_inf)
                    part *= w  # = w x normalised, as before
                    if keep_parts:
                        parts[name][:, blk] = part
                    merged[:, blk] += part

    if pool is not None and halves:
        list(pool.map(run, halves))
    else:
        run(slice(0, n))
    merged[seen] = -np.inf
    return merged, parts, ranges


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
