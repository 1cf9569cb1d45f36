"""Local LLM loading and the few operations the agent needs: generate, stream, score.

`load_llm(name, *, backend=...)` accepts a packaged name (`qwen2.5-coder-1.5b`, the default,
or `smollm2-135m`; see `agent.llm_weights`), a local model folder, a local `.gguf` file, or a
Hugging Face model id already in the local cache (nothing is downloaded at run time).

Precision: on CUDA 4-bit NF4 through bitsandbytes by default ("int8" or "none" by config).
On CPU the default dtype depends on the CPU: bf16 where it has native bf16 matmuls
(AVX512-BF16 or AMX), else float32. Measured on the 2-core AVX2 CPU here (no native bf16):
a 256x1536 @ 1536x8960 matmul (prompt processing, what scoring does) takes 4.6x longer in
bf16 than in fp32 (7.3 s vs 1.6 s), a single-token matvec (generation) 1.3x longer, so fp32
is the faster choice there, at twice the memory (6.2 GB vs 3.1 GB for the 1.5B). Pass
`dtype="bfloat16"` to trade speed for memory. See docs/rerank_bench.md.

Backends live in `BACKENDS`, a registry of loader functions that import their heavy
libraries only when called.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import UnknownBackendError

logger = logging.getLogger(__name__)

DEFAULT_LLM = "qwen2.5-coder-1.5b"
QUANTIZATIONS = ("auto", "nf4", "int8", "none")


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


class LLM:
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
        return f"LLM(name={self.name!r}, device={self.device!r}, precision={self.precision!r})"

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
        kwargs = {
            **inputs,
            **self._generate_kwargs(max_new_tokens, temperature),
            "streamer": streamer,
        }

        def run() -> None:
            with torch.inference_mode():
                self.model.generate(**kwargs)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield from (piece for piece in streamer if piece)
        finally:
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


def _load_transformers(name: str, **kwargs: Any) -> LLM:
    from agent.llm_transformers import load_transformers

    return load_transformers(name, **kwargs)


BACKENDS: dict[str, Callable[..., LLM]] = {"transformers": _load_transformers}


@functools.lru_cache(maxsize=2)
def _load_cached(
    name: str,
    backend: str,
    device: str | None,
    quantization: str,
    cache_dir: str | None,
    num_threads: int,
    dtype: str | None,
) -> LLM:
    return BACKENDS[backend](
        name,
        device=device,
        quantization=quantization,
        cache_dir=cache_dir,
        num_threads=num_threads,
        dtype=dtype,
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
    )


def prepare_llm(name: str = DEFAULT_LLM, *, cache_dir: str | Path | None = None) -> Path:
    """Verify a packaged model's SHA-256 and convert it once (for `fusionrec prepare-llm`).

    Keeps nothing in memory afterwards; a second call only re-checks the hash.

    Returns:
        The converted bf16 safetensors folder.

    Raises:
        ModelLoadError: not a packaged name, weights missing (names the install command), or
            their hash differs.
    """
    from agent.llm_weights import PACKAGED, ensure_converted
    from retrieval.config import default_home
    from retrieval.errors import ModelLoadError

    if name not in PACKAGED:
        raise ModelLoadError(f"'{name}' is not a packaged model; packaged: {', '.join(PACKAGED)}")
    cache = Path(cache_dir).expanduser() if cache_dir else default_home() / "models"
    return ensure_converted(PACKAGED[name], cache)
