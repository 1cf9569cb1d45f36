"""Metrics of the ReDial protocol: ranks, per-sample hits, dialogue-bootstrap intervals.

Samples of one dialogue are not independent (the same conversation, several turns and
targets), so intervals resample whole dialogues; paired differences use the same resamples
for both rows. Means come from `retrieval.metrics.metrics_from_ranks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from retrieval.metrics import metrics_from_ranks, ndcg_of_rank, rank_of

KS = (1, 5, 10, 20, 50)
REPORTED = ("recall@1", "recall@5", "recall@10", "recall@20", "recall@50", "ndcg@10")
BOOTSTRAP = 1000  # dialogue resamples for the intervals


def ranks_for(
    merged: np.ndarray, targets: Sequence[int], excluded: Sequence[np.ndarray]
) -> np.ndarray:
    """1-based rank of each row's target under `merged`, excluded columns removed (ties
    pessimistic), via `retrieval.metrics.rank_of`."""
    return np.array(
        [
            rank_of(merged[r], t, exclude=ex)
            for r, (t, ex) in enumerate(zip(targets, excluded, strict=True))
        ],
        dtype=np.int64,
    )


def per_sample(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample hit/NDCG arrays whose means are `metrics_from_ranks(ranks)`."""
    r = np.asarray(ranks, dtype=np.float64)
    out = {f"recall@{k}": (r <= k).astype(np.float64) for k in KS}
    out["ndcg@10"] = np.asarray(ndcg_of_rank(r, 10), dtype=np.float64)
    return out


def bootstrap_weights(
    groups: Sequence[str], *, n: int = BOOTSTRAP, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Dialogue resampling: `(n, D)` counts of each dialogue per resample, and each sample's
    dialogue index `(S,)`."""
    names, idx = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), size=n)
    return w.astype(np.float64), idx


def interval(values: np.ndarray, boot: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """95% percentile interval of the mean of `values` under dialogue resampling."""
    w, idx = boot
    sums = np.bincount(idx, weights=values, minlength=w.shape[1])
    counts = np.bincount(idx, minlength=w.shape[1]).astype(np.float64)
    means = (w @ sums) / np.maximum(w @ counts, 1.0)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def summarize(ranks: np.ndarray, boot: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Means (from `metrics_from_ranks`) and 95% dialogue-bootstrap intervals."""
    means = metrics_from_ranks(ranks, ks=KS)
    arrays = per_sample(ranks)
    out: dict[str, Any] = {"n": int(len(ranks))}
    for key in REPORTED:
        out[key] = round(means[key], 4)
        out[f"{key}_ci"] = [round(x, 4) for x in interval(arrays[key], boot)]
    return out


def paired(a: np.ndarray, b: np.ndarray, boot: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Mean difference a - b of each metric with its paired 95% interval (same resamples)."""
    pa, pb = per_sample(a), per_sample(b)
    out: dict[str, Any] = {}
    for key in ("recall@10", "ndcg@10", "recall@50"):
        d = pa[key] - pb[key]
        out[key] = {
            "diff": round(float(d.mean()), 4),
            "ci": [round(x, 4) for x in interval(d, boot)],
        }
    return out
