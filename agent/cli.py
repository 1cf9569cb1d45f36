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
    from retrieval.datasets.demo_catalogue import build_demo_catalogue

    path = build_demo_catalogue(Path(args.dir).expanduser())
    print(f"demo catalogue: {path}")
    return 0


def _agent(args: argparse.Namespace) -> Any:
    from agent.agent import RecommendationAgent

    return RecommendationAgent.from_config(_config(args))


def cmd_recommend(args: argparse.Namespace) -> int:
    result = _agent(args).recommend(args.user, k=args.k, query=args.query)
    lines = [
        f"{r.rank:>2}. {r.item.title}  [{r.item.id}]  score {r.score:.3f}" for r in result.items
    ]
    if result.note:
        lines.append(f"note: {result.note}")
    _emit(result.to_dict(), args.json, "\n".join(lines))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    exp = _agent(args).explain(args.user, args.item)
    _emit(exp.to_dict(), args.json, exp.text)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from evaluation.retrieval import run_eval

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
    print("\n".join(rows) + f"\nusers: {result['users']}; written to {args.out}")
    return 0


def cmd_prepare_llm(args: argparse.Namespace) -> int:
    from agent.llm import prepare_llm

    cfg = _config(args)
    name = args.model or cfg.llm.model
    folder = prepare_llm(name, cache_dir=cfg.model_cache())
    print(f"{name}: verified and converted at {folder}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Demo catalogue + MovieLens-100K films and users in one store, and a config pointing at it."""
    from retrieval.datasets.demo_catalogue import build_demo_catalogue
    from retrieval.datasets.movielens import load_movielens_items
    from retrieval.ingest import Encoders, ingest_catalogue, ingest_items
    from retrieval.store import VectorStore

    root = Path(args.dir).expanduser()
    catalogue = build_demo_catalogue(root)
    cfg_path = root / "fusionrec.toml"
    store_path = root / "store"
    cfg_path.write_text(
        f'[store]\npath = "{store_path}"\n\n[data]\ninteractions = "ml-100k"\n'
        f'users_path = "{root / "users.jsonl"}"\n'
    )
    args.config, args.store = str(cfg_path), None
    cfg = _config(args)
    store = VectorStore.from_config(cfg)
    encoders = Encoders.from_config(cfg.encoders)
    report = ingest_catalogue(catalogue, store, encoders, show_progress=not args.quiet)
    print(f"demo assets: {report.summary()}")
    films = ingest_items(load_movielens_items(), store, encoders, show_progress=not args.quiet)
    print(f"MovieLens-100K films: {films.summary()}")
    print(f"config: {cfg_path}  (fusionrec --config {cfg_path} serve)")
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

    s = sub.add_parser("demo-catalogue", help="build the demo catalogue from packaged CC0 assets")
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
    s.add_argument("--dataset", default="ml-100k", choices=["ml-100k"])
    s.add_argument(
        "--interactions", help="your interactions CSV/Parquet (user_id,item_id,rating,timestamp)"
    )
    s.add_argument("--items", help="your items file (id,title,...)")
    s.add_argument(
        "--out", required=True, help="result JSON; a Markdown table is written beside it"
    )
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("prepare-llm", help="verify (SHA-256) and convert the packaged LLM once")
    s.add_argument("--model", help="packaged model name (default: config's)")
    s.set_defaults(func=cmd_prepare_llm)

    s = sub.add_parser("demo", help="build the demo catalogue, ingest it and MovieLens-100K")
    s.add_argument("--dir", default="~/.fusionrec/demo")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="serve the Gradio app on 127.0.0.1 (app flags pass through)")
    s.add_argument(
        "app_args",
        nargs=argparse.REMAINDER,
        help="app.py options: --host, --port, --allow-remote, --upload-dir, --concurrency",
    )
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
