"""Leave-last-out, full-ranking evaluation of every retriever, as JSON + a Markdown table.

Protocol: each user's interactions are ordered by timestamp (ties keep file order). The last
one is the test item, the second-to-last the validation item. Models are fit on everything
before the item being predicted; every item the user has not seen is ranked (no sampling),
ties count against the model. Hyper-parameters and merge weights are chosen on validation
only, then everything is refit on train + validation and scored once on test. Deterministic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from evaluation import reports
from evaluation.splits import split_leave_last_out
from retrieval.candidates import (
    CandidateGenerator,
    HybridConfig,
    merge_scores,
    normalise,
)
from retrieval.catalogue import Item
from retrieval.cf import EASE, ItemKNN, Popularity
from retrieval.config import default_home
from retrieval.datasets.movielens import InteractionData, load_movielens, load_user_data
from retrieval.metrics import metrics_from_ranks
from retrieval.numpy_index import NumpyIndex
from retrieval.profiles import History
from retrieval.vector_cache import cached_vectors

logger = logging.getLogger(__name__)

PROTOCOL = "leave-last-out-full"
KS = (10, 20, 50)
REPORTED = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "hr@10", "recall@50")
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
EASE_L2_GRID = (100.0, 200.0, 400.0, 800.0)
KNN_K_GRID = (50, 100, 200)
CHUNK = 256  # users scored at once


def text_vectors(
    items: Sequence[Item], encoder: Any, *, cache_dir: Path | None = None
) -> np.ndarray:
    """`(n, dim)` float32 unit vectors of `item.text()`, cached as .npy keyed by encoder + texts."""
    texts = [it.text() for it in items]
    cfg = json.dumps(encoder.get_config(), sort_keys=True)
    key = hashlib.sha256("\x00".join([cfg, *texts]).encode()).hexdigest()[:16]
    path = (cache_dir or default_home() / "cache") / f"text-{key}.npy"
    return cached_vectors(path, lambda: encoder.encode(texts, batch_size=64), rows=len(texts))


def _histories(train: pd.DataFrame, users: Sequence[str]) -> list[History]:
    groups = {u: g for u, g in train.groupby("user_id", sort=False)}
    return [
        History(
            g["item_id"].tolist(),
            g["rating"].astype(float).tolist(),
            g["timestamp"].astype(int).tolist(),
        )
        for g in (groups[u] for u in users)
    ]


def _ranks(scores: np.ndarray, seen: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among unseen items; ties count against the target."""
    s = np.where(seen, -np.inf, scores.astype(np.float64))
    t = s[np.arange(len(targets)), targets][:, None]
    return (s > t).sum(1) + (s == t).sum(1)


class _Phase:
    """One split (validation or test): fitted generator, histories, targets, seen masks."""

    def __init__(self, data: InteractionData, hold: int, gen: CandidateGenerator) -> None:
        train, target = split_leave_last_out(data.interactions, hold)
        t0 = time.perf_counter()
        self.gen = gen.fit(train, [it.id for it in data.items])
        self.fit_s = time.perf_counter() - t0
        self.users = target["user_id"].tolist()
        self.hist = _histories(train, self.users)
        self.targets = target["item_id"].map(gen._pos).to_numpy(np.int64)
        rows = pd.factorize(train["user_id"])
        uix = {u: k for k, u in enumerate(rows[1])}
        binary = sp.csr_matrix(
            (np.ones(len(train), np.float32), (rows[0], train["item_id"].map(gen._pos))),
            shape=(len(rows[1]), gen.n_items),
        )
        self.binary = binary
        self.user_rows = np.array([uix[u] for u in self.users], dtype=np.int64)

    def chunks(self, limit: int | None = None) -> list[slice]:
        n = len(self.users) if limit is None else min(limit, len(self.users))
        return [slice(a, min(a + CHUNK, n)) for a in range(0, n, CHUNK)]

    def seen(self, sl: slice) -> np.ndarray:
        return self.binary[self.user_rows[sl]].toarray() > 0


def _score_model(
    phase: _Phase, fn: Callable[[slice], np.ndarray], limit: int | None = None
) -> np.ndarray:
    return np.concatenate(
        [_ranks(fn(sl), phase.seen(sl), phase.targets[sl]) for sl in phase.chunks(limit)]
    )


