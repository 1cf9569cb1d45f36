"""Explain the top-k recommendations of MovieLens-100K users and measure the explanations.

Reports: the share of LLM explanations that pass the faithfulness check before fallback,
the share of final explanations that pass (must be 100%), average length, latency per
explanation on this machine, and writes sample explanations to docs/explanations.md.

Ranking is the agent's: the hybrid `CandidateGenerator` (default `HybridConfig`) over MiniLM
text vectors, fit on every rating but each user's last (leave-last-out); evidence is built as
`RecommendationAgent.evidence` builds it (same history weights, co-likes, candidate scores).

    python -m bench.explain --users 100 --k 5 --model smollm2-135m
    python -m bench.explain --users 100 --model none      # template only
    # the packaged 1.5B, two processes over one sample, then one report:
    python -m bench.explain --users 100 --shard 0/2 --model qwen2.5-coder-1.5b \
        --dtype bfloat16 --threads 1 --json /tmp/s0.json --md /tmp/s0.md   # and --shard 1/2
    python -m bench.explain --merge /tmp/s0.json /tmp/s1.json
    # the media demo's personas, through the agent (labels the encoders saw, requests):
    python -m bench.explain --config <demo dir>/fusionrec.toml --model none

Prompts are tuned on `--split tune` users (outside the seed-0 sample every report run draws).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from agent.explain.evidence import CoLikes, build_evidence, history_entries  # noqa: E402
from agent.explain.explainer import Explainer  # noqa: E402
from agent.explain.faithfulness import RULES  # noqa: E402
from agent.llm.base import LLM  # noqa: E402
from agent.records import Evidence  # noqa: E402
from agent.streams import drain  # noqa: E402
from evaluation.retrieval import split_leave_last_out  # noqa: E402
from retrieval.candidates import CandidateGenerator, NumpyIndex  # noqa: E402
from retrieval.config import HybridConfig  # noqa: E402
from retrieval.datasets.movielens import load_movielens  # noqa: E402
from retrieval.interactions import user_item_matrix  # noqa: E402
from retrieval.profiles import History  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def text_vectors(items: list, *, threads: int) -> np.ndarray:
    """MiniLM vectors of every item's text, `(n, 384)` float32 L2-normalised, cached on disk."""
    from evaluation.retrieval import text_vectors as cached_text_vectors
    from retrieval.encoders import create_encoder

    return cached_text_vectors(items, create_encoder("minilm", num_threads=threads))


def sample_users(users: list, n: int, *, split: str = "report") -> list:
    """The users a run explains, sorted by id. "report": the seed-0 sample of `n` (the
    committed runs); "tune": a seed-1 sample from the users outside the seed-0 sample of 100."""
    if split == "report":
        rng = np.random.default_rng(0)
        return sorted(rng.choice(users, size=min(n, len(users)), replace=False), key=int)
    held = set(np.random.default_rng(0).choice(users, size=min(100, len(users)), replace=False))
    pool = [u for u in users if u not in held]
    rng = np.random.default_rng(1)
    return sorted(rng.choice(pool, size=min(n, len(pool)), replace=False), key=int)


def summarise(records: list[dict], run: dict) -> dict:
    """The run's numbers from its records; `run` holds the settings (model, users, k, ...)."""
    n = len(records)
    tpl_records = [r for r in records if r["path"] == "template" and run["model"] != "none"]
    llm_lat = [r["latency_s"] for r in records]
    words = [len(r["text"].split()) for r in records]
    reasons: dict[str, int] = {}
    for r in records:
        if r["path"] == "template" and r["reason"]:
            key = r["reason"].split("'")[0].strip()
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "model": run["model"],
        "users": run["users"],
        "users_requested": run["users_requested"],
        "k": run["k"],
        "explanations": n,
        "max_new_tokens": run["max_new_tokens"],
        "dtype": run["dtype"],
        "threads": run["threads"],
        "pass_before_fallback": sum(r["path"] == "llm" for r in records) / n,
        "pass_after_fallback": sum(r["final_ok"] for r in records) / n,
        "avg_words": statistics.mean(words),
        "avg_chars": statistics.mean(len(r["text"]) for r in records),
        "latency_mean_s": statistics.mean(llm_lat),
        "latency_p50_s": statistics.median(llm_lat),
        "latency_p95_s": float(np.percentile(llm_lat, 95)),
        "fallback_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "command": run["command"],
        "avg_words_llm": statistics.mean(
            [len(r["text"].split()) for r in records if r["path"] == "llm"] or [0]
        ),
        "fallback_rules": dict(
            Counter(r.get("rule") or r["reason"] for r in tpl_records).most_common()
        ),
        "backend": run.get("backend", "transformers"),
        "split": run.get("split", "report"),
        "max_sentences": run.get("max_sentences"),
    }


