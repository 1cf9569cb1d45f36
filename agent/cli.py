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
        args.catalogue, store, Encoders.from_config(cfg.encoders), batch_size=cfg.encoders.batch_size,
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
    from retrieval.demo_catalogue import build_demo_catalogue

    path = build_demo_catalogue(Path(args.dir).expanduser())
    print(f"demo catalogue: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fusionrec", description="Local multimodal recommendation agent.")
    p.add_argument("--config", help="TOML config file (defaults are documented in retrieval/config.py)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="encode a catalogue (JSONL/CSV/Parquet) into the vector store")
    s.add_argument("catalogue")
    s.add_argument("--store", help="store folder (default ~/.fusionrec/store)")
    s.add_argument("--report", help="where to write the ingest report JSON")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("demo-catalogue", help="build the demo catalogue from packaged CC0 assets")
    s.add_argument("--dir", default="~/.fusionrec/demo")
    s.set_defaults(func=cmd_demo_catalogue)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
