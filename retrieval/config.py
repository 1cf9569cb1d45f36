"""All settings in one typed place. Every default is documented where it is declared."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import FusionrecError


def default_home() -> Path:
    """Where stores, caches and reports live unless configured: $FUSIONREC_HOME or ~/.fusionrec."""
    return Path(os.environ.get("FUSIONREC_HOME", "~/.fusionrec")).expanduser()


@dataclass(frozen=True)
class EncoderConfig:
    text: str = "minilm"  # registered text encoder; the packaged all-MiniLM-L6-v2
    image: str = "efficientnet-lite0"  # "efficientnet-lite0" (packaged) or "open-clip"
    audio: str = "yamnet"  # "yamnet" (packaged ONNX) or "clap" (needs hub/local weights)
    clip_model: str = "ViT-B-32"  # open_clip architecture, used when image == "open-clip"
    clip_weights: str | None = None  # local open_clip weights file (.safetensors/.pt)
    clap_model: str | None = None  # hub id or local folder of a transformers ClapModel
    device: str = "cpu"  # torch device for encoders: "cpu" or "cuda"
    batch_size: int = 32  # items per encoder forward pass
    num_threads: int = 2  # torch/onnxruntime intra-op threads; 1-2 is fastest on small CPUs


@dataclass(frozen=True)
class StoreConfig:
    path: str | None = None  # PersistentClient folder; None = <home>/store
    host: str | None = None  # set to use chromadb.HttpClient against `chroma run` instead
    port: int = 8000  # HttpClient port
    collection_prefix: str = "fusionrec"  # collections are <prefix>-<modality>


@dataclass(frozen=True)
class FusionConfig:
    text: float = 1.0  # weight of the text cosine in the fused score
    image: float = 0.5  # weight of the image cosine
    audio: float = 0.5  # weight of the audio cosine


# Weights tuned on ML-100k validation (each user's second-to-last item); see docs/retrieval.md.
DEFAULT_WEIGHTS: dict[str, float] = {
    "ease": 1.0,
    "itemknn": 1.0,
    "transitions": 0.3,
    "popularity": 0.05,
    "content-text": 0.1,
    "query": 1.0,  # not tunable on MovieLens (no requests); a request should matter as much as EASE
}


@dataclass(frozen=True)
class HybridConfig:
    """Source hyper-parameters; defaults were chosen on ML-100k validation."""

    ease_l2: float = 400.0  # EASE ridge strength
    ease_half_life: float = 10.0  # EASE history weight halves every this many items back
    ease_max_items: int = 5_000  # EASE needs items^2 memory and items^3 time; above this, skipped
    knn_k: int = 200  # ItemKNN neighbours per item
    knn_shrink: float = 10.0  # ItemKNN similarity shrinkage
    knn_half_life: float = 3.0  # ItemKNN history recency half-life (items)
    trans_window: int = 10  # steps ahead that count as "next" when fitting transitions
    trans_step_decay: float = 0.7  # transition weight multiplier per extra step
    trans_smoothing: float = 5.0  # transition row-normaliser smoothing
    trans_half_life: float = 5.0  # recency half-life of the items transitions start from
    trans_last_n: int = 10  # only the last N history items seed transitions
    pop_half_life_days: float = 14.0  # time-decayed popularity half-life
    content_half_life: float | None = 10.0  # content profile recency half-life (items)
    content_like_threshold: float | None = None  # ratings below push the profile away; None = off
    negative_weight: float = 0.5  # weight of disliked items in content profiles
    content_pool: int = 300  # hits fetched per content/query search from a store without `scores`
    n_candidates: int = 50  # candidates returned
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


@dataclass(frozen=True)
class LLMConfig:
    model: str = "qwen2.5-coder-1.5b"  # packaged name, hub id or local folder
    backend: str = "transformers"  # a key of agent.llm.BACKENDS
    device: str | None = None  # None = cuda if available else cpu
    quantization: str = "auto"  # "auto" (nf4 on cuda, none on cpu), "nf4", "int8", "none"
    cache_dir: str | None = None  # converted-weights cache; None = <home>/models
    time_budget_s: float = 15.0  # re-rank budget per request; past it the retriever order stands
    num_threads: int = 2  # torch threads on CPU
    reranker: str = "llm-pointwise"  # "llm-pointwise", "llm-listwise" or "identity" (no LLM)
    # LLM weight in the final score. 0 = the LLM takes no part in ranking and is not run for it
    # (explanations still use it). 0 is what validation chose for the 1.5B with these CPU-sized
    # prompts on MovieLens: no weight improved both protocols (docs/rerank.md). Set e.g. 0.25
    # to re-rank with the LLM anyway, or after re-tuning with `python -m agent.rerank_eval`.
    alpha: float = 0.0
    rerank_top: int = 20  # how many retriever candidates the LLM re-scores; the rest keep order
    # Prompt size sets the CPU latency (~21 tokens/s for the 1.5B on 2 cores; docs/rerank.md):
    # these defaults give ~280 tokens for 20 candidates. Raise them on a GPU.
    max_history: int = 8  # most recent liked titles in the re-rank prompt (plus 3 disliked)
    max_desc_chars: int = 0  # characters of each candidate's description quoted (0 = none)
    max_tags: int = 0  # tags quoted per candidate (0 = none)
    short_titles: bool = True  # drop a trailing "(1995)" from titles: 6 tokens each with Qwen
    # candidates per forward pass, packed without padding: 20 = the history once, then all
    # candidates in one pass. The budget is checked after the history from the pace per token,
    # so a slow machine gives up before the long pass, not after it.
    batch_size: int = 20
    explain: bool = True  # let the LLM word explanations (False = deterministic template only)


@dataclass(frozen=True)
class DataConfig:
    interactions: str | None = None  # "ml-100k" (packaged), a CSV/Parquet file, or None
    items: str | None = None  # items file for `interactions` when it is a user's own file
    users_path: str | None = None  # feedback log (JSONL); None = <store>/users.jsonl


@dataclass(frozen=True)
class FusionrecConfig:
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    data: DataConfig = field(default_factory=DataConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionrecConfig:
        """Build from nested dicts; unknown sections or keys raise, listing the valid ones."""
        kwargs: dict[str, Any] = {}
        sections = {f.name: f for f in dataclasses.fields(cls)}
        for name, values in data.items():
            if name not in sections:
                raise FusionrecError(
                    f"unknown config section [{name}]; valid: {', '.join(sorted(sections))}"
                )
            sub = sections[name].default_factory()  # type: ignore[misc]
            valid = {f.name for f in dataclasses.fields(sub)}
            bad = set(values) - valid
            if bad:
                raise FusionrecError(
                    f"unknown key(s) {sorted(bad)} in [{name}]; valid: {', '.join(sorted(valid))}"
                )
            kwargs[name] = dataclasses.replace(sub, **values)
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> FusionrecConfig:
        with Path(path).expanduser().open("rb") as fh:
            return cls.from_dict(tomllib.load(fh))

    def store_path(self) -> Path:
        return Path(self.store.path).expanduser() if self.store.path else default_home() / "store"

    def model_cache(self) -> Path:
        return (
            Path(self.llm.cache_dir).expanduser()
            if self.llm.cache_dir
            else default_home() / "models"
        )
