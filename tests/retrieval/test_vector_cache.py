"""The vector cache recomputes rather than trusting a corrupt, stale or wrong-shaped file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.vector_cache import cached_vectors


def test_cache_reuses_valid_files_and_recomputes_bad_ones(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.eye(3, 4, dtype=np.float32)

    path = tmp_path / "v.npy"
    first = cached_vectors(path, compute, rows=3, dim=4)
    again = cached_vectors(path, compute, rows=3, dim=4)
    assert len(calls) == 1 and np.array_equal(first, again)
    cached_vectors(path, compute, rows=3, dim=5)  # wrong width: recomputed
    cached_vectors(path, compute, rows=2)  # wrong row count: recomputed
    path.write_bytes(b"not an npy file")
    assert np.array_equal(cached_vectors(path, compute, rows=3), first)  # corrupt: recomputed
    assert len(calls) == 4
    assert not list(tmp_path.glob("*.tmp*"))  # the atomic write leaves no temporary file
