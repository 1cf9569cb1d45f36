"""Evaluate the LLM re-ranker on MovieLens-100K, as JSON + a Markdown table.

Two protocols, both leave-last-out by timestamp (the retriever is fit on everything before the
predicted item; see `evaluation.retrieval`):

- **sampled** (the LLM re-ranking literature's): per user 20 candidates = the held-out item +
  19 random unseen items (fixed seed), NDCG@1/5/10 for random (exact expectation),
  retriever-only (the hybrid retriever's scores of those 20), LLM-only and fused;
- **full**: the hybrid retriever's top-20 over all unseen items re-ranked; NDCG@10 of the
  retriever's order vs the fused order (users whose item is not in the top-20 score 0 in both).

The fusion weight `alpha` is tuned on *validation* users (a disjoint sample, predicting each
user's second-to-last item with the retriever fit before it) and applied unchanged to test
users. LLM scores are appended to a JSONL cache per run so an interrupted run resumes, and
`max_seconds` stops scoring new users (the report says how many were scored).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agent.rerank import Reranker, UserContext, create_reranker
from agent.rerank.base import order_by
from agent.rerank.tuning import ALPHA_GATE_Z, best_alpha, tune_alpha
from evaluation import reports
from retrieval.candidates import Candidate
from retrieval.config import RATING_SCALE
from retrieval.fusion import fuse_scores
from retrieval.metrics import ndcg_of_rank

logger = logging.getLogger(__name__)

KS = (1, 5, 10)
MOVIELENS_PROMPTS = ("rerank_system", "rerank_pointwise", "rerank_listwise")
LIKE = RATING_SCALE.like_min  # ratings >= this are "liked" in the prompt
DISLIKE = RATING_SCALE.dislike_max  # ratings <= this are "disliked"


def random_ndcg(n: int, k: int) -> float:
    """Exact expected NDCG@k of a random order of `n` candidates with one relevant item."""
    return float(ndcg_of_rank(np.arange(1, min(n, k) + 1), k).sum() / n)


def user_context(
    hist: pd.DataFrame, titles: dict[str, str], *, max_history: int, user_id: str
) -> UserContext:
    """Liked (rating >= 4, most recent last) and disliked titles from one user's training rows."""
    liked = [
        (titles[i], float(r))
        for i, r in zip(hist["item_id"], hist["rating"], strict=True)
        if r >= LIKE
    ]
    if not liked:  # users who rate everything low: their best-rated items stand in
        top = hist.sort_values("rating", kind="stable").tail(max_history)
        liked = [(titles[i], float(r)) for i, r in zip(top["item_id"], top["rating"], strict=True)]
    disliked = [
        titles[i] for i, r in zip(hist["item_id"], hist["rating"], strict=True) if r <= DISLIKE
    ]
    return UserContext(
        liked=tuple(liked[-max_history:]), disliked=tuple(disliked[-5:]), user_id=user_id
    )


