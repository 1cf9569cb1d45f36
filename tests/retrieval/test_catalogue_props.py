"""Bad rows never stop good rows: explicit hostile cases and property tests over the loader.

Property: for any JSON values in any field, `read_catalogue` returns (it raises only the
documented whole-file `CatalogueError`), and every row ends up either as an item or as a
report entry carrying its row number; through `ingest_catalogue` into a real Chroma store
with the real text encoder, every parsed item is stored and can be rebuilt from the store.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.catalogue import KNOWN_COLUMNS, Item, parse_row, read_catalogue
from retrieval.errors import CatalogueError

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None), max_size=30)  # lone surrogates included
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from([*KNOWN_COLUMNS, "colour", "year", "__row__"])
ROW = st.dictionaries(FIELDS, JSON_VALUES, max_size=8)
GOOD_ROW = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=12), "title": st.text(min_size=1, max_size=40)},
    optional={k: JSON_VALUES for k in ("description", "tags", "metadata", "colour")},
)
LINE = ROW | GOOD_ROW | JSON_VALUES  # non-object lines must be reported too
_COUNTER = itertools.count()


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    # ensure_ascii keeps lone surrogates as \udxxx escapes, as a hostile file would carry them
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
    return path


def _accounted(path: Path, n_rows: int) -> tuple[list[Item], list[Any]]:
    """Read `path`; assert each of its `n_rows` lines is an item or a row-numbered error."""
    items, errors = read_catalogue(path)
    reported = {e.row for e in errors if e.row is not None}
    assert len(items) + len(reported) == n_rows, (items, errors)
    for item in items:
        assert isinstance(item.id, str) and item.id and isinstance(item.title, str)
        assert all(isinstance(t, str) and t for t in item.tags)
        assert item.image is None or isinstance(item.image, str)
        assert item.audio is None or isinstance(item.audio, str)
        json.dumps(item.metadata, allow_nan=True).encode("utf-8")  # storable as UTF-8 JSON
        item.text().encode("utf-8")  # no lone surrogates reach the encoders
    json.dumps([e.to_dict() for e in errors], ensure_ascii=False).encode("utf-8")  # reportable
    return items, errors


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINE, min_size=1, max_size=6))
def test_any_json_in_any_field_is_an_item_or_a_report_entry(tmp_path_factory, lines) -> None:  # type: ignore[no-untyped-def]
    path = _write_jsonl(tmp_path_factory.mktemp("c") / "c.jsonl", lines)
    if not any(isinstance(r, dict) and "id" in r for r in lines) and any(
        isinstance(r, dict) for r in lines
    ):
        with pytest.raises(CatalogueError, match="no 'id' column"):
            read_catalogue(path)  # the one documented whole-file refusal
        return
    _accounted(path, len(lines))


@settings(max_examples=300, deadline=None)
@given(raw=st.dictionaries(st.sampled_from(KNOWN_COLUMNS), JSON_VALUES))
def test_parse_row_never_raises(raw: dict[str, Any]) -> None:
    got = parse_row(raw, base=Path("/tmp"), row=7)
    assert got.row == 7 if not isinstance(got, Item) else got.id


@pytest.mark.parametrize("tags", [5, 2.5, True, False, 0, {"a": 1}, [["nested"]], [{"a": 1}]])
def test_tags_of_the_wrong_type_are_a_row_error_not_a_crash(tmp_path: Path, tags: Any) -> None:
    """Issue 11 #4: `"tags": 5` aborted the whole ingest with 'int' is not iterable."""
    path = _write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "bad", "title": "Bad tags", "tags": tags}, {"id": "ok", "title": "Fine"}],
    )
    items, errors = read_catalogue(path)
    assert [i.id for i in items] == ["ok"]
    assert [(e.id, e.field, e.row) for e in errors] == [("bad", "tags", 1)]
    assert "tags" in errors[0].error and "list" in errors[0].error


