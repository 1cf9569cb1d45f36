"""Item records and catalogue loading (JSONL, CSV, Parquet) with per-row errors.

Every value is checked by type before use: a row whose `tags` is a number, whose title is a
list, or whose text holds lone surrogates becomes one `RowError` naming its field and row;
the loader never raises for a row, so one bad row cannot stop the good ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import CatalogueError

KNOWN_COLUMNS = ("id", "title", "description", "tags", "image", "audio", "metadata")
MAX_TEXT_CHARS = 20_000  # descriptions longer than this are rejected, not silently cut
MAX_TITLE_CHARS = 500  # titles longer than this are rejected
MAX_ID_CHARS = 256  # ids longer than this are rejected (they are keys in every collection)
MAX_TAGS = 100  # rows with more tags than this are rejected
MAX_TAG_CHARS = 200  # rows with a longer single tag are rejected
MAX_METADATA_CHARS = 20_000  # metadata (incl. unknown columns) longer than this as JSON: rejected
MAX_DEPTH = 32  # nesting depth of metadata values beyond which a row is rejected


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


class _FieldError(ValueError):
    """One field of one row is unusable; parse_row turns it into a RowError."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _kind(value: Any) -> str:
    """How a JSON user would name the type of `value` in an error message."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _show(text: str) -> str:
    """`text` safe to write as UTF-8 (lone surrogates escaped) for messages and reports."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain(value: Any, depth: int = 0) -> Any:
    """Numpy/pandas/pyarrow values -> plain JSON-like Python (NaN/NA -> None).

    Raises:
        _FieldError: nesting deeper than MAX_DEPTH or bytes that are not UTF-8.
    """
    if depth > MAX_DEPTH:
        raise _FieldError("metadata", f"nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing markers
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise _FieldError("metadata", "binary value that is not UTF-8 text") from e
    if hasattr(value, "tolist"):  # numpy scalars and arrays (Parquet list columns)
        return _plain(value.tolist(), depth + 1)
    return str(value)  # timestamps, decimals: kept as their text


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _text(value: Any, name: str, *, limit: int) -> str:
    """A text field: text or a number (not true/false, lists or objects), stripped, bounded."""
    if _is_missing(value):
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _FieldError(name, f"{name} must be text, got {_kind(value)}")
    text = str(value).strip()
    if not _valid_unicode(text):
        raise _FieldError(name, f"{name} is not valid Unicode (lone surrogate escapes)")
    if "\ufffd" in text:
        raise _FieldError(name, f"{name} is not valid UTF-8")
    if len(text) > limit:
        raise _FieldError(name, f"{name} is {len(text):,} characters; the limit is {limit:,}")
    return text


def _as_tags(value: Any) -> tuple[str, ...]:
    """Tags from a list, a JSON list in a string, or a comma/pipe-separated string."""
    if _is_missing(value):
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                value = text.strip("[]").split(",")
        else:
            value = text.replace("|", ",").split(",")
    wanted = "tags must be a list of text or a comma-separated string"
    if not isinstance(value, list):
        raise _FieldError("tags", f"{wanted}, got {_kind(value)}")
    tags: list[str] = []
    for tag in value:
        if tag is None:
            continue
        if isinstance(tag, bool) or not isinstance(tag, (str, int, float)):
            raise _FieldError("tags", f"{wanted}; found {_kind(tag)} in the list")
        text = str(tag).strip()
        if text:
            tags.append(text)
    if len(tags) > MAX_TAGS:
        raise _FieldError("tags", f"{len(tags):,} tags; the limit is {MAX_TAGS}")
    if any(len(t) > MAX_TAG_CHARS for t in tags):
        raise _FieldError("tags", f"a tag is longer than {MAX_TAG_CHARS} characters")
    if not all(_valid_unicode(t) for t in tags):
        raise _FieldError("tags", "tags are not valid Unicode (lone surrogate escapes)")
    return tuple(tags)


def _resolve(path_or_url: Any, base: Path, name: str) -> str | None:
    """An absolute path (relative ones are taken from the catalogue's folder) or a URL."""
    if _is_missing(path_or_url):
        return None
    if not isinstance(path_or_url, str):
        raise _FieldError(name, f"{name} must be a file path or URL, got {_kind(path_or_url)}")
    text = path_or_url.strip()
    if "\x00" in text or not _valid_unicode(text):
        raise _FieldError(name, f"{name} is not a usable file path")
    if "://" in text:
        return text
    try:
        p = Path(text).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())
    except (OSError, ValueError, RuntimeError) as e:  # too long, a symlink loop, ...
        raise _FieldError(name, f"{name} is not a usable file path") from e


