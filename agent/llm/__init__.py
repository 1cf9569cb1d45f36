"""Local LLM loading: the backend registry, `load_llm` and `prepare_llm`.

`load_llm(name, *, backend=...)` accepts a packaged name (`qwen2.5-coder-1.5b`, the default,
or `smollm2-135m`; see `agent.llm.weights`), a local model folder, a local `.gguf` file, or a
Hugging Face model id already in the local cache (nothing is downloaded at run time).

Backends live in `BACKENDS`, a registry of loader functions that import their heavy
libraries only when called.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.llm.base import LLM, ChoiceScores
from agent.llm.lazy import LazyLLM
from retrieval.errors import UnknownBackendError

if TYPE_CHECKING:
    from retrieval.config import LLMConfig

__all__ = [
    "BACKENDS",
    "DEFAULT_LLM",
    "LLM",
    "ChoiceScores",
    "LazyLLM",
    "lazy_llm",
    "load_llm",
    "prepare_llm",
]

logger = logging.getLogger(__name__)

DEFAULT_LLM = "qwen2.5-coder-1.5b"
QUANTIZATIONS = ("auto", "nf4", "int8", "none")


_TRANSFORMERS_ARGS = ("device", "quantization", "cache_dir", "num_threads", "dtype")


def _load_transformers(name: str, **kwargs: Any) -> LLM:
    from agent.llm.transformers import load_transformers

    return load_transformers(name, **{k: kwargs[k] for k in _TRANSFORMERS_ARGS if k in kwargs})


def _load_llamacpp(name: str, **kwargs: Any) -> LLM:
    from agent.llm.llamacpp import load_llamacpp

    return load_llamacpp(name, **kwargs)


def _load_openai(name: str, **kwargs: Any) -> LLM:
    from agent.llm.openai_http import load_openai

    return load_openai(name, **kwargs)


def _load_auto(name: str, **kwargs: Any) -> LLM:
    """CUDA -> transformers NF4; CPU -> whichever backend a cached probe measured faster."""
    from agent.llm.probe import choose_backend

    choice = choose_backend(
        name,
        device=kwargs.get("device"),
        cache_dir=kwargs.get("cache_dir"),
        num_threads=kwargs.get("num_threads", 2),
    )
    return BACKENDS[choice.backend](name, **kwargs)


BACKENDS: dict[str, Callable[..., LLM]] = {
    "transformers": _load_transformers,
    "llama.cpp": _load_llamacpp,
    "openai": _load_openai,
    "auto": _load_auto,
}


@functools.lru_cache(maxsize=2)
def _load_cached(
    name: str,
    backend: str,
    device: str | None,
    quantization: str,
    cache_dir: str | None,
    num_threads: int,
    dtype: str | None,
    options: tuple[tuple[str, Any], ...] = (),
) -> LLM:
    return BACKENDS[backend](
        name,
        device=device,
        quantization=quantization,
        cache_dir=cache_dir,
        num_threads=num_threads,
        dtype=dtype,
        **dict(options),
    )


def load_llm(
    name: str = DEFAULT_LLM,
    *,
    backend: str = "transformers",
    device: str | None = None,
    quantization: str = "auto",
    cache_dir: str | Path | None = None,
    num_threads: int = 2,
    dtype: str | None = None,
    **options: Any,
) -> LLM:
    """Load (once per process per arguments) an instruction-tuned causal LM.

    Args:
        name: packaged name (`qwen2.5-coder-1.5b`, `smollm2-135m`), local folder, local `.gguf`
            file, or a Hugging Face id present in the local cache.
        backend: key of `BACKENDS`.
        device: "cpu", "cuda", "cuda:1"; None picks CUDA when available.
        quantization: "auto" (NF4 on CUDA, none on CPU), "nf4", "int8" or "none".
        cache_dir: where packaged GGUFs are converted to; None = `<home>/models`.
        num_threads: torch intra-op threads on CPU.
        dtype: "bfloat16", "float32" or "float16" when not quantized; None = bf16 on CUDA, and
            on CPU bf16 only where the CPU has native bf16, else float32 (see module doc).
        options: backend settings: `n_ctx` (llama.cpp); `endpoint`, `server_model`,
            `api_key_env`, `timeout_s` (openai). Backends ignore what they do not use.

    Raises:
        UnknownBackendError: `backend` is not registered (the message lists the valid ones).
        ValueError: unknown `quantization`.
        ModelLoadError: weights missing (the message names the install command), tampered
            (SHA-256 mismatch) or unreadable.
        MissingDependencyError: torch/transformers/bitsandbytes missing.
    """
    if backend not in BACKENDS:
        raise UnknownBackendError(
            f"unknown LLM backend '{backend}'; valid: {', '.join(sorted(BACKENDS))}"
        )
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"unknown quantization '{quantization}'; valid: {', '.join(QUANTIZATIONS)}"
        )
    if dtype not in (None, "bfloat16", "float32", "float16"):
        raise ValueError(f"unknown dtype '{dtype}'; valid: bfloat16, float32, float16")
    return _load_cached(
        name,
        backend,
        device,
        quantization,
        str(cache_dir) if cache_dir is not None else None,
        num_threads,
        dtype,
        tuple(sorted(options.items())),
    )


def lazy_llm(cfg: LLMConfig, cache_dir: str | Path | None = None) -> LazyLLM:
    """The configured LLM as a `LazyLLM`: nothing loads until a call needs the model.

    Args:
        cfg: the [llm] section.
        cache_dir: converted-weights cache (default `<home>/models`).
    """
    load = functools.partial(
        load_llm,
        cfg.model,
        backend=cfg.backend,
        device=cfg.device,
        quantization=cfg.quantization,
        cache_dir=cache_dir,
        num_threads=cfg.num_threads,
        n_ctx=cfg.n_ctx,
        endpoint=cfg.endpoint,
        server_model=cfg.server_model,
        api_key_env=cfg.api_key_env,
        timeout_s=cfg.request_timeout_s,
    )
    return LazyLLM(cfg.model, cfg.backend, load)


def prepare_llm(name: str = DEFAULT_LLM, *, cache_dir: str | Path | None = None) -> Path:
    """Verify a packaged model's SHA-256 and convert it once (for `fusionrec prepare-llm`).

    Keeps nothing in memory afterwards; a second call only re-checks the hash.

    Returns:
        The converted bf16 safetensors folder.

    Raises:
        ModelLoadError: not a packaged name, weights missing (names the install command), or
            their hash differs.
    """
    from agent.llm.weights import PACKAGED, ensure_converted
    from retrieval.config import default_home
    from retrieval.errors import ModelLoadError

    if name not in PACKAGED:
        raise ModelLoadError(f"'{name}' is not a packaged model; packaged: {', '.join(PACKAGED)}")
    cache = Path(cache_dir).expanduser() if cache_dir else default_home() / "models"
    return ensure_converted(PACKAGED[name], cache)
