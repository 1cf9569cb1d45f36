"""What diversity costs on ML-100K: NDCG@10 and intra-list diversity per MMR weight.

The product's own path after retrieval: the hybrid retriever's merged scores (default
`HybridConfig` weights) give each user's final order; `[diversity]` MMR
(`retrieval.diversity`) picks the top 10 from its first `pool` items by their scores and the
fused-vector similarity (on ML-100K: MiniLM text vectors of the films). Leave-last-out as in
`fusionrec eval`: validation (second-to-last item) to choose, test (last item) to report.
The request benchmark reports the same trade-off on the media demo (`bench.requests`).

    python -m bench.diversity --out docs/diversity.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
K = 10


def _phase_rows(phase: Any, weights: dict[str, float], vecs: np.ndarray, pool: int) -> dict:
    """Per diversity weight: NDCG@10 of the held-out item and ILD@10 of the shown list."""
    from retrieval.candidates import merge_scores
    from retrieval.diversity import intra_list_diversity, mmr_order
    from retrieval.metrics import ndcg_of_rank

    ndcg: dict[float, list[float]] = {w: [] for w in WEIGHTS}
    ild: dict[float, list[float]] = {w: [] for w in WEIGHTS}
    for sl in phase.chunks():
        raw = phase.gen.score_sources(phase.hist[sl])
        seen = phase.seen(sl)
        merged, _ = merge_scores(raw, seen, weights)
        merged = np.where(seen, -np.inf, merged)
        top = np.argsort(-merged, axis=1, kind="stable")[:, :pool]
        for u, (row, target) in enumerate(zip(top, phase.targets[sl], strict=True)):
            rel = merged[u, row]  # the final scores, best first (as the agent's relevance)
            v = vecs[row]
            sim = v @ v.T
            for w in WEIGHTS:
                picked = mmr_order(rel, sim, w, K)
                shown = row[picked]
                hit = np.flatnonzero(shown == target)
                ndcg[w].append(float(ndcg_of_rank(hit[0] + 1, K)) if hit.size else 0.0)
                ild[w].append(intra_list_diversity(sim[np.ix_(picked, picked)]))
    return {
        str(w): {
            "ndcg@10": round(float(np.mean(ndcg[w])), 4),
            "ild@10": round(float(np.mean(ild[w])), 4),
        }
        for w in WEIGHTS
    }


def run(pool: int = 30, out: str | Path | None = None) -> dict[str, Any]:
    from evaluation.retrieval import _Phase, text_vectors
    from retrieval.candidates import CandidateGenerator
    from retrieval.config import HybridConfig
    from retrieval.datasets.movielens import load_movielens
    from retrieval.encoders import create_encoder
    from retrieval.numpy_index import NumpyIndex

    t0 = time.perf_counter()
    data = load_movielens()
    vecs = text_vectors(data.items, create_encoder("minilm"))
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    index = NumpyIndex({"text": ([it.id for it in data.items], vecs)})
    cfg = HybridConfig()
    report: dict[str, Any] = {"dataset": "ml-100k", "pool": pool, "k": K}
    for name, hold in (("validation", 2), ("test", 1)):
        phase = _Phase(data, hold, CandidateGenerator(index, config=cfg))
        report[name] = _phase_rows(phase, dict(cfg.weights), vecs, pool)
        report[name + "_users"] = len(phase.users)
        logger.info("%s: %s", name, report[name])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if out:
        Path(out).write_text(json.dumps(report, indent=1))
    return report


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| diversity weight | validation NDCG@10 | validation ILD@10 | test NDCG@10 "
        "| test ILD@10 |",
        "|---|---|---|---|---|",
    ]
    for w in report["validation"]:
        v, t = report["validation"][w], report["test"][w]
        lines.append(
            f"| {w} | {v['ndcg@10']:.4f} | {v['ild@10']:.3f} | {t['ndcg@10']:.4f} | "
            f"{t['ild@10']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.diversity", description=__doc__.split("\n")[0]
    )
    p.add_argument("--pool", type=int, default=30, help="items MMR picks the top 10 from")
    p.add_argument("--out", help="JSON report")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(to_markdown(run(args.pool, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
