"""Writing an evaluation report: the JSON, and the Markdown table beside it (one way for all)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def write_report(
    report: Mapping[str, Any], out: str | Path, to_markdown: Callable[[Any], str]
) -> tuple[Path, Path]:
    """Write `out` (JSON, indented) and `out` with `.md` (the protocol's table); both paths."""
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    md = path.with_suffix(".md")
    md.write_text(to_markdown(report))
    return path, md