class _Split:
    """Retriever fit on each user's interactions before the `hold`-th from last."""

    def __init__(self, data: Any, hold: int, users: Sequence[str], index: Any) -> None:
        from evaluation.splits import split_leave_last_out
        from retrieval.candidates import CandidateGenerator, HybridConfig, merge_scores
        from retrieval.profiles import History

        train, target = split_leave_last_out(data.interactions, hold)
        gen = CandidateGenerator(index, config=HybridConfig()).fit(
            train, [it.id for it in data.items]
        )
        groups = {u: g for u, g in train.groupby("user_id", sort=False)}
        self.hist = {u: groups[u] for u in users}
        self.target = dict(zip(target["user_id"], target["item_id"], strict=True))
        histories = [
            History(
                g["item_id"].tolist(),
                g["rating"].astype(float).tolist(),
                g["timestamp"].astype(int).tolist(),
            )
            for g in (self.hist[u] for u in users)
        ]
        raw = gen.score_sources(histories)
        self.seen = gen.seen_mask(histories)
        self.scores, _ = merge_scores(raw, self.seen, dict(gen.config.weights))
        self.item_ids = gen.item_ids
        self.row = {u: k for k, u in enumerate(users)}

    def sampled(self, user: str, rng: np.random.Generator, n: int) -> list[Candidate]:
        r = self.row[user]
        pos = {i: k for k, i in enumerate(self.item_ids)}
        t = pos[self.target[user]]
        pool = np.flatnonzero(~self.seen[r])
        pool = pool[pool != t]
        picked = np.concatenate([[t], rng.choice(pool, n - 1, replace=False)])
        rng.shuffle(picked)  # the LLM sees no order that leaks the held-out item
        return self._cands(r, picked)

    def top(self, user: str, n: int) -> list[Candidate]:
        r = self.row[user]
        s = np.where(self.seen[r], -np.inf, self.scores[r])
        return self._cands(r, np.argsort(-s, kind="stable")[:n])

    def _cands(self, r: int, cols: np.ndarray) -> list[Candidate]:
        s = self.scores[r, cols].astype(np.float64)
        rank = np.empty(len(cols), int)
        rank[order_by(s)] = np.arange(1, len(cols) + 1)
        return [
            Candidate(self.item_ids[c], float(v), {"hybrid": float(v)}, int(k))
            for c, v, k in zip(cols, s, rank, strict=True)
        ]


def _fingerprint(reranker: Reranker) -> str:
    """Changes whenever the prompts or the prompt settings do, so a cache never mixes them."""
    import hashlib

    from agent.prompting import prompts_dir

    h = hashlib.sha256()
    for name in MOVIELENS_PROMPTS:  # only the prompts these rerankers read
        h.update((prompts_dir() / f"{name}.txt").read_bytes())
    h.update(
        repr(
            [
                reranker.max_history,
                reranker.max_desc_chars,
                reranker.max_tags,
                reranker.short_titles,
            ]
        ).encode()
    )
    return h.hexdigest()[:10]


def _score_user(
    llm_scores: _ScoreCache,
    kind: str,
    key: str,
    ctx: UserContext,
    by_proto: dict[str, list[Candidate]],
) -> dict[str, np.ndarray] | None:
    """LLM scores of each protocol's candidates for one user. Pointwise scores do not depend on
    the other candidates, so the union of the protocols' candidates is scored in one request
    (the history prefix once); listwise scores do, so each protocol is its own request."""
    if kind != "llm-pointwise":
        out = {p: llm_scores(f"{key}/{p}", ctx, c) for p, c in by_proto.items()}
        return None if any(v is None for v in out.values()) else out
    union = list({c.item_id: c for cands in by_proto.values() for c in cands}.values())
    scores = llm_scores(f"{key}/union", ctx, union)
    if scores is None:
        return None
    by_id = dict(zip([c.item_id for c in union], scores, strict=True))
    return {p: np.array([by_id[c.item_id] for c in cands]) for p, cands in by_proto.items()}


def _ndcgs(order_ids: list[str], target: str) -> dict[str, float]:
    rank = order_ids.index(target) + 1 if target in order_ids else 10**9
    return {f"ndcg@{k}": float(ndcg_of_rank(rank, k)) for k in KS}


class _ScoreCache:
    """LLM scores per request key, appended to a JSONL file so a re-run (or an interrupted
    one) reads them instead of scoring again; `deadline` stops scoring new keys."""

    def __init__(
        self, path: Path, reranker: Reranker, items: dict[str, Any], deadline: float | None
    ):
        self.path, self.reranker, self.items, self.deadline = path, reranker, items, deadline
        self.scores: dict[str, list[float]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                self.scores[rec["key"]] = rec["scores"]
        self.seconds, self.requests = 0.0, 0

    def __call__(self, key: str, ctx: UserContext, cands: list[Candidate]) -> np.ndarray | None:
        if key not in self.scores:
            if self.deadline is not None and time.perf_counter() > self.deadline:
                return None
            t = time.perf_counter()
            self.scores[key] = [float(x) for x in self.reranker.score(ctx, cands, self.items)]
            spent = time.perf_counter() - t
            logger.info("%s: %d candidates scored in %.1f s", key, len(cands), spent)
            self.seconds += spent
            self.requests += 1
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps({"key": key, "scores": self.scores[key]}) + "\n")
        return np.asarray(self.scores[key])


