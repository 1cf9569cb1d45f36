"""The transformers backend: Hugging Face models on CPU (bf16/fp32) and CUDA (NF4 by default).

Imported lazily by `agent.llm.BACKENDS`, so importing `agent.llm` never imports torch.

Precision: on CUDA 4-bit NF4 through bitsandbytes by default ("int8" or "none" by config).
On CPU the default dtype depends on the CPU: bf16 where it has native bf16 matmuls
(AVX512-BF16 or AMX), else float32. Measured on a 2-core AVX2 CPU (no native bf16):
a 256x1536 @ 1536x8960 matmul (prompt processing, what scoring does) takes 4.6x longer in
bf16 than in fp32 (7.3 s vs 1.6 s), a single-token matvec (generation) 1.3x longer, so fp32
is the faster choice there, at twice the memory (6.2 GB vs 3.1 GB for the 1.5B). Pass
`dtype="bfloat16"` to trade speed for memory. See docs/rerank_bench.md.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.llm.base import ChoiceScores, ProgressFn
from agent.llm.weights import PACKAGED, ensure_converted
from retrieval.config import default_home
from retrieval.errors import MissingDependencyError, ModelLoadError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NextTokenScores:
    """Next-token log-probabilities after `prefix + suffix` for each suffix.

    Attributes:
        logprobs: `(n_suffixes, vocab)` float32 log-softmax of the next-token logits (CPU tensor).
        prefix_tokens: tokens in the shared prefix (computed once).
        suffix_tokens: real (unpadded) suffix tokens over all suffixes.
        computed_tokens: positions actually run through the model, padding included.
    """

    logprobs: Any
    prefix_tokens: int
    suffix_tokens: int
    computed_tokens: int


class TransformersLLM:
    """A loaded causal LM with its tokenizer (transformers backend).

    Attributes:
        model: the `transformers` causal LM, in eval mode.
        tokenizer: its tokenizer (with a chat template when the model has one).
        name: what it was loaded as.
        device: "cpu" or "cuda[:n]".
        precision: "bfloat16", "float32", "nf4" or "int8".
    """

    backend = "transformers"

    def __init__(
        self, model: Any, tokenizer: Any, *, name: str, device: str, precision: str
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.precision = precision
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def __repr__(self) -> str:
        return (
            f"TransformersLLM(name={self.name!r}, device={self.device!r}, "
            f"precision={self.precision!r})"
        )

    def chat_text(self, user: str, *, system: str | None = None) -> str:
        """The full prompt text for one user turn, ending where the assistant's answer starts."""
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` encodes to (no special tokens added)."""
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _inputs(self, prompt: str, system: str | None, chat: bool) -> Any:
        text = self.chat_text(prompt, system=system) if chat else prompt
        return self.tokenizer(text, add_special_tokens=False, return_tensors="pt").to(
            self.model.device
        )

    def _generate_kwargs(self, max_new_tokens: int, temperature: float) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            kw["temperature"] = temperature
        else:  # greedy: silence generation_config's sampling defaults
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> str:
        """Generate a completion (greedy unless `temperature > 0`).

        Args:
            prompt: the user message (or raw text when `chat=False`).
            max_new_tokens: cap on generated tokens.
            system: optional system message.
            chat: wrap `prompt` in the model's chat template.
            temperature: 0 for greedy decoding.

        Returns:
            The generated text only, special tokens removed.
        """
        import torch

        inputs = self._inputs(prompt, system, chat)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, **self._generate_kwargs(max_new_tokens, temperature)
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new, skip_special_tokens=True)

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Like `generate`, but yields text pieces as they are produced."""
        import torch
        from transformers import TextIteratorStreamer

        inputs = self._inputs(prompt, system, chat)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        closed = threading.Event()  # set when the reader stops early (e.g. a rejected sentence)

        def stop_when_closed(input_ids: Any, scores: Any, **_: Any) -> Any:
            return torch.full((input_ids.shape[0],), closed.is_set(), device=input_ids.device)

        kwargs = {
            **inputs,
            **self._generate_kwargs(max_new_tokens, temperature),
            "streamer": streamer,
            "stopping_criteria": [stop_when_closed],
        }

        def run() -> None:
            with torch.inference_mode():
                self.model.generate(**kwargs)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield from (piece for piece in streamer if piece)
        finally:
            closed.set()  # so an abandoned stream stops generating at the next token
            thread.join()

    def first_token_ids(self, words: Sequence[str]) -> list[int]:
        """Distinct first-token ids of each word (as the answer would start), e.g. "Yes", " Yes"."""
        ids: list[int] = []
        for w in words:
            toks = self.tokenizer(w, add_special_tokens=False).input_ids
            if toks and toks[0] not in ids:
                ids.append(toks[0])
        return ids

    def next_token_logprobs(
        self,
        prefix: str,
        suffixes: Sequence[str],
        *,
        batch_size: int = 20,
        on_progress: Callable[[float], None] | None = None,
    ) -> NextTokenScores:
        """Next-token log-probs after `prefix + s` for every `s`, running the prefix ONCE.

        The prefix's KV cache is computed in one forward pass. Then up to `batch_size` suffixes
        are *packed* into one row after it: each suffix sees the prefix and itself only (a
        block-diagonal 4D attention mask, position ids restarting after the prefix), so no
        padding is computed and a pack costs one forward pass. On a CPU that matters: every
        forward pass reads all the weights, so 4 small passes cost ~15% more than one wide one,
        and padding to the longest suffix ~25% more tokens (docs/rerank.md).

        Args:
            prefix: text shared by every prompt (tokenised on its own: end it at a clean boundary
                such as a newline).
            suffixes: the per-candidate continuations; each must encode to at least one token.
            batch_size: suffixes per forward pass.
            on_progress: called after the prefix and after each pack with the share of all
                tokens computed so far (0 < share <= 1); it may raise to stop early (the
                re-ranker's time budget does, projecting the rest from the pace so far).

        Returns:
            NextTokenScores with `(len(suffixes), vocab)` float32 log-probs.
        """
        import torch

        tok, dev = self.tokenizer, self.model.device
        pre = tok(prefix, add_special_tokens=False, return_tensors="pt").input_ids.to(dev)
        n_pre = pre.shape[1]
        encoded = [tok(s, add_special_tokens=False).input_ids for s in suffixes]
        if any(not e for e in encoded):
            raise ValueError("every suffix must encode to at least one token")
        dtype = self.model.get_input_embeddings().weight.dtype
        if not dtype.is_floating_point:
            dtype = torch.bfloat16
        out_rows: list[torch.Tensor] = []
        computed = n_pre
        total = n_pre + sum(len(e) for e in encoded)
        with torch.inference_mode():
            cache = (
                self.model(input_ids=pre, use_cache=True, logits_to_keep=1).past_key_values
                if n_pre
                else None
            )
            if on_progress is not None and n_pre:
                on_progress(n_pre / total)
            for start in range(0, len(encoded), batch_size):
                pack = encoded[start : start + batch_size]
                lengths = [len(e) for e in pack]
                q = sum(lengths)
                ends = torch.tensor(lengths).cumsum(0)
                mask = torch.full((q, n_pre + q), torch.finfo(dtype).min, dtype=dtype)
                mask[:, :n_pre] = 0
                for end, n in zip(ends.tolist(), lengths, strict=True):
                    block = torch.ones(n, n, dtype=torch.bool).tril()
                    mask[end - n : end, n_pre + end - n : n_pre + end].masked_fill_(block, 0)
                pos = torch.cat([torch.arange(n_pre, n_pre + n) for n in lengths])
                kv = None
                if cache is not None:
                    last = start + batch_size >= len(encoded)
                    kv = cache if last else copy.deepcopy(cache)  # the forward appends to it
                logits = self.model(
                    input_ids=torch.tensor([sum(pack, [])], device=dev),
                    attention_mask=mask[None, None].to(dev),
                    position_ids=pos[None].to(dev),
                    past_key_values=kv,
                    use_cache=kv is not None,
                    logits_to_keep=(ends - 1).to(dev),
                ).logits[0]
                out_rows.append(torch.log_softmax(logits.float(), dim=-1).cpu())
                computed += q
                if on_progress is not None:
                    on_progress(computed / total)
        logprobs = torch.cat(out_rows) if out_rows else torch.empty(0)
        return NextTokenScores(
            logprobs=logprobs,
            prefix_tokens=n_pre,
            suffix_tokens=sum(len(e) for e in encoded),
            computed_tokens=computed,
        )

    def choice_logprobs(
        self,
        prefix: str,
        suffixes: Sequence[str],
        choices: Sequence[Sequence[str]],
        *,
        batch_size: int = 20,
        on_progress: ProgressFn | None = None,
    ) -> ChoiceScores:
        """See `agent.llm.base.LLM.choice_logprobs`; full-vocabulary log-probs, grouped."""
        import torch

        out = self.next_token_logprobs(
            prefix, suffixes, batch_size=batch_size, on_progress=on_progress
        )
        groups = [self.first_token_ids(words) for words in choices]
        if out.logprobs.numel() == 0:
            grouped = np.zeros((0, len(groups)))
        else:
            grouped = (
                torch.stack(
                    [torch.logsumexp(out.logprobs[:, ids], dim=-1) for ids in groups], dim=1
                )
                .double()
                .numpy()
            )
        return ChoiceScores(
            logprobs=grouped,
            prefix_tokens=out.prefix_tokens,
            suffix_tokens=out.suffix_tokens,
            computed_tokens=out.computed_tokens,
        )


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
) -> TransformersLLM:
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
    return TransformersLLM(model, tokenizer, name=name, device=dev, precision=precision)
