"""`[store] search_ef` reaches the HNSW index of new collections (1M items need more than 256)."""

from __future__ import annotations

from pathlib import Path

from retrieval.config import FusionrecConfig
from retrieval.store import VectorStore


def test_search_ef_from_config_sets_new_collections(tmp_path: Path) -> None:
    cfg = FusionrecConfig.from_dict({"store": {"path": str(tmp_path), "search_ef": 1024}})
    col = VectorStore.from_config(cfg).collection("text")
    assert col.metadata["hnsw:search_ef"] == 1024
    default = VectorStore.open(tmp_path / "other").collection("text")
    assert default.metadata["hnsw:search_ef"] == 256
