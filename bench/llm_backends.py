"""All LLM backends side by side, same prompts, one run: speed, memory, score agreement.

For each model (default: the packaged 1.5B and SmolLM2) and each backend

- `llama.cpp`: the GGUF as it is (agent/llm/llamacpp.py),
- `transformers-bf16`, `transformers-fp32`: the converted copy on the CPU,
- `openai`: the HTTP backend against `python -m llama_cpp.server` on loopback (same GGUF),

a fresh subprocess loads the model and runs the real pointwise re-rank request (the
`llm-pointwise` re-ranker, 20 MovieLens-100K candidates per user, the same users for every
backend), then a short greedy generation. Reported per backend: load seconds (hash check
included), seconds per 20-candidate request (median over users, after one warm-up request),
prompt tokens/s, generation tokens/s (after the first token), peak RSS (the worker's
ru_maxrss; for `openai` the server's), and the Spearman correlation of the candidate scores
with transformers bf16 (mean over users). Also: what `auto` chooses here, and why.

    python -m bench.llm_backends                        # both models, every backend
    python -m bench.llm_backends --models smollm2-135m --users 3
    python -m bench.llm_backends --backends llama.cpp transformers-bf16
    python -m bench.llm_backends --threads 1 --users 3 --skip qwen2.5-coder-1.5b:transformers-fp32

Timings on a shared 2-core CPU are noisy: the report records the load average at start.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MODELS = ("qwen2.5-coder-1.5b", "smollm2-135m")
BACKENDS = ("llama.cpp", "transformers-bf16", "transformers-fp32", "openai")
GEN_PROMPT = "In two sentences, why might someone who loved The Matrix enjoy Ghost in the Shell?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(gguf: Path, threads: int) -> tuple[subprocess.Popen[str], str]:
    import httpx

    port = _free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "1024", "--n_threads", str(threads),
        "--n_threads_batch", str(threads), "--verbose", "False",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {proc.stderr.read()[-500:]}")
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


def _load(model: str, backend: str, threads: int) -> tuple[Any, Any]:
    """(llm, server process or None)."""
    from agent.llm import load_llm

    if backend == "llama.cpp":
        return load_llm(model, backend="llama.cpp", num_threads=threads), None
    if backend.startswith("transformers"):
        dtype = "bfloat16" if backend.endswith("bf16") else "float32"
        llm = load_llm(
            model, backend="transformers", device="cpu", num_threads=threads, dtype=dtype
        )
        return llm, None
    from agent.llm.llamacpp import gguf_path
    from agent.llm.openai_http import OpenAIHTTPLLM

    proc, url = _start_server(gguf_path(model), threads)
    # one request at a time: the server runs them one after another anyway, and a queue of
    # four long prompts on a busy CPU would run into the per-request timeout
    llm = OpenAIHTTPLLM(url, timeout_s=900)
    llm.concurrency = 1
    return llm, proc


def worker(model: str, backend: str, users: int, threads: int, seed: int) -> dict[str, Any]:
    """One backend in this process: load, re-rank requests, generation. Returns the row."""
    from agent.rerank import create_reranker
    from bench.rerank import bench_users

    cases, items = bench_users(users + 1, 20, seed, 8)
    warm, cases = cases[0], cases[1:]  # warm-up on another user: no prompt KV reuse in timings
    start = time.perf_counter()
    llm, server = _load(model, backend, threads)
    load_s = time.perf_counter() - start
    try:
        rr = create_reranker("llm-pointwise", llm=llm, alpha=1.0, time_budget_s=None)
        rr.score(warm[0], warm[1], items)  # warm-up (first-call allocations)
        secs, scores, tokens = [], [], []
        for user, cands, _ in cases:
            t = time.perf_counter()
            s, n_tok = rr._scores(user, cands, items, _NoBudget())
            secs.append(time.perf_counter() - t)
            scores.append([float(x) for x in s])
            tokens.append(int(n_tok))
        t = time.perf_counter()
        first = None
        pieces = []
        for piece in llm.stream(GEN_PROMPT, max_new_tokens=48):
            if first is None:
                first = time.perf_counter()
            pieces.append(piece)
        end = time.perf_counter()
        text = "".join(pieces)
        n_gen = llm.count_tokens(text)
        gen_tps = (n_gen - 1) / (end - first) if first and n_gen > 1 and end > first else None
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "model": model,
        "backend": backend,
        "threads": threads,
        "load_s": round(load_s, 2),
        "request_s": [round(x, 3) for x in secs],
        "request_s_median": round(float(np.median(secs)), 3),
        "prompt_tokens": tokens,
        "prompt_tokens_per_s": round(float(sum(tokens) / sum(secs)), 1),
        "first_token_s": round(first - t, 3) if first else None,
        "gen_tokens": n_gen,
        "gen_tokens_per_s": round(gen_tps, 2) if gen_tps else None,
        "gen_text": text,
        "peak_rss_mb": round(rss_child if server is not None else rss_self),
        "client_rss_mb": round(rss_self) if server is not None else None,
        "scores": scores,
    }


class _NoBudget:
    def check(self, share: float) -> None:
        pass


def _spearman(a: list[list[float]], b: list[list[float]]) -> float:
    from scipy.stats import spearmanr

    vals = [float(spearmanr(x, y).statistic) for x, y in zip(a, b, strict=True)]
    return round(float(np.mean(vals)), 3)


def environment() -> dict[str, Any]:
    """CPU, library versions, load average: what the numbers depend on."""
    import importlib.metadata as md

    from agent.llm.probe import cpu_signature

    sig = cpu_signature()
    flags = set(sig.split("|")[-1].split())
    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": sig.split("|")[0].strip(),
        "cores": os.cpu_count(),
        "cpu_features": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
    }
    for dist in ("llama_cpp_python", "torch", "transformers"):
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            env[dist] = None
    try:
        from agent.llm.llamacpp import system_info

        env["llama_cpp_system_info"] = system_info()
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        env["llama_cpp_system_info"] = f"unavailable: {e}"
    return env


def run(args: argparse.Namespace) -> dict[str, Any]:
    from agent.llm.probe import choose_backend

    report: dict[str, Any] = {"environment": environment(), "rows": [], "auto": {}}
    partial = Path(args.out).with_suffix(".partial.json")
    for model in args.models:
        rows: dict[str, dict[str, Any]] = {}
        for backend in args.backends:
            if f"{model}:{backend}" in args.skip:
                continue
            cmd = [
                sys.executable, "-m", "bench.llm_backends", "--worker", "--models", model,
                "--backends", backend, "--users", str(args.users), "--threads", str(args.threads),
                "--seed", str(args.seed),
            ]  # fmt: skip
            logger.info("running %s / %s", model, backend)
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines() or ["?"]
                err = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1])
                logger.warning("%s / %s failed: %s", model, backend, err)
                rows[backend] = {"model": model, "backend": backend, "error": err[:300]}
                continue
            rows[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
            rows[backend]["wall_s"] = round(time.perf_counter() - t, 1)
            done = {**report, "rows": report["rows"] + list(rows.values())}
            partial.write_text(json.dumps(done, indent=2) + "\n")  # a long run loses nothing
        ref = rows.get("transformers-bf16", {}).get("scores")
        for row in rows.values():
            if ref and "scores" in row:
                row["spearman_vs_bf16"] = _spearman(row["scores"], ref)
        report["rows"].extend(rows.values())
        choice = choose_backend(model, device="cpu", num_threads=args.threads)
        report["auto"][model] = {
            "backend": choice.backend,
            "reason": choice.reason,
            "measured": choice.measured,
        }
    partial.unlink(missing_ok=True)
    return report


def table(report: dict[str, Any]) -> str:
    """Markdown table of the report."""
    head = (
        "| model | backend | s / 20-cand. request | prompt tok/s | gen tok/s | peak RSS (MB) "
        "| load (s) | Spearman vs bf16 |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['backend']} | failed: {r['error'][:80]} ||||||")
            continue
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['request_s_median']:.2f} | "
            f"{r['prompt_tokens_per_s']:.0f} | {r['gen_tokens_per_s'] or '-'} | "
            f"{r['peak_rss_mb']} | {r['load_s']:.1f} | {r.get('spearman_vs_bf16', '-')} |"
        )
    for model, a in report.get("auto", {}).items():
        lines.append(f"\n`auto` for {model}: **{a['backend']}** ({a['reason']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--users", type=int, default=5, help="MovieLens users (requests) per backend")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/llm_backends.json")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="model:backend pairs to leave out, e.g. qwen2.5-coder-1.5b:transformers-fp32 "
        "(11 GB RSS)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.worker:
        row = worker(args.models[0], args.backends[0], args.users, args.threads, args.seed)
        sys.stdout.write(json.dumps(row) + "\n")
        return 0
    report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    text = table(report)
    Path(args.out).with_suffix(".table.md").write_text(text + "\n")
    print(text)  # noqa: T201 - a command-line report
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
