"""User histories and per-modality profile vectors.

Profiles are rating- and recency-weighted; disliked items push a profile away.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from retrieval.config import RATING_SCALE
from retrieval.fusion import profile_vector

logger = logging.getLogger(__name__)


class ItemIndex(Protocol):
    """What profiles and candidate generation need from a vector store.

    `retrieval.store.VectorStore` implements it with Chroma; `numpy_index.NumpyIndex` with exact
    numpy dot products (evaluation, tests, benchmarks).
    """

    def has(self, space: str) -> bool: ...

    def get(
        self,
        space: str,
        ids: Sequence[str] | None = None,
        *,
        include_vectors: bool = True,
        include_metadata: bool = True,
    ) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]: ...

    def query(
        self, space: str, vectors: np.ndarray, *, n: int = 50, exclude_ids: Sequence[str] = ()
    ) -> list[list[Any]]: ...


@dataclass
class History:
    """One user's interactions, oldest first.

    Attributes:
        item_ids: catalogue ids in time order (ties keep their given order).
        ratings: same length; explicit ratings, or 1.0 for implicit feedback / chat likes.
        timestamps: same length, unix seconds (0 when unknown).
        disliked: ids the user rejected in chat ("not into horror"); pushed away, never
            recommended.
        hidden: ids never recommended that say nothing about taste (filtered out by the
            request: "a photo" hides the sounds). Unlike `disliked`, they do not push the
            profile away: 700 hidden sound clips must not turn a profile against sounds.
    """

    item_ids: list[str] = field(default_factory=list)
    ratings: list[float] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if not self.ratings:
            self.ratings = [1.0] * n
        if not self.timestamps:
            self.timestamps = [0] * n
        if len(self.ratings) != n or len(self.timestamps) != n:
            raise ValueError(
                f"history has {n} items, {len(self.ratings)} ratings "
                f"and {len(self.timestamps)} timestamps"
            )

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def seen(self) -> set[str]:
        """Everything the user interacted with, rejected or hid; never returned as a candidate."""
        return set(self.item_ids) | set(self.disliked) | set(self.hidden)

    @property
    def last_time(self) -> int:
        return max(self.timestamps) if self.timestamps else 0


def profile_weights(
    history: History,
    *,
    half_life: float | None = 20.0,
    like_threshold: float | None = RATING_SCALE.like_min,
    negative_weight: float = 0.5,
    rated_scale: bool = False,
) -> tuple[list[str], np.ndarray]:
    """Weight of each history item in a profile.

    Recency: the newest item weighs 1 and the weight halves every `half_life` items back.
    Ratings: items rated below `like_threshold` weigh `-negative_weight` times their recency
    weight (they push the profile away); `like_threshold=None` treats everything as liked
    (implicit feedback). Chat dislikes weigh `-negative_weight`.

    Returns:
        (ids, weights): history ids then disliked ids, and their `(h,)` float32 weights.
    """
    n = len(history)
    back = np.arange(n - 1, -1, -1, dtype=np.float64)
    w = np.ones(n) if half_life is None else np.exp2(-back / half_life)
    ratings = np.asarray(history.ratings, dtype=np.float64)
    if rated_scale and n and ratings.max() > 0:
        w = w * ratings / ratings.max()
    if like_threshold is not None:
        w = np.where(ratings >= like_threshold, w, -negative_weight * w)
    ids = list(history.item_ids) + list(history.disliked)
    w = np.concatenate([w, np.full(len(history.disliked), -negative_weight)])
    return ids, w.astype(np.float32)


def build_profile(
    history: History,
    index: ItemIndex,
    *,
    spaces: Sequence[str] = ("text",),
    half_life: float | None = 20.0,
    like_threshold: float | None = RATING_SCALE.like_min,
    negative_weight: float = 0.5,
) -> dict[str, np.ndarray]:
    """Per-space profile vectors for one user.

    Args:
        history: the user's interactions (and chat dislikes).
        index: where item vectors live (`VectorStore` or `NumpyIndex`).
        spaces: vector spaces to build, e.g. ("text", "image", "audio").
        half_life, like_threshold, negative_weight: see `profile_weights`.

    Returns:
        {space: `(dim,)` float32, L2-normalised}; a space is left out when none of the
        history items has a vector in it or the weights cancel out.
    """
    ids, weights = profile_weights(
        history, half_life=half_life, like_threshold=like_threshold, negative_weight=negative_weight
    )
    out: dict[str, np.ndarray] = {}
    if not ids:
        return out
    wmap: dict[str, float] = {}
    for i, w in zip(ids, weights, strict=True):
        wmap[i] = wmap.get(i, 0.0) + float(w)
    for space in spaces:
        if not index.has(space):
            continue
        got_ids, vecs, _ = index.get(space, list(wmap), include_metadata=False)
        if len(got_ids) == 0:
            continue
        raw, norm = profile_vector(vecs, np.array([wmap[i] for i in got_ids], np.float32))
        if norm > 1e-9:
            out[space] = (raw / norm).astype(np.float32)
    return out