def _metadata(raw: dict[str, Any]) -> dict[str, Any]:
    """The `metadata` field (object or JSON text) plus every unknown column, as plain JSON."""
    meta = _plain(raw.get("metadata"))
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else None
        except (json.JSONDecodeError, RecursionError):
            meta = {"metadata": meta}
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        meta = {"metadata": meta}  # a bare value is kept, not dropped
    meta = _plain(meta)  # also bounds the depth of what json.loads built
    for key, value in raw.items():  # unknown columns are kept as metadata, not dropped
        if key not in KNOWN_COLUMNS:
            value = _plain(value)
            if not _is_missing(value):
                meta[str(key)] = value
    try:
        dumped = json.dumps(meta, ensure_ascii=False)
        dumped.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _FieldError("metadata", "metadata is not valid Unicode (lone surrogates)") from e
    except (ValueError, RecursionError) as e:
        raise _FieldError("metadata", f"metadata cannot be stored as JSON: {e}") from e
    if len(dumped) > MAX_METADATA_CHARS:
        raise _FieldError(
            "metadata",
            f"metadata is {len(dumped):,} characters as JSON; the limit is {MAX_METADATA_CHARS:,}",
        )
    return meta


def _item_id(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _FieldError("id", f"id must be text or a number, got {_kind(value)}")
    item_id = str(value).strip()
    if not _valid_unicode(item_id):
        raise _FieldError("id", "id is not valid Unicode (lone surrogate escapes)")
    if len(item_id) > MAX_ID_CHARS:
        raise _FieldError("id", f"id is {len(item_id):,} characters; the limit is {MAX_ID_CHARS}")
    return item_id


def parse_row(
    raw: dict[str, Any], *, base: Path, row: int | None = None, missing_title: str | None = None
) -> Item | RowError:
    """Turn one raw row into an Item, or a RowError saying which field is wrong. Never raises.

    `missing_title` (e.g. "item {id}") gives a row without a title that placeholder instead
    of an error; `read_catalogue` still reports it.
    """
    item_id: str | None = None
    try:
        raw = {str(k): v for k, v in raw.items()}
        rid = _plain(raw.get("id"))
        if _is_missing(rid):
            return RowError(None, "id", "missing id", row)
        item_id = _item_id(rid)
        title = _text(_plain(raw.get("title")), "title", limit=MAX_TITLE_CHARS)
        if not title and missing_title is None:
            return RowError(item_id, "title", "missing title", row)
        title = title or missing_title.format(id=item_id)  # type: ignore[union-attr]
        return Item(
            id=item_id,
            title=title,
            description=_text(_plain(raw.get("description")), "description", limit=MAX_TEXT_CHARS),
            tags=_as_tags(_plain(raw.get("tags"))),
            image=_resolve(_plain(raw.get("image")), base, "image"),
            audio=_resolve(_plain(raw.get("audio")), base, "audio"),
            metadata=_metadata(raw),
        )
    except _FieldError as e:
        return RowError(item_id, e.field, _show(str(e)), row)
    except RecursionError:
        return RowError(item_id, "row", f"nested more than {MAX_DEPTH} levels deep", row)


def _read_rows(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """(row number, raw row) pairs, plus errors for lines that are not JSON objects."""
    suffix = path.suffix.lower()
    rows: list[tuple[int, dict[str, Any]]] = []
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
                except RecursionError:
                    errors.append(RowError(None, "row", f"line {n} is nested too deeply", n))
                    continue
                if not isinstance(obj, dict):
                    errors.append(RowError(None, "row", f"line {n} is not a JSON object", n))
                    continue
                rows.append((n, obj))
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
    first = 2 if suffix == ".csv" else 1  # CSV line numbers count the header
    for n, rec in enumerate(df.to_dict(orient="records"), start=first):
        rows.append((n, rec))
    return rows, errors


def read_catalogue(
    path: str | Path, *, missing_title: str | None = None
) -> tuple[list[Item], list[RowError]]:
    """Read every good row; bad rows and duplicate ids come back as RowErrors.

    With `missing_title` (a format such as "item {id}"), rows lacking only a title are kept
    under that placeholder and also reported, with the error "missing title; kept as ...".

    Raises:
        CatalogueError: the file is missing, unreadable, or has no `id` column at all.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CatalogueError(f"catalogue file not found: {p}")
    rows, errors = _read_rows(p)
    if rows and not any("id" in r for _, r in rows):
        raise CatalogueError(
            f"{p.name}: no 'id' column; expected columns {', '.join(KNOWN_COLUMNS)}"
        )
    if not rows and not errors:
        errors.append(RowError(None, "catalogue", f"{p.name} has no rows; nothing to ingest"))
    unknown = sorted({str(k) for _, r in rows for k in r if k not in KNOWN_COLUMNS})
    for col in unknown:  # reported once per column, not per row; the values are kept
        shown = _show(col)
        errors.append(RowError(None, shown, f"unknown column '{shown}': kept as item metadata"))
    items: list[Item] = []
    seen: set[str] = set()
    base = p.parent.resolve()
    for row, raw in rows:
        parsed = parse_row(raw, base=base, row=row, missing_title=missing_title)
        if (
            missing_title is not None
            and isinstance(parsed, Item)
            and parsed.title == missing_title.format(id=parsed.id)
            and _is_missing(_plain(raw.get("title")))
            and parsed.id not in seen
        ):
            errors.append(
                RowError(parsed.id, "title", f"missing title; kept as '{parsed.title}'", row)
            )
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
