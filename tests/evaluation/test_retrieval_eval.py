"""The evaluation command's function on a tiny synthetic log: shape, files, determinism, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evaluation.retrieval import run_eval, split_leave_last_out, tune_weights
from retrieval.errors import CatalogueError


class HashingTextEncoder:
    """Deterministic bag-of-words hashing; tests evaluation plumbing only, not text quality."""

    name, modality, dim = "hashing", "text", 32

    def encode(self, inputs: Any, *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        out = np.zeros((len(texts), self.dim), np.float32)
        for r, t in enumerate(texts):
            for w in t.lower().split():
                out[r, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_query(self, inputs: Any, *, batch_size: int = 32) -> np.ndarray:
        return self.encode(inputs)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim}


def _files(tmp_path: Path) -> tuple[Path, Path]:
    """40 users walk a ring of 30 items (i -> i+1 -> ...), 8 steps each; one user is too short."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        start = int(rng.integers(30))
        rows += [
            {
                "user_id": f"u{u}",
                "item_id": f"m{(start + k) % 30}",
                "rating": 4,
                "timestamp": 1000 * u + k,
            }
            for k in range(8)
        ]
    rows += [{"user_id": "short", "item_id": "m1", "rating": 5, "timestamp": 5}]
    inter = tmp_path / "inter.csv"
    pd.DataFrame(rows).to_csv(inter, index=False)
    items = tmp_path / "items.csv"
    genre = ["space", "love", "crime"]
    pd.DataFrame(
        {
            "id": [f"m{k}" for k in range(30)],
            "title": [f"Film {k}" for k in range(30)],
            "description": [f"a {genre[k % 3]} story number {k}" for k in range(30)],
        }
    ).to_csv(items, index=False)
    return inter, items


def test_run_eval_on_user_files(tmp_path: Path) -> None:
    inter, items = _files(tmp_path)
    out = tmp_path / "report" / "eval.json"
    kw = {
        "interactions": inter,
        "items": items,
        "text_encoder": HashingTextEncoder(),
        "cache_dir": tmp_path,
    }
    report = run_eval(out=out, **kw)
    assert report["protocol"] == "leave-last-out-full" and report["users"] == 40
    assert report["dropped_users"] == 1 and report["dataset"] == "inter"
    for name in ("popularity", "itemknn", "ease", "content-text", "hybrid"):
        row = report["models"][name]
        assert set(row) == {
            "recall@10",
            "recall@20",
            "ndcg@10",
            "ndcg@20",
            "hr@10",
            "recall@50",
            "seconds",
        }
        assert all(0.0 <= row[k] <= 1.0 for k in row if k != "seconds")
    # the ring is perfectly sequential: the hybrid (with transitions) must find the next item
    assert report["models"]["hybrid"]["hr@10"] > report["models"]["popularity"]["hr@10"]
    assert json.loads(out.read_text())["models"]["hybrid"] == report["models"]["hybrid"]
    table = out.with_suffix(".md").read_text()
    assert "| hybrid |" in table and "ndcg@10" in table
    again = run_eval(**kw)

    def strip(r: dict[str, Any]) -> dict[str, Any]:
        return {
            m: {k: v for k, v in row.items() if k != "seconds"} for m, row in r["models"].items()
        }

    assert strip(again) == strip(report)  # deterministic


def test_run_eval_needs_both_files(tmp_path: Path) -> None:
    inter, _ = _files(tmp_path)
    with pytest.raises(ValueError, match="both"):
        run_eval(interactions=inter, text_encoder=HashingTextEncoder())
    with pytest.raises(ValueError, match="valid: ml-100k"):
        run_eval(dataset="ml-1m", text_encoder=HashingTextEncoder())


def test_run_eval_user_errors_surface(tmp_path: Path) -> None:
    inter, items = _files(tmp_path)
    df = pd.read_csv(inter).drop(columns=["timestamp"])
    df.to_csv(inter, index=False)
    with pytest.raises(CatalogueError, match="timestamp"):
        run_eval(interactions=inter, items=items, text_encoder=HashingTextEncoder())


def test_split_and_tuning() -> None:
    df = pd.DataFrame(
        {
            "user_id": ["a"] * 4 + ["b"] * 3,
            "item_id": list("wxyzwxy"),
            "rating": 1.0,
            "timestamp": [1, 2, 3, 3, 1, 2, 3],
        }
    )
    train, target = split_leave_last_out(df, 1)
    assert target["item_id"].tolist() == ["z", "y"] and len(train) == 5
    _, val = split_leave_last_out(df, 2)
    assert val["item_id"].tolist() == ["y", "x"]
    good = np.array([[0.0, 1.0, 0.2]])
    bad = np.array([[1.0, 0.0, 0.2]])
    weights, best = tune_weights(
        {"ease": bad, "other": good}, np.zeros((1, 3), bool), np.array([1])
    )
    assert weights["other"] > weights["ease"] and best == 1.0
