"""Session-wide test settings: offline, few threads, no telemetry."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def encoders():  # type: ignore[no-untyped-def]
    """The real default encoders (MiniLM, EfficientNet-Lite0, YAMNet); image/audio load lazily."""
    from retrieval.config import EncoderConfig
    from retrieval.ingest import Encoders

    return Encoders.from_config(EncoderConfig(num_threads=1))


@pytest.fixture(scope="session")
def skimage_photo() -> Path:
    """Path to one of scikit-image's bundled sample photos, by file name."""
    import skimage

    return Path(skimage.__file__).parent / "data"
