"""One on-disk cache for computed vectors (label embeddings, item text embeddings).

Keys are the caller's job (put the model identity and the inputs into the file name); this
module makes reading safe and writing atomic, so a crash or a stale file never breaks a run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def cached_vectors(
    path: Path, compute: Callable[[], np.ndarray], *, rows: int, dim: int | None = None
) -> np.ndarray:
    """`(rows, dim)` float32 from `path` if a valid file is there, else `compute()` and save it.

    A file with the wrong row count (or width, when `dim` is given), a non-float32 dtype, or
    that cannot be read is logged and recomputed. The new file is written to a temporary name
    and renamed into place.
    """
    if path.is_file():
        try:
            vecs = np.load(path, allow_pickle=False)
            width_ok = dim is None or (vecs.ndim == 2 and vecs.shape[1] == dim)
            if vecs.ndim == 2 and vecs.shape[0] == rows and width_ok and vecs.dtype == np.float32:
                return vecs
            logger.warning(
                "ignoring cache %s with shape %s, dtype %s", path, vecs.shape, vecs.dtype
            )
        except (OSError, ValueError) as e:
            logger.warning("ignoring unreadable cache %s: %s", path, e)
    vecs = np.asarray(compute(), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, vecs, allow_pickle=False)
    os.replace(tmp, path)
    return vecs
