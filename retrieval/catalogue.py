"""Item records and catalogue loading (JSONL, CSV, Parquet) with per-row errors."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import CatalogueError

KNOWN_COLUMNS = ("id", "title", "description", "tags", "image", "audio", "metadata")
MAX_TEXT_CHARS = 20_000  # descriptions longer than this are rejected, not silently cut
MAX_TITLE_CHARS = 500


@dataclass(frozen=True)
class Item:
    """One catalogue entry. `image`/`audio` are absolute paths (or URLs) or None."""

    id: str
    title: str
    description: str = ""
    tags: tuple[str, ...] = ()
    image: str | None = None
    audio: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The text the text encoder sees: title, tags and description."""
        parts = [self.title]
        if self.tags:
            parts.append("Tags: " + ", ".join(self.tags) + ".")
        if self.description:
            parts.append(self.description)
        return "\n".join(parts)


@dataclass(frozen=True)
class RowError:
    """Why one row (or one field of a row) could not be used."""

    id: str | None
    field: str
    error: str
    row: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "field": self.field, "error": self.error, "row": self.row}


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _as_tags(value: Any) -> tuple[str, ...]:
    if _is_missing(value):
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text.strip("[]").split(",")
        else:
            value = text.replace("|", ",").split(",")
    if hasattr(value, "tolist"):
        value = value.tolist()
    return tuple(str(t).strip() for t in value if str(t).strip())


def _resolve(path_or_url: Any, base: Path) -> str | None:
    if _is_missing(path_or_url):
        return None
    text = str(path_or_url).strip()
    if "://" in text:
        return text
    p = Path(text).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def parse_row(raw: dict[str, Any], *, base: Path, row: int | None = None) -> Item | RowError:
    """Turn one raw row into an Item, or a RowError saying which field is wrong."""
    rid = raw.get("id")
    if _is_missing(rid):
        return RowError(None, "id", "missing id", row)
    if isinstance(rid, float) and rid.is_integer():
        rid = int(rid)
    item_id = str(rid).strip()
    title = raw.get("title")
    if _is_missing(title):
        return RowError(item_id, "title", "missing title", row)
    title = str(title).strip()
    if len(title) > MAX_TITLE_CHARS:
        return RowError(item_id, "title", f"title longer than {MAX_TITLE_CHARS} characters", row)
    desc = raw.get("description")
    desc = "" if _is_missing(desc) else str(desc).strip()
    if len(desc) > MAX_TEXT_CHARS:
        return RowError(
            item_id,
            "description",
            f"description is {len(desc):,} characters; the limit is {MAX_TEXT_CHARS:,}",
            row,
        )
    if "\ufffd" in title or "\ufffd" in desc:
        return RowError(item_id, "description", "text is not valid UTF-8", row)
    meta = raw.get("metadata")
    if isinstance(meta, str) and meta.strip():
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"metadata": meta}
    meta = dict(meta) if isinstance(meta, dict) else {}
    for key, value in raw.items():  # unknown columns are kept as metadata, not dropped
        if key not in KNOWN_COLUMNS and not _is_missing(value):
            meta[key] = value.item() if hasattr(value, "item") else value
    return Item(
        id=item_id,
        title=title,
        description=desc,
        tags=_as_tags(raw.get("tags")),
        image=_resolve(raw.get("image"), base),
        audio=_resolve(raw.get("audio"), base),
        metadata=meta,
    )


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], list[RowError]]:
    suffix = path.suffix.lower()
    rows: list[dict[str, Any]] = []
    errors: list[RowError] = []
    if suffix in (".jsonl", ".ndjson"):
        with path.open("rb") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    errors.append(
                        RowError(None, "row", f"line {n} is not valid UTF-8 ({e.reason})", n)
                    )
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    errors.append(RowError(None, "row", f"line {n} is not valid JSON: {e.msg}", n))
                    continue
                if not isinstance(obj, dict):
                    errors.append(RowError(None, "row", f"line {n} is not a JSON object", n))
                    continue
                obj["__row__"] = n
                rows.append(obj)
        return rows, errors
    import pandas as pd

    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding_errors="replace")
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise CatalogueError(
                f"{path.name}: unsupported catalogue format '{suffix}'; "
                "use .jsonl, .csv or .parquet"
            )
    except CatalogueError:
        raise
    except Exception as e:  # pandas raises many types for unreadable files
        raise CatalogueError(f"{path.name}: cannot read catalogue: {e}") from e
    for n, rec in enumerate(df.to_dict(orient="records"), start=2 if suffix == ".csv" else 1):
        rec["__row__"] = n
        rows.append(rec)
    return rows, errors


def read_catalogue(path: str | Path) -> tuple[list[Item], list[RowError]]:
    """Read every good row; bad rows and duplicate ids come back as RowErrors.

    Raises:
        CatalogueError: the file is missing, unreadable, or has no `id` column at all.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CatalogueError(f"catalogue file not found: {p}")
    rows, errors = _read_rows(p)
    if rows and not any("id" in r for r in rows):
        raise CatalogueError(
            f"{p.name}: no 'id' column; expected columns {', '.join(KNOWN_COLUMNS)}"
        )
    if not rows and not errors:
        errors.append(RowError(None, "catalogue", f"{p.name} has no rows; nothing to ingest"))
    unknown = sorted({k for r in rows for k in r if k not in KNOWN_COLUMNS and k != "__row__"})
    for col in unknown:  # reported once per column, not per row; the values are kept
        errors.append(RowError(None, col, f"unknown column '{col}': kept as item metadata"))
    items: list[Item] = []
    seen: set[str] = set()
    for raw in rows:
        row = raw.pop("__row__", None)
        parsed = parse_row(raw, base=p.parent.resolve(), row=row)
        if isinstance(parsed, RowError):
            errors.append(parsed)
        elif parsed.id in seen:
            errors.append(
                RowError(parsed.id, "id", "duplicate id; the first row with it was kept", row)
            )
        else:
            seen.add(parsed.id)
            items.append(parsed)
    return items, errors


def load_catalogue(path: str | Path) -> list[Item]:
    """Strict loader: any bad row raises CatalogueError listing the first problems."""
    items, errors = read_catalogue(path)
    if errors:
        shown = "; ".join(
            f"{e.id or 'row ' + str(e.row)}: {e.field}: {e.error}" for e in errors[:5]
        )
        raise CatalogueError(f"{len(errors)} bad row(s) in {Path(path).name}: {shown}")
    return items