def _pick_users(data: Any, n_users: int, n_val_users: int, seed: int) -> tuple[list, list]:
    """Disjoint seeded samples of test and validation users."""
    users = sorted(
        data.interactions["user_id"].unique(), key=lambda u: int(u) if u.isdigit() else u
    )
    chosen = [
        str(u) for u in np.random.default_rng(seed).permutation(users)[: n_users + n_val_users]
    ]
    return chosen[:n_users], chosen[n_users:]


def _collect_phase(
    data: Any,
    index: Any,
    users: Sequence[str],
    *,
    hold: int,
    phase: str,
    protocols: Sequence[str],
    scorer: _ScoreCache,
    kind: str,
    n_candidates: int,
    max_history: int,
    seed: int,
) -> dict[str, dict[str, list[Any]]]:
    """Retriever and LLM scores of every protocol's candidates for one phase's users (stops at
    the first user the scorer declines: the time limit is spent)."""
    titles = {it.id: it.title for it in data.items}
    split = _Split(data, hold, users, index)
    rows = {p: {k: [] for k in ("retr", "llm", "rel", "ids", "target")} for p in protocols}
    for u in users:
        ctx = user_context(split.hist[u], titles, max_history=max_history, user_id=u)
        urng_seed = [seed, int(u) if u.isdigit() else hash(u) % 10**6, hold]
        by_proto = {
            p: (
                split.sampled(u, np.random.default_rng(urng_seed), n_candidates)
                if p == "sampled"
                else split.top(u, n_candidates)
            )
            for p in protocols
        }
        scored = _score_user(scorer, kind, f"{phase}/{u}", ctx, by_proto)
        if scored is None:
            break
        for proto, cands in by_proto.items():
            r = rows[proto]
            r["retr"].append(np.array([c.score for c in cands]))
            r["llm"].append(scored[proto])
            r["rel"].append(np.array([c.item_id == split.target[u] for c in cands]))
            r["ids"].append([c.item_id for c in cands])
            r["target"].append(split.target[u])
    return rows


def _protocol_report(
    val: dict[str, list[Any]], test: dict[str, list[Any]], *, sampled: bool, n_candidates: int
) -> dict[str, Any]:
    """Tune alpha on validation (gated), then NDCG of each method on the test users."""
    alpha, table = (
        tune_alpha(val["retr"], val["llm"], val["rel"], k=10) if val["retr"] else (0.0, {})
    )
    argmax = best_alpha(table) if table else 0.0
    free = f"fused, arg-max alpha {argmax:g} (no gate)"
    methods: dict[str, list[dict[str, float]]] = {"retriever": [], "llm": [], "fused": [], free: []}
    for retr, llm, ids, target in zip(
        test["retr"], test["llm"], test["ids"], test["target"], strict=True
    ):
        tb = np.argsort(np.argsort(-retr, kind="stable"), kind="stable")  # retriever rank
        for name, sc in (
            ("retriever", retr),
            ("llm", llm),
            ("fused", fuse_scores(retr, llm, alpha)),
            (free, fuse_scores(retr, llm, argmax)),
        ):
            methods[name].append(_ndcgs([ids[i] for i in order_by(sc, tb)], target))
    rows = {
        name: {m: round(float(np.mean([r[m] for r in vals])), 4) for m in vals[0]} if vals else {}
        for name, vals in methods.items()
    }
    if sampled:
        rows = {"random": {f"ndcg@{k}": round(random_ndcg(n_candidates, k), 4) for k in KS}, **rows}
    return {
        "test_users": len(test["retr"]),
        "val_users": len(val["retr"]),
        "alpha": alpha,
        "alpha_argmax": argmax,
        "val_ndcg@10_by_alpha": {str(a): round(v, 4) for a, v in table.items()},
        "methods": rows,
    }