def test_parquet_int_bool_and_list_columns(tmp_path: Path) -> None:
    """An int Parquet `tags` column, bool ids, list-valued extra columns: per-row results."""
    pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "title": ["A", "B", "C"],
            "tags": pd.array([5, 7, 9], dtype="int64"),
            "scores": [[1, 2], [3], []],
            "flag": [True, False, True],
        }
    ).to_parquet(tmp_path / "ints.parquet")
    items, errors = read_catalogue(tmp_path / "ints.parquet")
    assert items == []
    assert sorted((e.id, e.field) for e in errors if e.row is not None) == [
        ("a", "tags"),
        ("b", "tags"),
        ("c", "tags"),
    ]
    pd.DataFrame(
        {
            "id": [1, 2, 3],
            "title": ["A", None, "C"],
            "tags": [["x", "y"], None, ["z"]],
            "scores": [np.array([1.5, 2.0]), np.array([]), np.array([3.0])],
            "flag": [True, False, None],
        }
    ).to_parquet(tmp_path / "lists.parquet")
    items, errors = read_catalogue(tmp_path / "lists.parquet")
    assert [(i.id, i.tags) for i in items] == [("1", ("x", "y")), ("3", ("z",))]
    assert items[0].metadata == {"scores": [1.5, 2.0], "flag": True}
    assert [(e.id, e.field) for e in errors if e.row is not None] == [("2", "title")]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"id": True, "title": "t"}, "id"),
        ({"id": {"x": 1}, "title": "t"}, "id"),
        ({"id": "x" * 1000, "title": "t"}, "id"),
        ({"id": "a", "title": ["t"]}, "title"),
        ({"id": "a", "title": "t", "description": {"d": 1}}, "description"),
        ({"id": "a", "title": "t", "image": 5}, "image"),
        ({"id": "a", "title": "t", "audio": "a\x00b.wav"}, "audio"),
        ({"id": "a", "title": "t\ud800"}, "title"),
        ({"id": "a", "title": "t", "colour": "\udfff"}, "metadata"),
        ({"id": "a", "title": "t", "tags": ["x"] * 1000}, "tags"),
    ],
)
def test_hostile_field_values_are_reported_by_field(
    tmp_path: Path, row: dict[str, Any], field: str
) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [row, {"id": "ok", "title": "Fine"}])
    items, errors = read_catalogue(path)
    assert [i.id for i in items] == ["ok"]
    assert [(e.field, e.row) for e in errors if e.row is not None] == [(field, 1)]


def test_deeply_nested_line_is_reported(tmp_path: Path) -> None:
    """json.loads raises RecursionError (not JSONDecodeError) on very deep nesting."""
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "title": "A"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    items, errors = read_catalogue(path)
    assert [i.id for i in items] == ["a"]
    assert [(e.field, e.row) for e in errors] == [("row", 2)]


@pytest.fixture(scope="module")
def text_store(tmp_path_factory, encoders):  # type: ignore[no-untyped-def]
    from retrieval.ingest import Encoders
    from retrieval.store import VectorStore

    root = tmp_path_factory.mktemp("store")
    return root, Encoders(text=encoders.text), VectorStore


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(GOOD_ROW | ROW, min_size=1, max_size=5))
def test_every_row_is_ingested_or_reported(text_store, lines) -> None:  # type: ignore[no-untyped-def]
    """Through the real ingest (MiniLM + Chroma): rows are stored or in the report, no raise."""
    from retrieval.ingest import ingest_catalogue, items_from_store

    root, encoders, store_cls = text_store
    n = next(_COUNTER)
    lines = [{**r, "id": r.get("id", f"gen{n}")} if i == 0 else r for i, r in enumerate(lines)]
    path = _write_jsonl(root / f"c{n}.jsonl", lines)
    items, _ = _accounted(path, len(lines))
    store = store_cls.open(root / "chroma", prefix=f"p{n}")
    report = ingest_catalogue(path, store, encoders, batch_size=4)
    assert report.added == len(items)
    rows_reported = {e.row for e in report.failed if e.row is not None}
    assert report.added + len(rows_reported) == len(lines)
    back = items_from_store(store)
    for item in items:
        got = back[item.id]
        assert (got.title, got.tags, got.description) == (item.title, item.tags, item.description)
        assert json.dumps(got.metadata, sort_keys=True) == json.dumps(item.metadata, sort_keys=True)