def _ndcg10(ranks: np.ndarray) -> float:
    return metrics_from_ranks(ranks, ks=(10,))["ndcg@10"]


def tune_weights(
    norm: dict[str, np.ndarray],
    seen: np.ndarray,
    targets: np.ndarray,
    *,
    anchor: str = "ease",
    rounds: int = 2,
) -> tuple[dict[str, float], float]:
    """Coordinate ascent on validation NDCG@10 over `WEIGHT_GRID`, anchor source fixed at 1.

    Args:
        norm: {source: `(m, n)` normalised scores} (see `candidates.normalise`).
        seen: `(m, n)` bool; targets: `(m,)` item index of each validation item.

    Returns:
        (weights, best validation NDCG@10).
    """
    if anchor not in norm:
        anchor = next(iter(norm))
    w = {k: (1.0 if k == anchor else 0.0) for k in norm}

    def objective(weights: dict[str, float]) -> float:
        total = sum(weights[k] * norm[k] for k in norm if weights[k])
        return _ndcg10(_ranks(total, seen, targets))

    best = objective(w)
    for _ in range(rounds):
        improved = False
        for name in norm:
            if name == anchor:
                continue
            for g in WEIGHT_GRID:
                cand = dict(w, **{name: g})
                score = objective(cand)
                if score > best + 1e-6:
                    best, w, improved = score, cand, True
        if not improved:
            break
    return w, best


def _load(
    dataset: str | None, interactions: str | Path | None, items: str | Path | None
) -> InteractionData:
    if interactions is not None or items is not None:
        if interactions is None or items is None:
            raise ValueError("evaluating your own data needs both --interactions and --items")
        return load_user_data(interactions, items)
    if dataset in (None, "ml-100k"):
        return load_movielens()
    raise ValueError(
        f"unknown dataset '{dataset}'; valid: ml-100k (or pass interactions + items files)"
    )


