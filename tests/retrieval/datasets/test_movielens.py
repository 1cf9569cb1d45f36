"""MovieLens-100K from the recbole wheel, and the user-data loader's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from retrieval.datasets.movielens import _title_variants, load_movielens, load_user_data
from retrieval.errors import CatalogueError


def test_movielens_loads_in_place_with_enriched_text() -> None:
    data = load_movielens()
    inter = data.interactions
    assert len(data.items) == 1682 and len(inter) == 100_000 and inter["user_id"].nunique() == 943
    assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert set(inter["item_id"]) <= {it.id for it in data.items}
    assert (inter.groupby("user_id")["timestamp"].diff().dropna() >= 0).all()  # time-ordered
    enriched = [it for it in data.items if it.metadata["enriched"]]
    assert len(enriched) > 1200
    toy = next(it for it in data.items if it.id == "1")
    assert toy.title == "Toy Story (1995)" and "Animation" in toy.tags
    assert "John Lasseter" in toy.text()


def test_title_variants_handle_articles_and_aka() -> None:
    assert "theusualsuspects" in _title_variants("Usual Suspects, The")
    assert "thekiller" in _title_variants("Die xue shuang xiong (Killer, The)")


def _write(tmp_path: Path, rows: list[dict], items: int = 5) -> tuple[Path, Path]:
    cat = tmp_path / "items.jsonl"
    cat.write_text(
        "\n".join(json.dumps({"id": f"i{k}", "title": f"Item {k}"}) for k in range(items))
    )
    inter = tmp_path / "inter.csv"
    pd.DataFrame(rows).to_csv(inter, index=False)
    return inter, cat


def _rows(user: str, n: int, start: int = 0) -> list[dict]:
    return [
        {"user_id": user, "item_id": f"i{k}", "rating": 4, "timestamp": 100 + start + k}
        for k in range(n)
    ]


def test_user_data_ok_drops_short_users(tmp_path: Path) -> None:
    inter, cat = _write(tmp_path, _rows("a", 4) + _rows("b", 2) + _rows("c", 3))
    data = load_user_data(inter, cat)
    assert data.dropped_users == 1
    assert sorted(data.interactions["user_id"].unique()) == ["a", "c"]
    assert data.interactions["item_id"].tolist()[:2] == ["i0", "i1"]


def test_user_data_parquet_and_date_timestamps(tmp_path: Path) -> None:
    rows = _rows("a", 3)
    for k, r in enumerate(rows):
        r["timestamp"] = f"2024-01-0{3 - k}"  # newest first in the file
    inter = tmp_path / "inter.parquet"
    pd.DataFrame(rows).to_parquet(inter)
    _, cat = _write(tmp_path, [])
    data = load_user_data(inter, cat)
    assert data.interactions["item_id"].tolist() == ["i2", "i1", "i0"]


def test_user_data_missing_column(tmp_path: Path) -> None:
    inter, cat = _write(
        tmp_path, [{k: v for k, v in r.items() if k != "rating"} for r in _rows("a", 3)]
    )
    with pytest.raises(CatalogueError, match="missing column.*rating"):
        load_user_data(inter, cat)


def test_user_data_unknown_item(tmp_path: Path) -> None:
    inter, cat = _write(
        tmp_path, _rows("a", 3) + [{"user_id": "a", "item_id": "zzz", "rating": 1, "timestamp": 1}]
    )
    with pytest.raises(CatalogueError, match="1 item id.*zzz"):
        load_user_data(inter, cat)


def test_user_data_empty_after_dropping(tmp_path: Path) -> None:
    inter, cat = _write(tmp_path, _rows("a", 2) + _rows("b", 1))
    with pytest.raises(CatalogueError, match="no user has at least 3.*2 user"):
        load_user_data(inter, cat)


def test_user_data_missing_file_and_bad_format(tmp_path: Path) -> None:
    _, cat = _write(tmp_path, [])
    with pytest.raises(CatalogueError, match="not found"):
        load_user_data(tmp_path / "nope.csv", cat)
    bad = tmp_path / "inter.txt"
    bad.write_text("x")
    with pytest.raises(CatalogueError, match="unsupported"):
        load_user_data(bad, cat)
