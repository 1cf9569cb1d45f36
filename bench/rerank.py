"""Benchmark the LLM re-ranker: probability scoring vs generating a ranked list, same model.

For each of `--users` MovieLens-100K users (fixed seed) with 20 candidates (held-out item +
19 random unseen), it times, side by side:

- `pointwise`: log P(Yes) per candidate, history prefix computed once, candidates batched;
- `listwise`: next-token log-probs over candidate letters, `--permutations` cyclic shifts;
- `generate`: the same model writes the ranked list of letters (prompts/rerank_generate.txt),
  greedy, parsed afterwards (the cheapest generative list);
- `generate-titles`: it writes the ranked titles, one per line (what LlamaRec compares against).

Reports latency per user, tokens processed, peak RSS (and peak CUDA memory on GPU), the
held-out item's rank, and the generate/score speed ratio. Writes JSON + Markdown.

    python -m bench.rerank --model qwen2.5-coder-1.5b --users 2 --threads 1
    python -m bench.rerank --device cuda            # NF4 via bitsandbytes, when a GPU exists
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.llm import load_llm
from agent.prompting import load_prompt
from agent.rerank import create_reranker
from agent.rerank.llm import LETTERS, history_fields, listing, quote_item
from evaluation.rerank import user_context
from retrieval.candidates import Candidate

logger = logging.getLogger(__name__)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def bench_users(
    n_users: int, n_candidates: int, seed: int, max_history: int
) -> tuple[list[Any], dict[str, Any]]:
    """(user context, candidates, held-out id) for `n_users` users; candidates in random order."""
    from retrieval.datasets.movielens import load_movielens

    data = load_movielens()
    items = {it.id: it for it in data.items}
    titles = {i: it.title for i, it in items.items()}
    inter = data.interactions
    rng = np.random.default_rng(seed)
    users = rng.permutation(sorted(inter["user_id"].unique()))[:n_users]
    cases = []
    for u in users:
        rows = inter[inter["user_id"] == u]
        hist, target = rows.iloc[:-1], str(rows["item_id"].iloc[-1])
        pool = sorted(set(items) - set(rows["item_id"]))
        ids = [target, *rng.choice(pool, n_candidates - 1, replace=False).tolist()]
        rng.shuffle(ids)
        cands = [Candidate(i, 0.0, {}, k + 1) for k, i in enumerate(ids)]
        cases.append(
            (user_context(hist, titles, max_history=max_history, user_id=str(u)), cands, target)
        )
    return cases, items


ANSWERS = {
    "generate": "the letters only, separated by commas, e.g. {labels}",
    "generate-titles": "the titles only, one per line, best first",
}


def generate_ranking(
    llm: Any,
    user: Any,
    cands: list[Candidate],
    items: dict[str, Any],
    *,
    mode: str,
    max_history: int,
    max_new_tokens: int,
    system: str,
) -> tuple[list[str], int, int, str]:
    """The model writes the ranked list: (ids parsed, prompt tokens, new tokens, text)."""
    n = len(cands)
    quoted = [quote_item(items.get(c.item_id), item_id=c.item_id, short_titles=True) for c in cands]
    labels = ", ".join(LETTERS[:n])
    prompt = load_prompt("rerank_generate").render(
        candidates=listing(quoted, list(range(n))),
        answer=ANSWERS[mode].format(labels=labels),
        **history_fields(user, max_history=max_history, short_titles=True),
    )
    text = llm.generate(prompt, system=system, max_new_tokens=max_new_tokens)
    n_prompt = llm.count_tokens(llm.chat_text(prompt, system=system))
    seen: list[str] = []
    if mode == "generate":
        picks = [LETTERS.index(x) for x in re.findall(r"\b([A-Z])\b", text)]
    else:
        lines = [
            re.sub(r"^[\s\d.)-]*(?:[A-Z][.)]\s+)?", "", ln).strip(' "') for ln in text.splitlines()
        ]
        picks = [
            next((k for k, q in enumerate(quoted) if ln and q == f'"{ln}"'), n) for ln in lines
        ]
    for k in picks:
        if k < n and cands[k].item_id not in seen:
            seen.append(cands[k].item_id)
    return seen, n_prompt, llm.count_tokens(text), text


def run(args: argparse.Namespace) -> dict[str, Any]:
    cases, items = bench_users(args.users, args.candidates, args.seed, args.max_history)
    t = time.perf_counter()
    llm = load_llm(
        args.model,
        device=args.device,
        dtype=args.dtype,
        num_threads=args.threads,
        quantization=args.quantization,
    )
    load_s = time.perf_counter() - t
    system = load_prompt("rerank_system").render()
    report: dict[str, Any] = {
        "model": args.model,
        "device": llm.device,
        "precision": llm.precision,
        "threads": args.threads,
        "candidates": args.candidates,
        "users": args.users,
        "load_s": round(load_s, 1),
        "rss_after_load_gb": round(peak_rss_gb(), 2),
        "modes": {},
    }
    rerankers = {
        "pointwise": create_reranker(
            "llm-pointwise",
            llm=llm,
            time_budget_s=None,
            batch_size=args.batch_size,
            max_history=args.max_history,
        ),
        "listwise": create_reranker(
            "llm-listwise",
            llm=llm,
            time_budget_s=None,
            n_permutations=args.permutations,
            batch_size=4 * args.permutations,
            max_history=args.max_history,
        ),
    }
    for mode in args.modes.split(","):
        rows = []
        for user, cands, target in cases:
            _sync(llm)
            t = time.perf_counter()
            if mode.startswith("generate"):
                ids, n_prompt, n_new, text = generate_ranking(
                    llm,
                    user,
                    cands,
                    items,
                    mode=mode,
                    max_history=args.max_history,
                    max_new_tokens=args.gen_tokens if mode == "generate" else 8 * args.gen_tokens,
                    system=system,
                )
                row = {
                    "tokens": n_prompt + n_new,
                    "generated_tokens": n_new,
                    "parsed": len(ids),
                    "text": text[:300],
                }
            else:
                out = rerankers[mode].rank(user, cands, items)
                ids = out.item_ids()
                row = {"tokens": out.tokens_processed}
            _sync(llm)
            row["seconds"] = round(time.perf_counter() - t, 2)
            row["heldout_rank"] = ids.index(target) + 1 if target in ids else None
            rows.append(row)
            logger.info("%s user %s: %s", mode, user.user_id, row)
        report["modes"][mode] = {
            "seconds_per_user": round(float(np.mean([r["seconds"] for r in rows])), 2),
            "tokens_per_user": round(float(np.mean([r["tokens"] for r in rows])), 1),
            "peak_rss_gb": round(peak_rss_gb(), 2),
            "per_user": rows,
        }
        if llm.device.startswith("cuda"):
            import torch

            report["modes"][mode]["peak_cuda_gb"] = round(
                torch.cuda.max_memory_allocated() / 1024**3, 2
            )
    modes = report["modes"]
    for g in ("generate", "generate-titles"):
        for m in ("pointwise", "listwise"):
            if m in modes and g in modes:
                report[f"speedup_{m}_vs_{g}"] = round(
                    modes[g]["seconds_per_user"] / modes[m]["seconds_per_user"], 1
                )
    return report


def _sync(llm: Any) -> None:
    if llm.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def to_markdown(r: dict[str, Any]) -> str:
    lines = [
        f"`{r['model']}` on {r['device']} ({r['precision']}, {r['threads']} thread(s)), "
        f"{r['candidates']} candidates, {r['users']} user(s); load {r['load_s']} s.",
        "",
        "| mode | s / user | tokens / user | peak RSS GB | held-out ranks |",
        "|---|---|---|---|---|",
    ]
    for m, v in r["modes"].items():
        ranks = ", ".join(str(x["heldout_rank"]) for x in v["per_user"])
        lines.append(
            f"| {m} | {v['seconds_per_user']} | {v['tokens_per_user']} "
            f"| {v['peak_rss_gb']} | {ranks} |"
        )
    for k, v in r.items():
        if k.startswith("speedup_"):
            lines.append(f"\n{k.replace('_', ' ')}: **{v}x**")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="LLM re-rank latency: scoring vs generation")
    p.add_argument("--model", default="qwen2.5-coder-1.5b")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--quantization", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--users", type=int, default=2)
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--max-history", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--permutations", type=int, default=2)
    p.add_argument("--gen-tokens", type=int, default=60)
    p.add_argument("--modes", default="pointwise,listwise,generate,generate-titles")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/rerank_bench.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(to_markdown(report))
    print(to_markdown(report))  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
