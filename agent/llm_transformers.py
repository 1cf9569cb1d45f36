"""The transformers backend of `load_llm`: resolve the weights, pick precision, load.

Imported lazily by `agent.llm.BACKENDS`, so importing `agent.llm` never imports torch.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from agent.llm import LLM
from agent.llm_weights import PACKAGED, ensure_converted
from retrieval.config import default_home
from retrieval.errors import MissingDependencyError, ModelLoadError

logger = logging.getLogger(__name__)


def cpu_default_dtype() -> str:
    """ "bfloat16" on CPUs with native bf16 matmuls (AVX512-BF16/AMX), else "float32" (faster)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        flags = ""
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device '{device}' requested but CUDA is not available; use device='cpu'"
        )
    return device


def _source(name: str, cache_dir: str | Path | None) -> tuple[str, dict[str, Any]]:
    """Where from_pretrained should read: (path or id, extra kwargs such as gguf_file)."""
    if name in PACKAGED:
        cache = Path(cache_dir).expanduser() if cache_dir else default_home() / "models"
        return str(ensure_converted(PACKAGED[name], cache)), {}
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir():
        return str(path), {}
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model path not found: {path}")
    return name, {}  # a hub id: resolved from the local HF cache only (offline)


def load_transformers(
    name: str,
    *,
    device: str | None,
    quantization: str,
    cache_dir: str | Path | None,
    num_threads: int,
    dtype: str | None,
) -> LLM:
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"'{module}' is not installed; install it with: pip install 'fusionrec[llm]'"
            )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = _resolve_device(device)
    if dev == "cpu":
        torch.set_num_threads(num_threads)
    quant = (
        ("nf4" if dev.startswith("cuda") else "none") if quantization == "auto" else quantization
    )
    source, extra = _source(name, cache_dir)
    kwargs: dict[str, Any] = dict(extra)
    if quant in ("nf4", "int8"):
        if importlib.util.find_spec("bitsandbytes") is None:
            raise MissingDependencyError(
                "quantization needs bitsandbytes; install it with: pip install 'fusionrec[llm]'"
            )
        if "gguf_file" in kwargs:
            raise ModelLoadError("a .gguf file cannot be re-quantized; use quantization='none'")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
            )
            if quant == "nf4"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        kwargs["device_map"] = {"": dev}
        precision = quant
    else:
        precision = dtype or ("bfloat16" if dev.startswith("cuda") else cpu_default_dtype())
    kwargs["dtype"] = (
        getattr(torch, precision)
        if precision in ("bfloat16", "float32", "float16")
        else torch.bfloat16
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise ModelLoadError(
            f"cannot load LLM '{name}': not a packaged name ({', '.join(PACKAGED)}), not a local "
            f"folder, and not in the local Hugging Face cache (nothing is downloaded): {e}"
        ) from e
    if "quantization_config" not in kwargs:
        model.to(dev)
    model.eval()
    logger.info("loaded LLM %s on %s (%s)", name, dev, precision)
    return LLM(model, tokenizer, name=name, device=dev, precision=precision)
