"""The Chroma vector store: the only module that imports chromadb.

One collection per vector space (`text`, `image`, `audio`, and the label-bridged
`image-text` / `audio-text`). Each collection records the encoder config that made its
vectors; writing or querying with a different encoder raises instead of mixing spaces.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import StoreError

logger = logging.getLogger(__name__)

SPACES = ("text", "image", "audio", "image-text", "audio-text")
# HNSW settings of new collections; recall/latency against exact search per size in docs/scale.md.
# search_ef 256: recall@50 0.99 at 100k clustered vectors (128 gave 0.82; Chroma's default 100
# less). Chroma applies a changed value to existing collections only through `modify`.
HNSW_SEARCH_EF = 256
HNSW_CONSTRUCTION_EF = 128
# `search_ef = "auto"`: HNSW_SEARCH_EF up to AUTO_EF_BASE_ITEMS items, then growing as a power
# law through the measured 1M point, capped at AUTO_EF_MAX. At 1M on the bench's clustered
# vectors recall@50 of the generator's pool was 0.927 / 0.989 / 0.989 / 0.990 at ef 2048 /
# 2560 / 3072 / 4096 (docs/scale.md round 3): 3072 keeps a step of margin above the cliff
AUTO_EF_BASE_ITEMS = 100_000
AUTO_EF_1M = 3072
AUTO_EF_MAX = 8192


def auto_search_ef(n_items: int) -> int:
    """The HNSW search breadth "auto" picks for a collection of `n_items` vectors.

    HNSW recall at a fixed ef falls as the index grows (0.99 at 100k, 0.49 at 1M for ef 256
    on the bench's vectors), so ef grows with size: 256 up to 100k items, 3072 at 1M, a
    power law between and beyond (only 10k, 100k and 1M are measured), rounded up to a
    multiple of 64.
    """
    if n_items <= AUTO_EF_BASE_ITEMS:
        return HNSW_SEARCH_EF
    slope = math.log(AUTO_EF_1M / HNSW_SEARCH_EF) / math.log(1_000_000 / AUTO_EF_BASE_ITEMS)
    ef = HNSW_SEARCH_EF * (n_items / AUTO_EF_BASE_ITEMS) ** slope
    return min(AUTO_EF_MAX, 64 * math.ceil(ef / 64 - 1e-9))


# ids per Chroma upsert call when the client cannot say its limit (Chroma's own is 5,461)
UPSERT_BATCH = 5000


@dataclass(frozen=True)
class Hit:
    """One query result: cosine similarity (1 - Chroma's cosine distance) and item metadata."""

    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


def _settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma metadata values must be str/int/float/bool; lists and dicts become JSON."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float)):
            out[key] = value
        else:
            out[key] = json.dumps(value, ensure_ascii=False, default=str)
    return out


class VectorStore:
    """Per-space Chroma collections keyed by item id.

    Args:
        client: a chromadb client (PersistentClient or HttpClient).
        prefix: collection names are `<prefix>-<space>`.
    """

    def __init__(
        self, client: Any, *, prefix: str = "fusionrec", search_ef: int | str = "auto"
    ) -> None:
        self._client = client
        self._prefix = prefix
        if search_ef != "auto" and not (isinstance(search_ef, int) and search_ef > 0):
            raise StoreError(f"search_ef must be a positive integer or 'auto', got {search_ef!r}")
        self._search_ef = search_ef
        self._collections: dict[str, Any] = {}

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        host: str | None = None,
        port: int = 8000,
        prefix: str = "fusionrec",
        search_ef: int | str = "auto",
    ) -> VectorStore:
        """Embedded store at `path`, or a `chroma run` server when `host` is given."""
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        import chromadb

        try:
            if host:
                client = chromadb.HttpClient(host=host, port=port, settings=_settings())
                client.heartbeat()
            else:
                if path is None:
                    raise StoreError("a store path is required when no host is configured")
                Path(path).expanduser().mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(
                    path=str(Path(path).expanduser()), settings=_settings()
                )
        except StoreError:
            raise
        except Exception as e:
            where = f"{host}:{port}" if host else str(path)
            raise StoreError(f"cannot open vector store at {where}: {e}") from e
        return cls(client, prefix=prefix, search_ef=search_ef)

    @classmethod
    def from_config(cls, config: Any) -> VectorStore:
        """Open the store a `FusionrecConfig` describes."""
        return cls.open(
            config.store_path(),
            host=config.store.host,
            port=config.store.port,
            prefix=config.store.collection_prefix,
            search_ef=config.store.search_ef,
        )

    @property
    def lock_path(self) -> Path:
        """The file whose lock lets one writer (ingest) at a time into this store.

        In the store's folder for an embedded store; for a `chroma run` server, under
        <home>/locks (so it serialises the writers on this machine only).
        """
        settings = self._client.get_settings()
        name = f"{self._prefix}.ingest.lock"
        if settings.is_persistent and settings.persist_directory:
            return Path(settings.persist_directory) / name
        from retrieval.config import default_home

        where = f"{settings.chroma_server_host}_{settings.chroma_server_http_port}"
        return default_home() / "locks" / f"{where}_{name}"

    def _name(self, space: str) -> str:
        if space not in SPACES:
            raise StoreError(f"unknown vector space '{space}'; valid: {', '.join(SPACES)}")
        return f"{self._prefix}-{space}"

    def collection(self, space: str, encoder_config: dict[str, Any] | None = None) -> Any:
        """Get or create a space's collection; check that `encoder_config` matches its own."""
        name = self._name(space)
        col = self._collections.get(name)
        if col is None:
            auto = self._search_ef == "auto"
            meta = {  # search_ef: [store] search_ef (HNSW_SEARCH_EF above; docs/scale.md)
                "hnsw:space": "cosine",
                "hnsw:search_ef": HNSW_SEARCH_EF if auto else self._search_ef,
                "hnsw:construction_ef": HNSW_CONSTRUCTION_EF,
            }
            if encoder_config is not None:
                meta["encoder"] = json.dumps(encoder_config, sort_keys=True)
            col = self._client.get_or_create_collection(
                name, embedding_function=None, metadata=meta
            )
            if auto:
                self._fit_search_ef(col, first_use=True)
            self._collections[name] = col
        if encoder_config is not None:
            stored = (col.metadata or {}).get("encoder")
            wanted = json.dumps(encoder_config, sort_keys=True)
            if stored and stored != wanted:
                raise StoreError(
                    f"collection '{name}' was built with encoder {stored}, not {wanted}; "
                    "use a new store path or re-ingest with the original encoder"
                )
        return col

    def _fit_search_ef(self, col: Any, *, first_use: bool = False) -> None:
        """Set `col`'s ef_search to `auto_search_ef` of its size, if it differs.

        Chroma applies ef_search when a process loads the index, and counting the vectors
        loads it; so a changed ef serves from the next process that opens the store. Every
        upsert re-fits it, so the ingest that grows a store leaves the ef for its new size.
        """
        try:
            current = (col.configuration.get("hnsw") or {}).get("ef_search")
            n = col.count()
            want = auto_search_ef(n)
            if current == want:
                return
            col.modify(configuration={"hnsw": {"ef_search": want}})
        except Exception as e:  # an older Chroma without `configuration`: keep its ef
            logger.warning("%s: cannot set search_ef automatically: %s", col.name, e)
            return
        log = logger.warning if first_use else logger.info
        log(
            "%s: search_ef %s -> %d for %d vectors (search_ef = 'auto')%s",
            col.name,
            current,
            want,
            n,
            "; Chroma applies it from the next process that opens the store" if first_use else "",
        )

    def has(self, space: str) -> bool:
        # a collection this store has opened exists (nothing in fusionrec deletes one): no
        # list_collections round trip, 4 of which cost ~2 ms per request (docs/scale.md)
        name = self._name(space)
        return name in self._collections or name in {
            c.name for c in self._client.list_collections()
        }

    def count(self, space: str) -> int:
        return self.collection(space).count() if self.has(space) else 0

    def upsert(
        self,
        space: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
        *,
        encoder_config: dict[str, Any] | None = None,
    ) -> None:
        """Insert or replace vectors by id. `vectors` is `(n, dim)` float32, L2-normalised."""
        if len(ids) == 0:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or len(metadatas) != len(ids):
            raise StoreError(
                f"upsert to '{space}': {len(ids)} ids, vectors {vectors.shape}, "
                f"{len(metadatas)} metadatas"
            )
        col = self.collection(space, encoder_config)
        metas = [
            _clean_meta(m) | {"id": i} for i, m in zip(ids, metadatas, strict=True)
        ]  # never empty
        # Chroma refuses a call over its max batch size (5,461 here); split rather than fail
        step = self._max_batch()
        for a in range(0, len(ids), step):
            col.upsert(
                ids=list(ids[a : a + step]),
                embeddings=vectors[a : a + step],
                metadatas=metas[a : a + step],
            )
        if self._search_ef == "auto":  # the ef for the grown store, for the next process
            self._fit_search_ef(col)

    def _max_batch(self) -> int:
        try:
            return max(1, int(self._client.get_max_batch_size()))
        except Exception:  # an older server without the endpoint
            return UPSERT_BATCH

    def get(
        self,
        space: str,
        ids: Sequence[str] | None = None,
        *,
        include_vectors: bool = True,
        include_metadata: bool = True,
    ) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """Stored ids, `(n, dim)` float32 vectors (empty if not requested) and metadatas
        (empty dicts with `include_metadata=False`: a profile needs only the vectors, and
        reading 200 rows of metadata doubled its cost at 1M items; docs/scale.md)."""
        if not self.has(space):
            return [], np.zeros((0, 0), np.float32), []
        include = (["metadatas"] if include_metadata else []) + (
            ["embeddings"] if include_vectors else []
        )
        res = self.collection(space).get(
            ids=list(ids) if ids is not None else None, include=include
        )
        vecs = res.get("embeddings")
        arr = (
            np.asarray(vecs, dtype=np.float32)
            if vecs is not None and len(vecs)
            else np.zeros((0, 0), np.float32)
        )
        metas = res.get("metadatas") or [None] * len(res["ids"])  # None when not included
        return list(res["ids"]), arr, [dict(m or {}) for m in metas]

    def query(
        self,
        space: str,
        vectors: np.ndarray,
        *,
        n: int = 50,
        exclude_ids: Sequence[str] = (),
        include_metadata: bool = True,
    ) -> list[list[Hit]]:
        """Nearest items per query vector; `exclude_ids` never appear (over-fetch then filter).

        `include_metadata=False` returns ids and scores only (empty `Hit.metadata`): candidate
        generation needs no more, and reading 300 rows of metadata from SQLite cost ~6x the
        HNSW search itself (docs/scale.md).
        """
        m = len(np.atleast_2d(vectors))
        if n <= 0 or not self.has(space):
            return [[] for _ in range(m)]
        col = self.collection(space)
        excluded = set(exclude_ids)
        # Chroma returns fewer than n_results when the collection is smaller: no count() needed
        res = col.query(
            query_embeddings=np.atleast_2d(np.asarray(vectors, dtype=np.float32)),
            n_results=n + len(excluded),
            include=["metadatas", "distances"] if include_metadata else ["distances"],
        )
        metas = res.get("metadatas") or [None] * len(res["ids"])
        out: list[list[Hit]] = []
        for ids, dists, row in zip(res["ids"], res["distances"], metas, strict=True):
            row = row or [None] * len(ids)
            hits = [
                Hit(i, 1.0 - float(d), dict(md or {}))
                for i, d, md in zip(ids, dists, row, strict=True)
                if i not in excluded
            ]
            out.append(hits[:n])
        return out

    def delete(self, space: str, ids: Sequence[str]) -> None:
        if self.has(space) and ids:
            self.collection(space).delete(ids=list(ids))
