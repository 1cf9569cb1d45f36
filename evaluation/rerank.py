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

from agent.rerank import UserContext, create_reranker
from agent.rerank.base import order_by
from agent.rerank.tuning import ALPHA_GATE_Z, best_alpha, tune_alpha
from retrieval.candidates import Candidate
from retrieval.fusion import fuse_scores

logger = logging.getLogger(__name__)

KS = (1, 5, 10)
LIKE = 4.0  # ratings >= this are "liked" in the prompt
DISLIKE = 2.0  # ratings <= this are "disliked"


def ndcg_one(rank: int, k: int) -> float:
    """NDCG@k with one relevant item at 1-based `rank`."""
    return 1.0 / np.log2(rank + 1) if rank <= k else 0.0


def random_ndcg(n: int, k: int) -> float:
    """Exact expected NDCG@k of a random order of `n` candidates with one relevant item."""
    return float(sum(ndcg_one(r, k) for r in range(1, min(n, k) + 1)) / n)


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
        from evaluation.retrieval import split_leave_last_out
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


def _fingerprint(reranker: Any) -> str:
    """Changes whenever the prompts or the prompt settings do, so a cache never mixes them."""
    import hashlib

    from agent.prompting import prompts_dir

    h = hashlib.sha256()
    for f in sorted(prompts_dir().glob("rerank_*.txt")):
        h.update(f.read_bytes())
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
    llm_scores: Any,
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
    return {f"ndcg@{k}": ndcg_one(rank, k) for k in KS}


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
    titles = {it.id: it.title for it in data.items}
    items = {it.id: it for it in data.items}
    users = sorted(
        data.interactions["user_id"].unique(), key=lambda u: int(u) if u.isdigit() else u
    )
    rng = np.random.default_rng(seed)
    chosen = [str(u) for u in rng.permutation(users)[: n_users + n_val_users]]
    test_users, val_users = chosen[:n_users], chosen[n_users:]
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
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache: dict[str, list[float]] = {}
    if cache_path.is_file():
        for line in cache_path.read_text().splitlines():
            rec = json.loads(line)
            cache[rec["key"]] = rec["scores"]
    deadline = t0 + max_seconds if max_seconds else None
    stats = {"llm_seconds": 0.0, "scored_requests": 0}

    def llm_scores(key: str, ctx: UserContext, cands: list[Candidate]) -> np.ndarray | None:
        if key not in cache:
            if deadline is not None and time.perf_counter() > deadline:
                return None
            t = time.perf_counter()
            cache[key] = [float(x) for x in reranker.score(ctx, cands, items)]
            logger.info(
                "%s: %d candidates scored in %.1f s", key, len(cands), time.perf_counter() - t
            )
            stats["llm_seconds"] += time.perf_counter() - t
            stats["scored_requests"] += 1
            with cache_path.open("a") as fh:
                fh.write(json.dumps({"key": key, "scores": cache[key]}) + "\n")
        return np.asarray(cache[key])

    collected: dict[str, dict[str, list[Any]]] = {}
    for phase, hold, phase_users in (("val", 2, val_users), ("test", 1, test_users)):
        split = _Split(data, hold, phase_users, index)
        for proto in protocols:
            collected[f"{phase}/{proto}"] = {k: [] for k in ("retr", "llm", "rel", "ids", "target")}
        for u in phase_users:
            ctx = user_context(split.hist[u], titles, max_history=max_history, user_id=u)
            by_proto = {}
            for proto in protocols:
                urng = np.random.default_rng(
                    [seed, int(u) if u.isdigit() else hash(u) % 10**6, hold]
                )
                by_proto[proto] = (
                    split.sampled(u, urng, n_candidates)
                    if proto == "sampled"
                    else split.top(u, n_candidates)
                )
            scored = _score_user(llm_scores, kind, f"{phase}/{u}", ctx, by_proto)
            if scored is None:
                break
            for proto, cands in by_proto.items():
                rows = collected[f"{phase}/{proto}"]
                rows["retr"].append(np.array([c.score for c in cands]))
                rows["llm"].append(scored[proto])
                rows["rel"].append(np.array([c.item_id == split.target[u] for c in cands]))
                rows["ids"].append([c.item_id for c in cands])
                rows["target"].append(split.target[u])
    report: dict[str, Any] = {
        "dataset": "ml-100k",
        "model": model,
        "kind": kind,
        "seed": seed,
        "n_candidates": n_candidates,
        "max_history": max_history,
        "protocols": {},
    }
    for proto in protocols:
        val, test = collected[f"val/{proto}"], collected[f"test/{proto}"]
        alpha, table = (
            tune_alpha(val["retr"], val["llm"], val["rel"], k=10) if val["retr"] else (0.0, {})
        )
        argmax = best_alpha(table) if table else 0.0
        methods: dict[str, list[dict[str, float]]] = {
            "retriever": [],
            "llm": [],
            "fused": [],
            f"fused, arg-max alpha {argmax:g} (no gate)": [],
        }
        for retr, llm, ids, target in zip(
            test["retr"], test["llm"], test["ids"], test["target"], strict=True
        ):
            tb = np.argsort(
                np.argsort(-retr, kind="stable"), kind="stable"
            )  # retriever rank breaks ties
            for name, sc in (
                ("retriever", retr),
                ("llm", llm),
                ("fused", fuse_scores(retr, llm, alpha)),
                (f"fused, arg-max alpha {argmax:g} (no gate)", fuse_scores(retr, llm, argmax)),
            ):
                methods[name].append(_ndcgs([ids[i] for i in order_by(sc, tb)], target))
        rows = {
            name: {m: round(float(np.mean([r[m] for r in vals])), 4) for m in vals[0]}
            if vals
            else {}
            for name, vals in methods.items()
        }
        if proto == "sampled":
            rows = {
                "random": {f"ndcg@{k}": round(random_ndcg(n_candidates, k), 4) for k in KS},
                **rows,
            }
        report["protocols"][proto] = {
            "test_users": len(test["retr"]),
            "val_users": len(val["retr"]),
            "alpha": alpha,
            "alpha_argmax": argmax,
            "val_ndcg@10_by_alpha": {str(a): round(v, 4) for a, v in table.items()},
            "methods": rows,
        }
    report["seconds_total"] = round(time.perf_counter() - t0, 1)
    report["llm_seconds_this_run"] = round(stats["llm_seconds"], 1)
    report["scored_requests_this_run"] = stats["scored_requests"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(to_markdown(report))
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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m evaluation.rerank --model smollm2-135m --users 200` (see --help)."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-1.5b")
    p.add_argument("--kind", default="llm-pointwise", choices=["llm-pointwise", "llm-listwise"])
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--val-users", type=int, default=50)
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--protocols", default="sampled,full")
    p.add_argument("--max-history", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default=None)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy CPU)"
    )
    p.add_argument("--out", default="docs/rerank_eval.json")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run_rerank_eval(
        model=a.model,
        kind=a.kind,
        n_users=a.users,
        n_val_users=a.val_users,
        n_candidates=a.candidates,
        seed=a.seed,
        protocols=a.protocols.split(","),
        max_history=a.max_history,
        max_seconds=a.max_seconds,
        out=a.out,
        llm_kwargs={"num_threads": a.threads, **({"dtype": a.dtype} if a.dtype else {})},
    )
    print(to_markdown(report))  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
