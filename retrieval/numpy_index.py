"""Exact in-memory search over vectors, for evaluation and benchmarks that need no Chroma store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from retrieval.cf import top_k


class NumpyIndex:
    """Exact in-memory index with the `VectorStore` read interface (`has`/`get`/`query`).

    Args:
        spaces: {space: (ids, `(n, dim)` float32 L2-normalised vectors)}.
    """

    def __init__(self, spaces: Mapping[str, tuple[Sequence[str], np.ndarray]]) -> None:
        self._ids = {s: list(ids) for s, (ids, _) in spaces.items()}
        self._vecs = {s: np.asarray(v, dtype=np.float32) for s, (_, v) in spaces.items()}
        self._pos = {s: {i: k for k, i in enumerate(ids)} for s, ids in self._ids.items()}

    def has(self, space: str) -> bool:
        return space in self._ids

    def get(
        self,
        space: str,
        ids: Sequence[str] | None = None,
        *,
        include_vectors: bool = True,
        include_metadata: bool = True,
    ) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        if space not in self._ids:
            return [], np.zeros((0, 0), np.float32), []
        if ids is None:
            return list(self._ids[space]), self._vecs[space], [{} for _ in self._ids[space]]
        pos = self._pos[space]
        found = [i for i in ids if i in pos]
        return found, self._vecs[space][[pos[i] for i in found]], [{} for _ in found]

    def scores(self, space: str, vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Exact cosines of every item: ids and `(m, n)` float32 for `(m, dim)` unit queries."""
        return self._ids[space], np.atleast_2d(vectors).astype(np.float32) @ self._vecs[space].T

    def query(
        self, space: str, vectors: np.ndarray, *, n: int = 50, exclude_ids: Sequence[str] = ()
    ) -> list[list[Any]]:
        """Exact top-n per query vector as `Hit`s, `exclude_ids` removed."""
        from retrieval.store import Hit

        if space not in self._ids:
            return [[] for _ in range(len(np.atleast_2d(vectors)))]
        ids, s = self.scores(space, vectors)
        pos = self._pos[space]
        drop = [pos[i] for i in exclude_ids if i in pos]
        s[:, drop] = -np.inf
        top, vals = top_k(s, n)
        return [
            [Hit(ids[j], float(v)) for j, v in zip(t, r, strict=True) if j >= 0]
            for t, r in zip(top, vals, strict=True)
        ]