def run_eval(
    *,
    dataset: str | None = "ml-100k",
    interactions: str | Path | None = None,
    items: str | Path | None = None,
    out: str | Path | None = None,
    config: HybridConfig | None = None,
    text_encoder: Any | None = None,
    cache_dir: Path | None = None,
    max_tune_users: int = 2000,
) -> dict[str, Any]:
    """Evaluate popularity, ItemKNN, EASE, content-text and the hybrid in one deterministic run.

    Args:
        dataset: "ml-100k" (ignored when `interactions`/`items` are given).
        interactions, items: a user's own interaction log and catalogue (see `load_user_data`).
        out: JSON path; a Markdown table is written next to it (same name, `.md`).
        config: hybrid hyper-parameters; merge weights are re-tuned on validation.
        text_encoder: encoder for item texts; default `create_encoder("minilm")`.
        cache_dir: where item text vectors are cached; default `<home>/cache`.
        max_tune_users: validation users used for tuning (the first ones, deterministic).

    Returns:
        {"dataset", "protocol", "users", "models": {name: {metric: value, "seconds": s}}, ...}.

    Raises:
        CatalogueError: the user's files are unusable (see `load_user_data`).
    """
    t_start = time.perf_counter()
    data = _load(dataset, interactions, items)
    if text_encoder is None:
        from retrieval.encoders import create_encoder

        text_encoder = create_encoder("minilm")
    vecs = text_vectors(data.items, text_encoder, cache_dir=cache_dir)
    index = NumpyIndex({"text": ([it.id for it in data.items], vecs)})
    cfg = config or HybridConfig()
    limit = max(200, min(max_tune_users, 50_000_000 // max(1, len(data.items) * 8)))

    # ---- validation: choose baselines' hyper-parameters and the hybrid's merge weights
    val = _Phase(data, 2, CandidateGenerator(index, config=cfg))
    val_scores: dict[str, float] = {}
    best_l2 = max(
        EASE_L2_GRID, key=lambda l2: _tuned(val, EASE(l2), val_scores, f"ease(l2={l2:g})", limit)
    )
    best_k = max(
        KNN_K_GRID,
        key=lambda k: _tuned(val, ItemKNN(k, 10.0), val_scores, f"itemknn(k={k})", limit),
    )
    tune_rows = val.chunks(limit)
    sl = slice(0, tune_rows[-1].stop)
    raw = val.gen.score_sources(val.hist[sl])
    seen = val.seen(sl)
    norm = {k: normalise(v, seen).astype(np.float32) for k, v in raw.items()}
    weights, val_best = tune_weights(norm, seen, val.targets[sl])
    val_scores["hybrid"] = val_best
    del raw, norm
    logger.info(
        "validation: ease l2=%g, itemknn k=%d, weights %s (ndcg@10 %.4f)",
        best_l2,
        best_k,
        weights,
        val_best,
    )

    # ---- test: refit on train + validation, score every model once
    test = _Phase(data, 1, CandidateGenerator(index, config=cfg))
    results: dict[str, dict[str, float]] = {}
    for name, model in (
        ("popularity", Popularity()),
        ("itemknn", ItemKNN(best_k, 10.0)),
        ("ease", EASE(best_l2)),
    ):
        t0 = time.perf_counter()
        model.fit(test.binary)
        ranks = _score_model(test, lambda s, m=model: m.score(test.binary[test.user_rows[s]]))
        results[name] = _row(ranks, time.perf_counter() - t0)
    per_source: dict[str, list[np.ndarray]] = {}
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    hybrid_ranks = []
    hybrid_cf_ranks = []
    cf_weights = {k: v for k, v in weights.items() if not k.startswith("content-")}
    for sl in test.chunks():
        raw = test.gen.score_sources(test.hist[sl], timings=timings)
        seen = test.seen(sl)
        merged, _ = merge_scores(raw, seen, weights)
        hybrid_ranks.append(_ranks(merged, seen, test.targets[sl]))
        hybrid_cf_ranks.append(
            _ranks(merge_scores(raw, seen, cf_weights)[0], seen, test.targets[sl])
        )
        for k, v in raw.items():
            per_source.setdefault(k, []).append(
                _ranks(np.nan_to_num(v, nan=-np.inf), seen, test.targets[sl])
            )
    hybrid_s = test.fit_s + time.perf_counter() - t0
    if "content-text" in per_source:
        results["content-text"] = _row(
            np.concatenate(per_source.pop("content-text")), timings["content-text"]
        )
    results["hybrid"] = _row(np.concatenate(hybrid_ranks), hybrid_s)
    results["hybrid-no-content"] = _row(np.concatenate(hybrid_cf_ranks), None)
    for k, v in per_source.items():  # each source alone, as the hybrid sees it (ablation)
        results[f"source:{k}"] = _row(np.concatenate(v), timings.get(k))

    report = {
        "dataset": data.name,
        "protocol": PROTOCOL,
        "users": len(test.users),
        "items": len(data.items),
        "dropped_users": data.dropped_users,
        "data_notes": data.notes() if hasattr(data, "notes") else {},
        "models": results,
        "tuned_on_validation": {
            "ease_l2": best_l2,
            "itemknn_k": best_k,
            "hybrid_weights": weights,
            "validation_ndcg@10": {k: round(v, 4) for k, v in val_scores.items()},
        },
        "seconds_total": round(time.perf_counter() - t_start, 2),
    }
    if out is not None:
        write_report(report, out)
    return report


def _tuned(phase: _Phase, model: Any, log: dict[str, float], name: str, limit: int) -> float:
    model.fit(phase.binary)
    score = _ndcg10(
        _score_model(phase, lambda s: model.score(phase.binary[phase.user_rows[s]]), limit)
    )
    log[name] = score
    return score


def _row(ranks: np.ndarray, seconds: float | None) -> dict[str, float]:
    m = metrics_from_ranks(ranks, ks=KS)
    row = {k: round(m[k], 4) for k in REPORTED}
    if seconds is not None:
        row["seconds"] = round(seconds, 2)
    return row


def to_markdown(report: dict[str, Any]) -> str:
    """The report's models as a Markdown table (one row per model)."""
    cols = [*REPORTED, "seconds"]
    lines = [
        f"Dataset `{report['dataset']}`, protocol `{report['protocol']}`, {report['users']} users "
        f"(full ranking over every unseen item).",
        "",
        "| model | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for name, row in report["models"].items():
        cells = [
            f"{row[c]:.4f}" if c != "seconds" else (f"{row[c]:.1f}" if c in row else "")
            for c in cols
            if c in row or c == "seconds"
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write `out` (JSON) and the Markdown table beside it; returns both paths."""
    return reports.write_report(report, out, to_markdown)