def merge(paths: list[str], command: str) -> tuple[dict, list[dict]]:
    """One report from the JSON files of runs over disjoint shards of the same sample."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    records = sorted(
        (r for run in runs for r in run["records"]), key=lambda r: (int(r["user"]), r["rank"])
    )
    first = runs[0]["summary"]
    settings = {
        **first,
        "users": sum(run["summary"]["users"] for run in runs),
        "users_requested": sum(run["summary"]["users_requested"] for run in runs),
        "command": command + " (shards: " + "; ".join(r["summary"]["command"] for r in runs) + ")",
    }
    return summarise(records, settings), records


# Requests asked of each persona on the media demo, beside its plain list (no request).
MEDIA_REQUESTS = (
    None,
    "something calm to listen to while I read",
    "a picture of an animal",
    "upbeat music",
)
# `--split tune` with `--config`: other requests, for changing prompts without touching the
# reported ones above
MEDIA_TUNE_REQUESTS = ("relaxing music", "a photo of a farm animal", "a happy song")


def _explained(
    explainer: Explainer, ev: Evidence, user: str, item_id: str, rank: int | None
) -> dict[str, Any]:
    """Explain `ev` streamed as the app does (it stops at a rejection) and the record of it:
    which path the user saw, the text, a rejected LLM text and why, and the seconds."""
    start = time.perf_counter()
    exp = drain(explainer.stream(ev))
    latency = time.perf_counter() - start
    return {
        "user": user,
        "item": item_id,
        "title": ev.title,
        "rank": rank,
        "path": exp.path,
        "text": exp.text,
        "rejected": exp.rejected,
        "reason": exp.reason,
        "final_ok": explainer.check(exp.text, ev).ok,
        "latency_s": latency,
        "evidence": explainer.render_evidence(ev),
    } | ({"rule": exp.rule} if exp.rejected else {})


def _run_info(
    args: argparse.Namespace,
    argv: list[str] | None,
    explainer: Explainer,
    users: int,
    requested: int,
) -> dict[str, Any]:
    """What a report says about its own run: model, settings, users and the command."""
    return {
        "model": args.model,
        "users": users,
        "users_requested": requested,
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "dtype": args.dtype,
        "threads": args.threads,
        "backend": args.backend,
        "split": args.split,
        "max_sentences": explainer.max_sentences,
        "command": "python -m bench.explain "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }


def _load_llm(args: argparse.Namespace) -> LLM | None:
    """The LLM `--model` names on the CPU (None for `--model none`: template only)."""
    if args.model == "none":
        return None
    from agent.llm import load_llm

    t0 = time.perf_counter()
    llm = load_llm(
        args.model,
        backend=args.backend,
        device="cpu",
        num_threads=args.threads,
        dtype=args.dtype,
    )
    print(f"loaded {args.model} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return llm


def run_media(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Explain each demo persona's top-k, plain and for `MEDIA_REQUESTS`, through the agent's
    own evidence (what the encoders saw and heard, with probabilities, and the request)."""
    from agent.agent import RecommendationAgent
    from retrieval.config import FusionrecConfig

    cfg = FusionrecConfig.from_toml(args.config)
    personas = json.loads((Path(args.config).parent / "personas.json").read_text())
    t0 = time.perf_counter()
    agent = RecommendationAgent.from_config(cfg)
    print(f"setup {time.perf_counter() - t0:.1f}s: {len(agent.items)} items", file=sys.stderr)
    explainer = Explainer(_load_llm(args), items=agent.items, max_new_tokens=args.max_new_tokens)
    records = []
    started = time.perf_counter()
    chosen = personas[: args.limit]
    for persona in chosen:
        if args.max_seconds is not None and time.perf_counter() - started > args.max_seconds:
            break
        for request in MEDIA_TUNE_REQUESTS if args.split == "tune" else MEDIA_REQUESTS:
            result = agent.recommend(persona["id"], k=args.k, query=request)
            for rec in result.items:
                ev = agent.evidence(persona["id"], rec.item.id)
                record = _explained(explainer, ev, persona["id"], rec.item.id, rec.rank)
                record["request"] = request
                record["cites_labels"] = any(
                    lb.split(",")[0].casefold() in record["text"].casefold()
                    for names in ev.labels.values()
                    for lb in names
                )
                print(
                    f"  {persona['id']} {request!r} #{rec.rank} {record['path']}: {record['text']}",
                    file=sys.stderr,
                )
                records.append(record)
    summary = summarise(
        records,
        _run_info(args, argv, explainer, len({r["user"] for r in records}), len(chosen))
        | {"split": "media demo personas"},
    )
    asked = MEDIA_TUNE_REQUESTS if args.split == "tune" else MEDIA_REQUESTS
    summary["dataset"] = "media demo personas x " + ", ".join(map(repr, asked))
    summary["share_citing_labels"] = sum(r["cites_labels"] for r in records) / len(records)
    summary["share_with_labels"] = sum(
        "Its picture shows" in r["evidence"] or "Its sound was tagged" in r["evidence"]
        for r in records
    ) / len(records)
    print(json.dumps(summary, indent=2))
    Path(args.json).write_text(json.dumps({"summary": summary, "records": records}, indent=1))
    write_markdown(Path(args.md), summary, records, args.samples)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100, help="users sampled (seed 0)")
    ap.add_argument("--k", type=int, default=5, help="recommendations explained per user")
    ap.add_argument("--model", default="smollm2-135m", help="LLM name for load_llm, or 'none'")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="start no new user after this many seconds (the report says how many were done)",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest when shared)"
    )
    ap.add_argument("--dtype", default="float32", help="CPU weights dtype: float32 or bfloat16")
    ap.add_argument(
        "--backend", default="transformers", help="LLM backend (agent.llm.BACKENDS key)"
    )
    ap.add_argument(
        "--split",
        choices=("report", "tune"),
        default="report",
        help="report: the seed-0 sample of --users users; tune: a seed-1 sample of users outside "
        "the seed-0 sample of 100, for tuning prompts without touching the reported users",
    )
    ap.add_argument(
        "--limit", type=int, default=None, help="explain only the first N sampled users (by id)"
    )
    ap.add_argument(
        "--samples", type=int, default=10, help="explanations written to the Markdown file"
    )
    ap.add_argument("--md", default=str(ROOT / "docs" / "explanations.md"))
    ap.add_argument("--json", default=str(ROOT / "docs" / "explanations.json"))
    ap.add_argument("--from-json", help="only re-write the Markdown from a previous run's JSON")
    ap.add_argument(
        "--shard",
        default=None,
        help="i/n: explain every n-th sampled user starting at the i-th (0-based), so n "
        "processes share one sample; join their JSON files with --merge",
    )
    ap.add_argument("--merge", nargs="+", help="JSON files of shard runs to join into one report")
    ap.add_argument(
        "--config",
        help="explain the demo personas of a media demo store (its fusionrec.toml, as written "
        "by `fusionrec demo`) through the agent, instead of MovieLens users",
    )
    args = ap.parse_args(argv)
    if args.merge:
        command = "python -m bench.explain " + " ".join(argv if argv is not None else sys.argv[1:])
        summary, records = merge(args.merge, command)
        print(json.dumps(summary, indent=2))
        Path(args.json).write_text(json.dumps({"summary": summary, "records": records}, indent=1))
        write_markdown(Path(args.md), summary, records, args.samples)
        return 0
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        write_markdown(Path(args.md), saved["summary"], saved["records"], args.samples)
        return 0

    if args.config:
        return run_media(args, argv)
    data = load_movielens()
    items = {it.id: it for it in data.items}
    ids = [it.id for it in data.items]
    train, _ = split_leave_last_out(data.interactions, 1)
    users = sorted(train["user_id"].unique(), key=int)
    ratings = user_item_matrix(train, ids, users=users)
    matrix, row = ratings.matrix, ratings.user_rows
    t0 = time.perf_counter()
    vecs = text_vectors(data.items, threads=args.threads)
    vec_map = {"text": dict(zip(ids, vecs, strict=True))}
    generator = CandidateGenerator(NumpyIndex({"text": (ids, vecs)}), config=HybridConfig()).fit(
        train, ids
    )
    co = CoLikes(matrix, ids)
    print(
        f"setup {time.perf_counter() - t0:.1f}s: {len(ids)} items, {len(users)} users",
        file=sys.stderr,
    )

    explainer = Explainer(_load_llm(args), items=items, max_new_tokens=args.max_new_tokens)

    chosen = sample_users(users, args.users, split=args.split)[: args.limit]
    if args.shard:
        i, n = (int(x) for x in args.shard.split("/"))
        chosen = chosen[i::n]
    records = []
    started = time.perf_counter()
    done_users = 0
    for n_user, user in enumerate(chosen, start=1):
        if args.max_seconds is not None and time.perf_counter() - started > args.max_seconds:
            print(f"--max-seconds reached after {n_user - 1} users", file=sys.stderr)
            break
        done_users = n_user
        hist = train[train["user_id"] == user]
        history = History(
            hist["item_id"].tolist(),
            hist["rating"].astype(float).tolist(),
            hist["timestamp"].astype(int).tolist(),
        )
        entries = history_entries(history, generator.config)
        for cand in generator.generate(history, n=args.k):
            rank, item_id = cand.rank, cand.item_id
            ev = build_evidence(
                item_id,
                entries,
                items=items,
                vectors=vec_map,
                weights={"text": 1.0},
                co_likes=co,
                user_index=row[user],
                candidate=cand,
                rank=rank,
            )
            record = _explained(explainer, ev, str(user), item_id, rank)
            latency = record["latency_s"]
            print(
                f"  #{rank} {item_id} {record['path']} {latency:.1f}s"
                + (
                    f" rejected ({record['reason']}): {record['rejected']}"
                    if record["rejected"]
                    else f": {record['text']}"
                ),
                file=sys.stderr,
            )
            records.append(record)
        print(f"user {n_user}/{len(chosen)} done; last latency {latency:.1f}s", file=sys.stderr)

    summary = summarise(
        records,
        _run_info(args, argv, explainer, done_users, len(chosen)),
    )
    print(json.dumps(summary, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"summary": summary, "records": records}, indent=1))
    write_markdown(Path(args.md), summary, records, args.samples)
    return 0


