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
    # HNSW search breadth: "auto" = 256 up to 100k items (recall@50 0.99 there), then growing
    # with the collection's size to 3072 at 1M (recall 0.49 -> 0.99 there; docs/scale.md round
    # 3), re-fitted by every upsert and applied from the next process; or a positive integer
    search_ef: int | str = "auto"


@dataclass(frozen=True)
class FusionConfig:
    text: float = 1.0  # weight of the text cosine in the fused score
    image: float = 0.5  # weight of the image cosine
    audio: float = 0.5  # weight of the audio cosine


# Weights tuned on ML-100k validation (each user's second-to-last item); see docs/retrieval.md.
DEFAULT_WEIGHTS: dict[str, float] = {
    "ease": 1.0,
    # the factor models take EASE's slot on catalogues too big for it (cf_model, docs/scale.md);
    # not tunable on ML-100k, where "auto" keeps EASE, so they inherit EASE's weight
    "als": 1.0,
    "bpr": 1.0,
    "factors": 1.0,
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
    # main CF source: "auto" = EASE up to ease_max_items items while its ~32 B x items^2 fits
    # in memory, else "als" (memory linear in items); or "ease", "als", "bpr", "factors", "none"
    cf_model: str = "auto"
    cf_factors_path: str | None = None  # .npz factors from Spark/implicit (cf_model="factors")
    cf_memory_gb: float | None = None  # memory a CF fit may use; None = 80% of MemAvailable
    mf_factors: int = 64  # ALS/BPR latent dimensions (~256 B per item and per user)
    mf_iterations: int = 15  # ALS sweeps (BPR runs mf_iterations x 4 epochs of SGD)
    mf_regularization: float = 0.05  # ALS/BPR L2 strength, also the fold-in ridge
    mf_alpha: float = 10.0  # ALS confidence per unit of interaction weight
    mf_device: str = "cpu"  # "cpu", or "cuda" with a CUDA build of implicit
    knn_k: int = 200  # ItemKNN neighbours per item
    # most targets one history item scores in ItemKNN (its strongest similarities). A popular
    # item neighbours very many targets (rows of 600k at 1M items cost 75 ms per request);
    # 2000 cuts that to 16 ms there and is a no-op on catalogues of <= 2,001 items such as
    # ML-100K (a row cannot be longer). 0 = no cap. docs/scale.md, round 3
    knn_max_row: int = 2000
    # from this many items a request's sources are scored in 2 threads at once (they are
    # independent; results identical). Below it the hand-off costs more than it saves
    # (docs/scale.md, round 3)
    parallel_min_items: int = 100_000
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
    # a chat turn that asks in words multiplies the `query` weight by this, so the request is
    # not drowned by the history (issue 12: "calm to listen to" got the user's old films; "like
    # Heat but funnier" needs "funnier" to count: tests/agent/chat/test_turn.py). The request
    # benchmark's validation requests could not tell 1 from 3 apart (docs/requests.md)
    chat_query_boost: float = 3.0
    # a chat request for a mood of something to listen to fuses the candidates' retriever
    # score with how well their measured sound fits the mood (agent/chat/moods.py) at this
    # weight in [0, 1]; 1 = by the measured fit alone among the tracks the filters keep.
    # Chosen on the validation requests of bench.requests (docs/requests.md)
    chat_mood_weight: float = 1.0
    # a request's `query` score = its text cosine to the item's own words + this x its best
    # cosine to the words of the encoders' labels (image-text, audio-text spaces: mixtures of
    # ImageNet/AudioSet label names). Label cosines run higher and flatter than a description's,
    # so taking the best space alone let a wrong guess outvote the item's own words ("pictures
    # of food" -> a rubber duck). Chosen on the validation requests of bench.requests
    # (docs/requests.md); 0 = the item's own words only
    query_label_weight: float = 0.5


# Merge weights of the conversational retriever's sources (retrieval/conversational.py), tuned
# on the validation dialogues of ReDial (first 20% by dialog_id); see docs/redial.md.
# The values are the "hybrid retriever (no in-domain prior)" row's (only ratios matter).
CONVERSATION_WEIGHTS: dict[str, float] = {
    "itemknn": 0.5,  # co-rating neighbours of the liked films (MovieLens latest-small)
    "ease": 0.75,  # EASE on the same co-ratings
    "content": 3.0,  # text cosine to the liked films' profile
    "query": 3.0,  # text cosine to the user's own words
    "attributes": 0.3,  # genre / people / era matches from the request
    "popularity": 0.3,  # outside-the-test-set popularity (MovieLens counts, review counts)
    "prior": 0.0,  # in-domain prior (ReDial eval: validation-dialogue counts, weight 1.5 there)
}


@dataclass(frozen=True)
class ConversationConfig:
    """Conversational retriever settings (candidates from a chat state, no user history)."""

    knn_k: int = 100  # ItemKNN neighbours per item on the co-ratings
    knn_shrink: float = 10.0  # ItemKNN similarity shrinkage
    ease_l2: float = 200.0  # EASE ridge strength on the co-ratings
    ease_max_items: int = 5_000  # EASE is skipped above this many rated films (items^3 time)
    negative_weight: float = 0.5  # a disliked film's weight in CF rows and the content profile
    n_candidates: int = 50  # candidates returned by `generate`
    weights: Mapping[str, float] = field(default_factory=lambda: dict(CONVERSATION_WEIGHTS))


@dataclass(frozen=True)
class RatingScale:
    """What a rating means on the 1-5 scale, in one place for the agent, evidence, prompts
    and evaluations (MovieLens convention: 4 and 5 are likes, 1 and 2 dislikes)."""

    like_min: float = 4.0  # rated >= this: a like (cited as a reason, liked list in prompts)
    dislike_max: float = 2.0  # rated <= this: a dislike (pushes profiles away, disliked list)
    like_value: float = 5.0  # the rating a "like" from chat or the UI is stored as
    dislike_value: float = 1.0  # the rating a "dislike" is stored as


RATING_SCALE = RatingScale()  # the defaults, for code that is not handed a config


@dataclass(frozen=True)
class LLMConfig:
    model: str = "qwen2.5-coder-1.5b"  # packaged name, local .gguf, hub id or local folder
    # "auto" (CUDA -> transformers NF4; CPU -> llama.cpp or transformers, whichever a short
    # probe measures faster here, cached; agent/llm/probe.py), "llama.cpp", "transformers",
    # or "openai" (an OpenAI-compatible server at `endpoint`)
    backend: str = "auto"
    device: str | None = None  # None = cuda if available else cpu
    quantization: str = "auto"  # "auto" (nf4 on cuda, none on cpu), "nf4", "int8", "none"
    cache_dir: str | None = None  # converted-weights cache; None = <home>/models
    time_budget_s: float = 15.0  # re-rank budget per request; past it the retriever order stands
    num_threads: int = 2  # CPU threads (torch intra-op; llama.cpp prompt and generation)
    # llama.cpp context in tokens: one re-rank request needs ~300 (history once + all candidates);
    # 4096 leaves room for chat history and explanations at ~115 MB of KV cache for the 1.5B
    n_ctx: int = 4096
    # backend "openai": base URL of the server, e.g. "http://127.0.0.1:8000/v1" (vLLM,
    # llama.cpp server, Ollama); None = not configured
    endpoint: str | None = None
    server_model: str | None = None  # model name on the server; None = the first it lists
    api_key_env: str | None = None  # NAME of the env variable holding the API key; None = no key
    request_timeout_s: float = 30.0  # per HTTP request to the server; then ServerTimeoutError
    reranker: str = "llm-pointwise"  # "llm-pointwise", "llm-listwise" or "identity" (no LLM)
    # LLM weight in the final score. 0 = the LLM takes no part in ranking and is not run for it
    # (explanations still use it). 0 is what validation chose for the 1.5B with these CPU-sized
    # prompts on MovieLens: no weight improved both protocols (docs/rerank.md). Set e.g. 0.25
    # to re-rank with the LLM anyway, or after re-tuning with `fusionrec eval --protocol rerank`.
    alpha: float = 0.0
    rerank_top: int = 20  # how many retriever candidates the LLM re-scores; the rest keep order
    # Chat turns whose request has words are re-ranked by the conversation re-ranker
    # (agent/rerank/conversation.py) with this LLM weight; 0 = never. 0.25 is what the request
    # benchmark's validation requests chose for the 1.5B; on its test requests it changed
    # NDCG@10 by -0.001 [-0.019, +0.015] (docs/requests.md), and ReDial's gated tuning kept 0
    # (docs/redial.md). Set 0 to skip the ~4 s per turn it costs on a 2-core CPU.
    chat_alpha: float = 0.25
    chat_top: int = 12  # candidates the conversation re-rank scores (~35 prompt tokens each)
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
class IngestConfig:
    """Limits that keep ingest's memory and time bounded by the work, not by file sizes."""

    # image/audio files larger than this are refused before a byte is read (a 10-minute
    # 48 kHz 24-bit stereo WAV is ~170 MB; a 2 GB "image" would otherwise be read and hashed)
    max_file_mb: float = 200.0
    max_audio_seconds: float = 600.0  # audio is decoded up to this point only (the rest unread)
    # a second ingest into the same store waits this long for the first, then says another
    # ingest is running (0 = say so at once); the lock file is in the store folder
    lock_wait_s: float = 0.0


@dataclass(frozen=True)
class DiversityConfig:
    """Maximal marginal relevance on the list a user sees (retrieval/diversity.py), so a top 5
    is not five near-copies. Numbers for the trade-off: docs/diversity.md."""

    # 0 = off (the final score's order); 1 = diversity only. The default trades a measured
    # NDCG@10 cost on ML-100K and the request benchmark for intra-list diversity
    weight: float = 0.1
    pool: int = 30  # MMR picks the list from this many items of the final order (>= k)


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
    ingest: IngestConfig = field(default_factory=IngestConfig)
    data: DataConfig = field(default_factory=DataConfig)
    ratings: RatingScale = field(default_factory=RatingScale)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)

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
