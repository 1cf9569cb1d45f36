"""Modality conversion: map class probabilities (ImageNet, AudioSet) into the text space.

An image or clip whose labels are "espresso 0.9, cup 0.05" becomes the probability-weighted
sum of the text vectors of those label names, so a plain text query ("a cup of espresso")
can be compared with it by cosine, with no joint image-text model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from retrieval.config import default_home
from retrieval.encoders.base import Encoder, l2_normalize
from retrieval.vector_cache import cached_vectors

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 10  # labels kept per row before mixing; the long tail of tiny probs only adds noise


class LabelBridge:
    """Text-space vectors for label probabilities.

    Args:
        text_encoder: the text encoder whose space queries live in (e.g. MiniLM, 384-d).
        labels: class names in the order of the probability columns.
        top_k: keep only each row's `top_k` largest probabilities (None keeps all).
        cache_dir: where label vectors are cached as `.npy`; default `<home>/cache/bridge`.

    Attributes:
        label_vectors: `(n_labels, dim)` float32, L2-normalised text vectors of `labels`.
    """

    def __init__(
        self,
        text_encoder: Encoder,
        labels: list[str],
        *,
        top_k: int | None = DEFAULT_TOP_K,
        cache_dir: str | Path | None = None,
    ) -> None:
        if not labels:
            raise ValueError("LabelBridge needs at least one label")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        self.text_encoder = text_encoder
        self.labels = list(labels)
        self.top_k = top_k
        self.dim = int(text_encoder.dim)
        cache = Path(cache_dir).expanduser() if cache_dir else default_home() / "cache" / "bridge"
        self.cache_path = cache / f"labels-{self.cache_key()}.npy"
        self.label_vectors = self._load_or_embed()

    def cache_key(self) -> str:
        """sha256 (16 hex) of the text encoder's config and the label list."""
        payload = (
            json.dumps(self.text_encoder.get_config(), sort_keys=True)
            + "\n"
            + "\n".join(self.labels)
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def _load_or_embed(self) -> np.ndarray:
        return cached_vectors(
            self.cache_path,
            lambda: l2_normalize(self.text_encoder.encode(self.labels, batch_size=128)),
            rows=len(self.labels),
            dim=self.dim,
        )

    def to_text_space(self, probs: np.ndarray) -> np.ndarray:
        """Mix label vectors by probability.

        Args:
            probs: `(n, n_labels)` (or `(n_labels,)`) non-negative class probabilities/scores.

        Returns:
            `(n, dim)` float32, L2-normalised (an all-zero row stays zero).

        Raises:
            ValueError: the number of columns does not match `labels`.
        """
        p = np.atleast_2d(np.asarray(probs, dtype=np.float32))
        if p.shape[1] != len(self.labels):
            raise ValueError(f"probs have {p.shape[1]} columns, expected {len(self.labels)} labels")
        p = np.clip(p, 0.0, None)
        if self.top_k is not None and self.top_k < p.shape[1]:
            cut = np.partition(p, -self.top_k, axis=1)[:, -self.top_k][:, None]
            p = np.where(p >= cut, p, 0.0)
        return l2_normalize(p @ self.label_vectors)

    __call__ = to_text_space