def run_rerank_eval(
    *,
    model: str = "qwen2.5-coder-1.5b",
    kind: str = "llm-pointwise",
    n_users: int = 200,
    n_val_users: int = 50,
    n_candidates: int = 20,
    seed: int = 0,
    protocols: Sequence[str] = ("sampled", "full"),
    max_history: int = 8,
    max_seconds: float | None = None,
    out: str | Path = "docs/rerank_eval.json",
    llm_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score validation then test users with the LLM, tune alpha on validation, report test.

    Returns:
        The report dict (also written to `out` and `out` with `.md`).
    """
    from evaluation.retrieval import text_vectors
    from retrieval.candidates import NumpyIndex
    from retrieval.datasets.movielens import load_movielens
    from retrieval.encoders import create_encoder

    t0 = time.perf_counter()
    data = load_movielens()
    test_users, val_users = _pick_users(data, n_users, n_val_users, seed)
    index = NumpyIndex(
        {"text": ([it.id for it in data.items], text_vectors(data.items, create_encoder("minilm")))}
    )
    reranker = create_reranker(
        kind,
        model=model,
        llm_kwargs=llm_kwargs or {},
        time_budget_s=None,
        max_history=max_history,
        batch_size=2 * n_candidates,  # both protocols' candidates in one forward pass
    )
    out = Path(out)
    cache_path = out.with_name(
        out.stem + f".{model.replace('/', '_')}.{kind}.{_fingerprint(reranker)}.scores.jsonl"
    )
    scorer = _ScoreCache(
        cache_path,
        reranker,
        {it.id: it for it in data.items},
        t0 + max_seconds if max_seconds else None,
    )
    common = dict(
        protocols=protocols,
        scorer=scorer,
        kind=kind,
        n_candidates=n_candidates,
        max_history=max_history,
        seed=seed,
    )
    val = _collect_phase(data, index, val_users, hold=2, phase="val", **common)
    test = _collect_phase(data, index, test_users, hold=1, phase="test", **common)
    report: dict[str, Any] = {
        "dataset": "ml-100k",
        "model": model,
        "kind": kind,
        "seed": seed,
        "n_candidates": n_candidates,
        "max_history": max_history,
        "protocols": {
            p: _protocol_report(val[p], test[p], sampled=p == "sampled", n_candidates=n_candidates)
            for p in protocols
        },
    }
    report["seconds_total"] = round(time.perf_counter() - t0, 1)
    report["llm_seconds_this_run"] = round(scorer.seconds, 1)
    report["scored_requests_this_run"] = scorer.requests
    reports.write_report(report, out, to_markdown)
    return report


def to_markdown(report: dict[str, Any]) -> str:
    """One table per protocol: NDCG per method, with user counts and the tuned alpha."""
    lines = [
        f"LLM re-rank on `{report['dataset']}` with `{report['model']}` ({report['kind']}), "
        f"{report['n_candidates']} candidates, seed {report['seed']}.",
        "",
    ]
    for proto, res in report["protocols"].items():
        lines += [
            f"**{proto}** protocol: {res['test_users']} test users, alpha = {res['alpha']} "
            f"tuned on {res['val_users']} validation users (arg-max {res.get('alpha_argmax')}, "
            f"kept only if its validation gain clears {ALPHA_GATE_Z} standard errors).",
            "",
        ]
        metrics = sorted(
            {m for row in res["methods"].values() for m in row}, key=lambda m: int(m.split("@")[1])
        )
        lines += ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for name, row in res["methods"].items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{row.get(m, float('nan')):.4f}" for m in metrics)
                + " |"
            )
        lines.append("")
    return "\n".join(lines)
