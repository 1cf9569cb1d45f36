"""LLM rows of the ReDial evaluation: the conversation re-ranker over the hybrid's top N.

The same seeded subsample is ranked three ways: the hybrid retriever, LLM only (the top N
re-ordered by P(Yes) of `agent.rerank.conversation.ConversationReranker`) and fused
(`retrieval.fusion.fuse_scores` with alpha chosen on a validation subsample by
`agent.rerank.tuning.tune_alpha`, which keeps 0 unless the gain is significant). Scores are
cached on disk keyed by a hash of the model and the whole prompt.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.redial_metrics import KS, REPORTED, bootstrap_weights, paired, summarize
from evaluation.redial_state import TurnState
from evaluation.rerank import _ScoreCache
from retrieval.catalogue import Item
from retrieval.datasets.redial import RedialData
from retrieval.metrics import metrics_from_ranks, rank_of

logger = logging.getLogger(__name__)


def prompt_key(model: str, prefix: str, suffixes: Sequence[str]) -> str:
    """Cache key of one LLM request: a hash of the model and the whole prompt (shared prefix +
    every candidate's suffix), so a re-run, or a turn's second target, reuses its scores."""
    return hashlib.sha256("\x00".join([model, prefix, *suffixes]).encode()).hexdigest()


def _llm_context(state: TurnState, titles: Mapping[str, str]) -> Any:
    from agent.rerank.conversation import ConversationContext

    if state.state is not None:
        return ConversationContext.from_state(state.state)
    q = state.query
    return ConversationContext(
        liked=tuple(titles.get(i, i) for i in q.liked_ids),
        disliked=tuple(titles.get(i, i) for i in q.disliked_ids),
        request=q.request_text,
    )


def llm_rows(
    *,
    reranker: Any,
    model_name: str,
    cache_path: Path,
    items: Sequence[Item],
    states: list[TurnState],
    parts: Mapping[str, Any],
    scorers: Mapping[str, Any],
    weights: Mapping[str, float],
    n_val: int,
    n_rep: int,
    top_n: int,
    seed: int,
    max_seconds: float | None,
) -> dict[str, Any]:
    """LLM-only and fused rankings of the hybrid's top `top_n` on seeded subsamples.

    Alpha is chosen on the validation subsample with `agent.rerank.tuning.tune_alpha` (kept
    at 0 unless the gain is significant). Returns per part: retriever/LLM-only/fused ranks
    of the scored samples, their indices in the part, and alpha with its table.
    """
    from agent.rerank.tuning import tune_alpha
    from retrieval.candidates import Candidate
    from retrieval.cf import top_k
    from retrieval.fusion import fuse_scores

    item_map = {it.id: it for it in items}
    titles = {it.id: it.title for it in items}
    ids = [it.id for it in items]
    stats = {"scored_prompts": 0, "cached_prompts": 0, "llm_seconds": 0.0}
    out: dict[str, Any] = {}
    for name, n in (("validation", n_val), ("reported", n_rep)):
        part, scorer = parts[name], scorers[name]
        # each part gets its share of the time; samples go in random order, so whatever is
        # scored before the deadline is itself a random subsample
        share = n / max(n_val + n_rep, 1)
        deadline = time.perf_counter() + max_seconds * share if max_seconds else None
        cache = _ScoreCache(cache_path, reranker, item_map, deadline)  # evaluation.rerank's
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(part.samples), size=min(n, len(part.samples)), replace=False)
        merged = scorer.merged(weights)
        retr_scores, llm_scores, relevant, kept = [], [], [], []
        base_ranks = []
        for k in chosen:
            row = merged[part.turn_rows[k]].astype(np.float64).copy()
            row[part.excluded[k]] = -np.inf
            top, vals = top_k(row[None, :], top_n)
            cols = top[0][top[0] >= 0]
            cands = [
                Candidate(ids[c], float(v), rank=r + 1)
                for r, (c, v) in enumerate(zip(cols, vals[0], strict=False))
            ]
            turn = part.samples[k].turn
            ctx = _llm_context(states[turn], titles)
            prefix = reranker.prefix(ctx)
            suffixes = reranker.suffixes(ctx, cands, item_map)
            key = prompt_key(model_name, prefix, suffixes)
            cached = key in cache.scores
            scores = cache(key, ctx, cands)  # None: past the deadline and not cached
            if scores is None:
                continue
            stats["cached_prompts" if cached else "scored_prompts"] += 1
            kept.append(int(k))
            retr_scores.append(np.array([c.score for c in cands]))
            llm_scores.append(scores)
            relevant.append(cols == part.targets[k])
            base_ranks.append(rank_of(row, int(part.targets[k])))
        out[name] = {"kept": kept, "retr": retr_scores, "llm": llm_scores, "rel": relevant,
                     "ranks": np.array(base_ranks, dtype=np.int64)}  # fmt: skip
        stats["llm_seconds"] += cache.seconds
    val = out["validation"]
    alpha, table = tune_alpha(val["retr"], val["llm"], val["rel"], k=10)
    for d in out.values():
        for label, a in (("llm", 1.0), ("fused", alpha)):
            ranks = d["ranks"].copy()
            for j, (r, llm, rel) in enumerate(zip(d["retr"], d["llm"], d["rel"], strict=True)):
                if rel.any():  # the target is in the top N: its place in the new order
                    order = np.lexsort((np.arange(len(r)), -fuse_scores(r, llm, a)))
                    ranks[j] = int(np.flatnonzero(rel[order])[0]) + 1
            d[f"ranks_{label}"] = ranks
    return {"parts": out, "alpha": alpha, "alpha_table": table, "stats": stats}


def llm_section(
    *,
    data: RedialData,
    states: list[TurnState],
    parts: Mapping[str, Any],
    scorers: Mapping[str, Any],
    weights: Mapping[str, float],
    boot_seed: int,
    n_boot: int,
    model: str | None,
    llm: Any | None,
    n_rep: int,
    n_val: int,
    top_n: int,
    max_seconds: float | None,
    llm_kwargs: Mapping[str, Any] | None,
    cache_dir: Path,
    buckets: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """The LLM rows (same subsample for hybrid, LLM only and fused) and their comparisons."""
    from agent.rerank import create_reranker

    reranker = create_reranker(
        "llm-conversation",
        llm=llm,
        model=model or "qwen2.5-coder-1.5b",
        llm_kwargs=dict(llm_kwargs or {}),
        time_budget_s=None,
        batch_size=top_n,
        # CPU-sized prompt: title (year) and genres per candidate (~18 tokens), no description
        # (the ReDial descriptions repeat year and genres); the app's chat quotes 12 words
        desc_words=0,
    )
    name = (model or getattr(llm, "name", "llm")).replace("/", "_")
    cache_path = cache_dir / f"redial-llm-{name}.jsonl"
    t0 = time.perf_counter()
    res = llm_rows(
        reranker=reranker, model_name=name, cache_path=cache_path, items=data.items, states=states,
        parts=parts, scorers=scorers, weights=weights, n_val=n_val, n_rep=n_rep, top_n=top_n,
        seed=boot_seed, max_seconds=max_seconds,
    )  # fmt: skip
    rep = res["parts"]["reported"]
    part = parts["reported"]
    kept = np.array(rep["kept"], dtype=np.int64)
    rows: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    if len(kept):
        groups = [part.groups[k] for k in kept]
        boot = bootstrap_weights(groups, n=n_boot, seed=boot_seed)
        labels = {
            "ranks": f"hybrid retriever + prior, LLM subsample (n={len(kept)})",
            "ranks_llm": f"LLM only (re-ranks the hybrid + prior's top {top_n})",
            "ranks_fused": f"fused (alpha {res['alpha']:g}, chosen on validation)",
        }
        for key, label in labels.items():
            entry = summarize(rep[key], boot)
            entry["buckets"] = {}
            for b, mask in buckets.items():
                m = mask[kept]
                if m.any():
                    sub = bootstrap_weights([g for g, x in zip(groups, m, strict=True) if x],
                                            n=n_boot, seed=boot_seed)  # fmt: skip
                    entry["buckets"][b] = summarize(rep[key][m], sub)
            entry["weights"] = {"alpha": res["alpha"]} if key != "ranks" else dict(weights)
            rows[label] = entry
        base = labels["ranks"]
        comparisons[f"{labels['ranks_fused']} - {base}"] = paired(
            rep["ranks_fused"], rep["ranks"], boot
        )
        comparisons[f"{labels['ranks_llm']} - {base}"] = paired(
            rep["ranks_llm"], rep["ranks"], boot
        )
    val = res["parts"]["validation"]
    return {
        "rows": rows,
        "comparisons": comparisons,
        "model": model or getattr(llm, "name", "given LLM"),
        "reranker": "llm-conversation (agent/rerank/conversation.py), pointwise P(Yes)",
        "top_n": top_n,
        "alpha": res["alpha"],
        "alpha_table": {str(k): round(v, 4) for k, v in res["alpha_table"].items()},
        "validation_samples_scored": len(val["kept"]),
        "reported_samples_scored": int(len(kept)),
        "validation_llm_only": {
            k: round(v, 4)
            for k, v in metrics_from_ranks(val["ranks_llm"], ks=KS).items()
            if k in REPORTED
        }
        if len(val["kept"])
        else {},
        "stats": {k: round(v, 1) if isinstance(v, float) else v for k, v in res["stats"].items()},
        "seconds": round(time.perf_counter() - t0, 1),
        "cache": str(cache_path),
    }