def _first_sentence(doc: str) -> str:
    text = " ".join(doc.split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def write_markdown(path: Path, summary: dict, records: list[dict], k: int) -> None:
    """Numbers plus `k` sample explanations (LLM ones first, then fallbacks) with evidence."""
    llm = [r for r in records if r["path"] == "llm"]
    tpl = [r for r in records if r["path"] == "template"]
    picks = llm[: max(k // 2, k - len(tpl))] + tpl
    picks = picks[:k]
    s = summary
    run_note = (
        f"Model {s['model']} (backend {s.get('backend', 'transformers')}, {s['dtype']}, "
        f"{s['threads']} threads, at most {s['max_new_tokens']} new tokens, streamed: a "
        f"rejected sentence stops generation); users from the `{s.get('split', 'report')}` "
        "split. Latency is wall time on a shared 2-core CPU with other jobs running, so noisy."
        if s["model"] != "none"
        else "No LLM: every explanation is the deterministic template."
    )
    lines = [
        f"# Sample explanations ({s.get('dataset', 'MovieLens-100K')})",
        "",
        f"Generated by `{s['command']}` ({s['model']}, {s['users']} of "
        f"{s.get('users_requested', s['users'])} users x top-{s['k']} before the time limit, "
        f"{s['explanations']} explanations, {s['threads']} CPU threads).",
        "",
        "| measure | value |",
        "|---|---|",
        "| passed the faithfulness check before fallback (LLM text kept) | "
        f"{s['pass_before_fallback']:.1%} |",
        f"| passed after fallback (final text) | {s['pass_after_fallback']:.1%} |",
        f"| average length | {s['avg_words']:.1f} words, {s['avg_chars']:.0f} characters |",
        *(
            [f"| average length of the LLM texts kept | {s['avg_words_llm']:.1f} words |"]
            if s.get("avg_words_llm")
            else []
        ),
        f"| latency per explanation (mean / p50 / p95) | {s['latency_mean_s']:.2f} / "
        f"{s['latency_p50_s']:.2f} / {s['latency_p95_s']:.2f} s |",
        "",
        "Each explanation is either the LLM's text, kept only if every sentence passes the "
        "faithfulness check (`agent/explain/faithfulness.py`, a table of rules: "
        + ", ".join(f"`{name}`" for name, _ in RULES)
        + "; and at least one reason from the evidence named), or the deterministic template "
        "built from the same evidence "
        "(`prompts/explain_template.txt`). **llm** / **template** below says which one the user "
        "saw; for template answers the rejected LLM text and the reason are shown.",
        "",
        run_note,
        "",
        "Encoder labels (media catalogues; MovieLens has none): the evidence carries what the "
        "image and audio encoders saw and heard, with their probabilities (`Evidence.labels`, "
        "`Evidence.label_scores`, read from the store by `scored_labels`), rendered as "
        '`- Its picture shows "tabby, tabby cat" (0.62)` and `- Its sound was tagged '
        '"Beep, bleep" (0.41)`. A label is one allowed piece even with commas inside '
        '(ImageNet and AudioSet list synonyms so), as is each of its synonyms ("tabby cat"); '
        "describing the item's own picture or sound is allowed where it has labels, while "
        'crediting a modality for the match ("looks like", "sounds like", "like items you '
        'liked") still needs that modality to carry the score. Invented labels ("its picture '
        'shows a golden retriever") are rejected (`tests/agent/explain/'
        "test_faithfulness_rules.py`).",
        "",
        "The rules, in the order they run (the first that fails names the reason):",
        "",
        *[f"- `{name}`: {_first_sentence(rule.__doc__ or '')}" for name, rule in RULES],
        "",
        "Fallback rules: "
        + (", ".join(f"{k2} ({v})" for k2, v in s.get("fallback_rules", {}).items()) or "none"),
        "",
        "Fallback reasons: "
        + (", ".join(f"{k2} ({v})" for k2, v in s["fallback_reasons"].items()) or "none"),
        "",
    ]
    for r in picks:
        lines += [
            f"## User {r['user']}, #{r['rank']}: {r['title']}"
            + (f" (request: {r['request']!r})" if r.get("request") else ""),
            "",
            f"**{r['path']}**: {r['text']}",
            "",
        ]
        if r["rejected"]:
            lines += [f"Rejected LLM text: _{r['rejected']}_ — {r['reason']}", ""]
        lines += [
            "<details><summary>evidence (the LLM saw it without the first, status line)</summary>",
            "",
            "```",
            r["evidence"],
            "```",
            "</details>",
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
