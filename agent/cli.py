"""The `fusionrec` command line. Catches FusionrecError once and exits with one clear line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrieval.errors import FusionrecError

logger = logging.getLogger("fusionrec")

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "OPENBLAS_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_k, _v)


def _config(args: argparse.Namespace) -> Any:
    from retrieval.config import FusionrecConfig

    cfg = FusionrecConfig.from_toml(args.config) if args.config else FusionrecConfig()
    if getattr(args, "store", None):
        import dataclasses

        cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path=args.store))
    return cfg


def _emit(obj: Any, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str) if as_json else text)


def cmd_ingest(args: argparse.Namespace) -> int:
    from retrieval.ingest import Encoders, ingest_catalogue
    from retrieval.store import VectorStore

    cfg = _config(args)
    store = VectorStore.from_config(cfg)
    report = ingest_catalogue(
        args.catalogue,
        store,
        Encoders.from_config(cfg.encoders),
        batch_size=cfg.encoders.batch_size,
        show_progress=not args.quiet,
        limits=cfg.ingest,
    )
    report_path = Path(args.report) if args.report else cfg.store_path() / "ingest-report.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    for err in report.failed[:20]:
        print(f"  {err.id or 'row ' + str(err.row)}: {err.field}: {err.error}", file=sys.stderr)
    if len(report.failed) > 20:
        print(f"  ... {len(report.failed) - 20} more in {report_path}", file=sys.stderr)
    print(f"ingest: {report.summary()}; report: {report_path}")
    return 0 if report.ingested > 0 else 1


def cmd_demo_catalogue(args: argparse.Namespace) -> int:
    from retrieval.datasets.media.build import build_media_catalogue

    report = build_media_catalogue(Path(args.dir).expanduser())
    print(
        f"demo catalogue: {Path(args.dir).expanduser() / 'catalogue.jsonl'} ({report.items} items)"
    )
    return 0


def _agent(args: argparse.Namespace) -> Any:
    from agent.agent import RecommendationAgent

    return RecommendationAgent.from_config(_config(args))


def cmd_recommend(args: argparse.Namespace) -> int:
    if args.k < 1:  # before any model loads
        raise FusionrecError(f"--k must be at least 1 (got {args.k})")
    agent = _agent(args)
    result = agent.recommend(args.user, k=args.k, query=args.query)
    lines = [
        f"{r.rank:>2}. {r.item.title}  [{r.item.id}]  score {r.score:.3f}" for r in result.items
    ]
    if result.note:
        lines.append(f"note: {result.note}")
    _emit(result.to_dict(), args.json, "\n".join(lines))
    if len(result.items) < args.k:  # say why the list is shorter than asked
        print(
            f"note: asked for {args.k:,}, got {len(result.items)}: every candidate this request "
            f"produced (at most [hybrid] n_candidates = {agent.config.hybrid.n_candidates})",
            file=sys.stderr,
        )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    exp = _agent(args).explain(args.user, args.item)
    _emit(exp.to_dict(), args.json, exp.text)
    return 0


def cmd_eval_rerank(args: argparse.Namespace) -> int:
    """`fusionrec eval --protocol rerank`: the LLM re-ranker on MovieLens-100K (both protocols)."""
    from evaluation.rerank import run_rerank_eval, to_markdown

    llm_kwargs: dict[str, Any] = {"num_threads": args.threads}
    if args.dtype:
        llm_kwargs["dtype"] = args.dtype
    report = run_rerank_eval(
        model=args.model,
        kind=args.kind,
        n_users=args.users,
        n_val_users=args.val_users,
        n_candidates=args.candidates,
        seed=args.seed,
        max_seconds=args.max_seconds,
        out=args.out,
        llm_kwargs=llm_kwargs,
    )
    print(to_markdown(report))
    return 0


def cmd_eval_redial(args: argparse.Namespace) -> int:
    """`fusionrec eval --dataset redial --data DIR`: conversational benchmark (docs/redial.md)."""
    from evaluation.redial import run_redial_eval, to_markdown

    if not args.data:
        raise FusionrecError("--dataset redial needs --data DIR (test.jsonl, entity2id.json, ...)")
    llm: dict[str, Any] = {}
    if args.protocol == "rerank":  # + LLM rows: --users/--val-users samples, --candidates top N
        llm_kwargs: dict[str, Any] = {"num_threads": args.threads}
        if args.dtype:
            llm_kwargs["dtype"] = args.dtype
        llm = {"llm_model": args.model, "n_llm": args.users, "n_llm_val": args.val_users,
               "llm_top_n": args.candidates, "llm_max_seconds": args.max_seconds,
               "llm_kwargs": llm_kwargs, "seed": args.seed}  # fmt: skip
    print(to_markdown(run_redial_eval(args.data, out=args.out, **llm)))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from evaluation.retrieval import run_eval

    if args.dataset == "redial":
        return cmd_eval_redial(args)
    if args.protocol == "rerank":
        return cmd_eval_rerank(args)
    if args.interactions or args.items:
        if not (args.interactions and args.items):
            raise FusionrecError("--interactions and --items go together")
        result = run_eval(
            dataset=None, interactions=args.interactions, items=args.items, out=args.out
        )
    else:
        result = run_eval(dataset=args.dataset, out=args.out)
    rows = [f"{'model':<14} {'ndcg@10':>8} {'recall@10':>9} {'recall@50':>9} {'hr@10':>7}"]
    for name, m in result["models"].items():
        rows.append(
            f"{name:<14} {m.get('ndcg@10', 0):>8.4f} {m.get('recall@10', 0):>9.4f} "
            f"{m.get('recall@50', float('nan')):>9.4f} {m.get('hr@10', 0):>7.4f}"
        )
    notes = ", ".join(
        f"{k.replace('_', ' ')}: {v}" for k, v in result.get("data_notes", {}).items()
    )
    if notes:
        rows.append(f"data: {notes}")
    print("\n".join(rows) + f"\nusers: {result['users']}; written to {args.out}")
    return 0


def cmd_prepare_llm(args: argparse.Namespace) -> int:
    from agent.llm import prepare_llm

    cfg = _config(args)
    name = args.model or cfg.llm.model
    folder = prepare_llm(name, cache_dir=cfg.model_cache())
    print(f"{name}: verified and converted at {folder}")
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is not None:
        from agent.llm.llamacpp import gguf_path

        print(f"{name}: GGUF for llama.cpp at {gguf_path(name, cfg.model_cache())}")
    from agent.llm.probe import choose_backend

    choice = choose_backend(
        name,
        device=cfg.llm.device,
        cache_dir=cfg.model_cache(),
        num_threads=cfg.llm.num_threads,
        refresh=args.refresh_probe,
    )
    cached = " (measured earlier on this machine)" if choice.cached else ""
    print(f"backend 'auto' -> {choice.backend}: {choice.reason}{cached}")
    if cfg.llm.backend != "auto":
        print(f"(config sets backend = '{cfg.llm.backend}', which is what runs)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The media demo store (pictures, music, sounds, personas) and the MovieLens-100K store."""
    from retrieval.datasets.media.demo import build_demo

    out = build_demo(args.dir, movielens=not args.no_movielens, quiet=args.quiet)
    cat = out["catalogue"]
    print(
        f"media catalogue: {cat['items']} items ({cat['with_image']} with an image, "
        f"{cat['with_audio']} with audio, {cat['multimodal']} with both); "
        f"ingest: {out['media_ingest']}"
    )
    if "movielens_config" in out:
        print(f"MovieLens-100K films: {out['movielens_ingest']}")
        print(f"MovieLens config: {out['movielens_config']}")
    print(f"config: {out['media_config']}  (fusionrec --config {out['media_config']} serve)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import app

    argv = (["--config", args.config] if args.config else []) + list(args.app_args)
    return int(app.main(argv))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fusionrec", description="Local multimodal recommendation agent."
    )
    p.add_argument(
        "--config", help="TOML config file (defaults are documented in retrieval/config.py)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "ingest", help="encode a catalogue (JSONL/CSV/Parquet) into the vector store"
    )
    s.add_argument("catalogue")
    s.add_argument("--store", help="store folder (default ~/.fusionrec/store)")
    s.add_argument("--report", help="where to write the ingest report JSON")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser(
        "demo-catalogue", help="build the media demo catalogue (Debian/PyPI media, cached)"
    )
    s.add_argument("--dir", default="~/.fusionrec/demo")
    s.set_defaults(func=cmd_demo_catalogue)

    s = sub.add_parser("recommend", help="top-k recommendations for a user")
    s.add_argument("--user", required=True)
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--query", help="what the user asks for, in words")
    s.add_argument("--store")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_recommend)

    s = sub.add_parser("explain", help="why an item is (or is not) recommended to a user")
    s.add_argument("--user", required=True)
    s.add_argument("--item", required=True)
    s.add_argument("--store")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("eval", help="leave-last-out evaluation: MovieLens-100K or your own data")
    s.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "redial"])
    s.add_argument("--data", help="--dataset redial: directory with test.jsonl, entity2id.json")
    s.add_argument(
        "--protocol",
        default="retrieval",
        choices=["retrieval", "rerank"],
        help="retrieval: full-ranking leave-last-out of every retriever; rerank: the LLM "
        "re-ranker over 20 candidates per user (sampled and full protocols, alpha tuned on "
        "validation users; LLM scores cached beside --out)",
    )
    r = s.add_argument_group("--protocol rerank")
    r.add_argument("--model", default="qwen2.5-coder-1.5b", help="LLM (packaged name or folder)")
    r.add_argument("--kind", default="llm-pointwise", choices=["llm-pointwise", "llm-listwise"])
    r.add_argument("--users", type=int, default=200, help="test users")
    r.add_argument("--val-users", type=int, default=50, help="validation users (tune alpha)")
    r.add_argument("--candidates", type=int, default=20)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-seconds", type=float, default=None, help="stop scoring new users")
    r.add_argument("--threads", type=int, default=2, help="torch threads")
    r.add_argument("--dtype", default=None, help="bfloat16 / float32 (default: by CPU)")
    s.add_argument(
        "--interactions", help="your interactions CSV/Parquet (user_id,item_id,rating,timestamp)"
    )
    s.add_argument("--items", help="your items file (id,title,...)")
    s.add_argument(
        "--out", required=True, help="result JSON; a Markdown table is written beside it"
    )
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser(
        "prepare-llm",
        help="verify (SHA-256) and convert the packaged LLM once; show what backend 'auto' picks",
    )
    s.add_argument("--model", help="packaged model name (default: config's)")
    s.add_argument(
        "--refresh-probe", action="store_true", help="measure the backends again for 'auto'"
    )
    s.set_defaults(func=cmd_prepare_llm)

    s = sub.add_parser("demo", help="build the demo catalogue, ingest it and MovieLens-100K")
    s.add_argument("--dir", default="~/.fusionrec/demo")
    s.add_argument("--no-movielens", action="store_true", help="skip the MovieLens-100K store")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser(
        "serve",
        help="serve the Gradio app on 127.0.0.1 (app flags pass through)",
        add_help=False,  # `fusionrec serve --help` shows app.py's options
    )
    s.add_argument(
        "app_args",
        nargs=argparse.REMAINDER,
        help="app.py options: --host, --port, --allow-remote, --upload-dir, --concurrency",
    )
    s.set_defaults(func=cmd_serve)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; everything after `serve` goes to app.py untouched.

    argparse cannot pass options such as `--host` through a REMAINDER positional, so the
    words after the `serve` sub-command are split off here and given to `app.parse_args`
    (which checks them, so `fusionrec serve --bogus` fails before anything loads).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    at, n = None, 0
    while n < len(words):  # find the sub-command: the first word that is not an option
        if words[n] == "--config":
            n += 2
            continue
        if not words[n].startswith("-"):
            at = n if words[n] == "serve" else None
            break
        n += 1
    parser = build_parser()
    if at is None:
        return parser.parse_args(words)
    args = parser.parse_args(words[: at + 1])
    args.app_args = words[at + 1 :]
    import app

    app.parse_args(args.app_args)  # exits with app.py's usage on a bad option, or for --help
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except FusionrecError as e:
        print(f"fusionrec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fusionrec: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
