"""Catalogue loading: every bad row is reported by id and field; good rows survive."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from retrieval.catalogue import MAX_TEXT_CHARS, load_catalogue, read_catalogue
from retrieval.errors import CatalogueError


def _jsonl(path: Path, rows: list[dict | str | bytes]) -> Path:
    with path.open("wb") as fh:
        for r in rows:
            if isinstance(r, bytes):
                fh.write(r + b"\n")
            elif isinstance(r, str):
                fh.write(r.encode() + b"\n")
            else:
                fh.write(json.dumps(r).encode() + b"\n")
    return path


def test_jsonl_bad_rows_reported_good_rows_kept(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "c.jsonl",
        [
            {
                "id": "a",
                "title": "Alpha",
                "description": "first",
                "tags": ["x", "y"],
                "image": "img/a.png",
            },
            {"id": "a", "title": "Alpha again"},
            {"title": "no id"},
            {"id": "b", "title": "Beta", "description": "x" * (MAX_TEXT_CHARS + 1)},
            b'{"id": "c", "title": "Caf\xe9 latin-1"}',
            "{not json",
            {"id": "d", "title": "Delta", "colour": "red", "tags": "calm|warm"},
        ],
    )
    items, errors = read_catalogue(path)
    assert [i.id for i in items] == ["a", "d"]
    assert items[0].image == str((tmp_path / "img/a.png").resolve())
    assert items[1].tags == ("calm", "warm")
    assert items[1].metadata == {"colour": "red"}  # unknown columns are kept, not dropped
    assert any(e.field == "colour" and "unknown column" in e.error for e in errors)
    reasons = {(e.id, e.field) for e in errors}
    assert ("a", "id") in reasons  # duplicate
    assert (None, "id") in reasons  # missing id
    assert ("b", "description") in reasons  # huge text
    assert any("UTF-8" in e.error for e in errors)
    assert any("not valid JSON" in e.error for e in errors)
    with pytest.raises(CatalogueError, match="bad row"):
        load_catalogue(path)


def test_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "title": "One", "description": "d1", "tags": "a,b", "image": "", "audio": ""},
        {
            "id": "2",
            "title": "Two",
            "description": "d2",
            "tags": "c",
            "image": "",
            "audio": "s.wav",
        },
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    a = load_catalogue(tmp_path / "c.csv")
    b = load_catalogue(tmp_path / "c.parquet")
    assert a == b
    assert a[1].audio == str((tmp_path / "s.wav").resolve()) and a[0].image is None


def test_empty_missing_and_unsupported_files(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    items, errors = read_catalogue(tmp_path / "empty.jsonl")
    assert items == [] and [(e.field, "no rows" in e.error) for e in errors] == [
        ("catalogue", True)
    ]
    with pytest.raises(CatalogueError, match="not found"):
        read_catalogue(tmp_path / "nope.jsonl")
    (tmp_path / "c.xlsx").write_text("x")
    with pytest.raises(CatalogueError, match="unsupported"):
        read_catalogue(tmp_path / "c.xlsx")
    pd.DataFrame([{"name": "x"}]).to_csv(tmp_path / "noid.csv", index=False)
    with pytest.raises(CatalogueError, match="no 'id' column"):
        read_catalogue(tmp_path / "noid.csv")
