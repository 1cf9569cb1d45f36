"""The one interface every encoder implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns inputs of one modality into vectors.

    Attributes:
        name: registry name, e.g. "minilm".
        modality: "text", "image" or "audio".
        dim: length of each vector.
    """

    name: str
    modality: str
    dim: int

    def encode(self, inputs: Any, *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Encode one input or a list. Returns `(n, dim)` float32, L2-normalised if `normalize`.

        An empty list returns shape `(0, dim)`. Unreadable inputs raise `ValueError` naming them.
        """
        ...

    def encode_query(self, inputs: Any, *, batch_size: int = 32) -> np.ndarray:
        """Encode a query; the same space as `encode` (asymmetric models may differ)."""
        ...

    def get_config(self) -> dict[str, Any]:
        """JSON-able identity (name, model, weights, dim); stored with the vectors it made."""
        ...


@runtime_checkable
class LabelledEncoder(Encoder, Protocol):
    """An encoder with a classifier head whose labels become human-readable evidence.

    `labels` names the classes (ImageNet, AudioSet). `encode_with_labels` returns the
    `(n, dim)` vectors and the `(n, len(labels))` float32 class probabilities from one pass,
    so ingest never runs the model twice.
    """

    labels: list[str]

    def encode_with_labels(
        self, inputs: Any, *, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]: ...


def as_batch(inputs: Any) -> list[Any]:
    """Wrap a single input into a list; leave lists/tuples alone."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    return [inputs]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; zero rows stay zero. Returns float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def top_labels(
    probs: np.ndarray, labels: list[str], k: int = 5, min_prob: float = 0.05
) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) per row, dropping labels under `min_prob`."""
    out: list[list[tuple[str, float]]] = []
    for row in np.atleast_2d(probs):
        idx = np.argsort(-row)[:k]
        out.append([(labels[i], float(row[i])) for i in idx if row[i] >= min_prob])
    return out


def zero_shot_probs(vectors: np.ndarray, label_vectors: np.ndarray, scale: float) -> np.ndarray:
    """Softmax over `scale * cosine` to each label: `(n, n_labels)` float32 (CLIP/CLAP style).

    Args:
        vectors: `(n, dim)` float32, L2-normalised item vectors.
        label_vectors: `(n_labels, dim)` float32, L2-normalised text vectors of the labels.
        scale: the model's learned logit scale (already exponentiated).
    """
    if len(vectors) == 0 or len(label_vectors) == 0:
        return np.zeros((len(vectors), len(label_vectors)), dtype=np.float32)
    logits = scale * vectors @ label_vectors.T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


class ClassifierHeadEncoder:
    """Shared public methods for encoders whose one forward pass yields vectors and class probs.

    Subclasses implement `_forward(inputs, batch_size) -> ((n, dim) float32 raw vectors,
    (n, n_labels) float32 probabilities)` and raise `ValueError` naming any unreadable input.
    They have no text tower, so a query is encoded like an item (text reaches them through
    the label bridge).
    """

    def _forward(self, inputs: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def encode(self, inputs: Any, *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """`(n, dim)` float32, L2-normalised if `normalize`."""
        vecs, _ = self._forward(inputs, batch_size)
        return l2_normalize(vecs) if normalize else vecs

    def encode_with_labels(
        self, inputs: Any, *, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """One pass: `(n, dim)` float32 unit vectors and `(n, n_labels)` float32 probabilities."""
        vecs, probs = self._forward(inputs, batch_size)
        return l2_normalize(vecs), probs

    def encode_query(self, inputs: Any, *, batch_size: int = 32) -> np.ndarray:
        """Same space and shape as `encode` (no text tower)."""
        return self.encode(inputs, batch_size=batch_size)
