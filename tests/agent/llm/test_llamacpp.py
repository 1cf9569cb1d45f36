"""llama.cpp backend on SmolLM2-135M's real GGUF: scoring equals single-sequence runs, prefix
reuse, generation and streaming, concurrency, context overflow, and the hash gate before load."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from agent.llm import llamacpp as lc
from agent.llm import load_llm
from agent.llm import weights as llm_weights
from agent.llm.base import LLM
from agent.llm.llamacpp import ContextOverflowError, LlamaCppLLM, ensure_gguf, gguf_path
from agent.rerank import UserContext, create_reranker
from agent.rerank.llm import YES_NO
from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from retrieval.errors import ModelLoadError

SMOL = llm_weights.PACKAGED["smollm2-135m"]
SYSTEM = "You are a recommendation assistant."
USER = (
    'Liked:\n- "The Matrix"\n- "Blade Runner"\n\nWould this person enjoy each candidate? Yes or No.'
)
SUFFIXES = ['"Ghost in the Shell":', '"Sleepless in Seattle":', '"Aliens":', '"Babe":', '"Heat":']


@pytest.fixture(scope="module")
def smol() -> LlamaCppLLM:
    # one thread: on a shared, busy CPU two threads spin at every barrier (docs/llm_backends.md)
    return LlamaCppLLM(gguf_path("smollm2-135m"), name="smollm2-135m", n_ctx=1024, n_threads=1)


def reference(llm: LlamaCppLLM, prefix: str | list[int], suffix: str) -> np.ndarray:
    """Choice log-probs from ONE plain sequence: the prefix, then the suffix after it (the
    same two decode calls as scoring, but nothing shared with other suffixes)."""
    groups = [llm.first_token_ids(g) for g in YES_NO]
    pre = llm.tokenize(prefix) if isinstance(prefix, str) else prefix
    suf = llm.tokenize(suffix)
    with llm._lock:
        llm._reset()
        llm._decode(pre, 0, 0, logits_last=False)
        llm._decode(suf, len(pre), 0, logits_last=True)
        logits = llm._logits(-1).astype(np.float64)
        llm._reset()
    lse = np.logaddexp.reduce(logits)
    return np.array([np.logaddexp.reduce(logits[ids]) - lse for ids in groups])


def test_protocol_and_chat_template(smol: LlamaCppLLM) -> None:
    assert isinstance(smol, LLM) and smol.backend == "llama.cpp"
    text = smol.chat_text("hi there", system="sys")
    assert text.startswith("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi there")
    assert text.endswith("<|im_start|>assistant\n")
    # special tokens are parsed, as the transformers tokenizer does: one id each
    assert smol.count_tokens("<|im_start|>") == 1
    assert smol.count_tokens("") == 0


def test_shared_prefix_scores_equal_single_sequence_runs(smol: LlamaCppLLM) -> None:
    prefix = smol.chat_text(USER, system=SYSTEM)
    out = smol.choice_logprobs(prefix, SUFFIXES, YES_NO, batch_size=20)
    assert out.logprobs.shape == (len(SUFFIXES), 2)
    assert np.all(out.logprobs < 0) and np.isfinite(out.logprobs).all()
    assert out.prefix_tokens == smol.count_tokens(prefix)
    assert out.suffix_tokens == sum(smol.count_tokens(s) for s in SUFFIXES)
    ref = np.stack([reference(smol, prefix, s) for s in SUFFIXES])
    np.testing.assert_allclose(out.logprobs, ref, atol=2e-3)
    # other pack sizes give the same numbers (each suffix sees the prefix and itself only)
    for bs in (1, 2):
        again = smol.choice_logprobs(prefix, SUFFIXES, YES_NO, batch_size=bs)
        np.testing.assert_allclose(again.logprobs, ref, atol=2e-3)


def test_prefix_kv_is_reused_and_progress_reported(smol: LlamaCppLLM) -> None:
    prefix = smol.chat_text(USER + " (reuse)", system=SYSTEM)
    first = smol.choice_logprobs(prefix, SUFFIXES[:2], YES_NO)
    shares: list[float] = []
    second = smol.choice_logprobs(prefix, SUFFIXES[:2], YES_NO, on_progress=shares.append)
    assert first.computed_tokens <= first.prefix_tokens + first.suffix_tokens
    assert second.computed_tokens == second.suffix_tokens  # the prefix came from the KV cache
    np.testing.assert_allclose(first.logprobs, second.logprobs, atol=1e-5)
    assert shares == sorted(shares) and shares[-1] == pytest.approx(1.0)


def test_progress_can_stop_and_leaves_no_state(smol: LlamaCppLLM) -> None:
    prefix = smol.chat_text(USER, system=SYSTEM)
    clean = smol.choice_logprobs(prefix, SUFFIXES, YES_NO, batch_size=2)

    def stop(share: float) -> None:
        if share > 0.5:
            raise TimeoutError("budget")

    with pytest.raises(TimeoutError):
        smol.choice_logprobs(prefix, SUFFIXES, YES_NO, batch_size=2, on_progress=stop)
    np.testing.assert_allclose(
        smol.choice_logprobs(prefix, SUFFIXES, YES_NO, batch_size=2).logprobs,
        clean.logprobs,
        atol=1e-5,
    )


def test_generate_and_stream(smol: LlamaCppLLM) -> None:
    smol.generate("Name a colour.", max_new_tokens=12)  # later calls reuse its prompt KV
    a = smol.generate("Name a colour.", max_new_tokens=12)
    b = smol.generate("Name a colour.", max_new_tokens=12)
    assert a == b and a.strip()  # greedy on the same KV state is deterministic
    pieces = list(smol.stream("Name a colour.", max_new_tokens=12))
    assert len(pieces) > 1 and "".join(pieces) == a
    assert smol.count_tokens(smol.generate("Count to fifty:", max_new_tokens=5)) <= 6
    assert isinstance(smol.generate("Once upon a time", chat=False, max_new_tokens=4), str)
    sampled = smol.generate("Name a colour.", max_new_tokens=8, temperature=0.8)
    assert isinstance(sampled, str)


def test_abandoned_stream_releases_the_context(smol: LlamaCppLLM) -> None:
    gen = smol.stream("Tell me a long story.", max_new_tokens=50)
    next(gen)
    gen.close()  # what a UI does when the user leaves
    smol.generate("Name a colour.", max_new_tokens=12)
    assert smol.generate("Name a colour.", max_new_tokens=12) == smol.generate(
        "Name a colour.", max_new_tokens=12
    )


def test_concurrent_calls_equal_serial_calls(smol: LlamaCppLLM) -> None:
    prefixes = [smol.chat_text(f"{USER}\nMood {i}.", system=SYSTEM) for i in range(4)]
    serial = [smol.choice_logprobs(p, SUFFIXES, YES_NO).logprobs for p in prefixes]
    serial_text = smol.generate("Name a fruit.", max_new_tokens=10)
    smol.choice_logprobs(prefixes[3], SUFFIXES, YES_NO)  # same KV state as before serial_text
    results: dict[int, np.ndarray] = {}
    texts: list[str] = []
    errors: list[BaseException] = []

    def score(i: int) -> None:
        try:
            for _ in range(2):
                results[i] = smol.choice_logprobs(prefixes[i], SUFFIXES, YES_NO).logprobs
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    def talk() -> None:
        texts.append("".join(smol.stream("Name a fruit.", max_new_tokens=10)))

    threads = [threading.Thread(target=score, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=talk))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for i in range(4):
        np.testing.assert_allclose(results[i], serial[i], atol=1e-5)
    assert texts == [serial_text]


def test_long_prefix_is_cut_from_the_left_never_the_suffix() -> None:
    small = LlamaCppLLM(gguf_path("smollm2-135m"), n_ctx=128, n_threads=1)
    history = "".join(f'- "Film number {i}"\n' for i in range(80))  # ~600 tokens
    prefix = f"Liked:\n{history}Would they enjoy it? Answer Yes or No.\n"
    assert small.n_ctx == 256  # llama.cpp's smallest context
    assert small.count_tokens(prefix) > small.n_ctx
    out = small.choice_logprobs(prefix, SUFFIXES[:3], YES_NO)
    longest = max(small.count_tokens(s) for s in SUFFIXES[:3])
    assert out.prefix_tokens == small.n_ctx - longest
    assert out.suffix_tokens == sum(small.count_tokens(s) for s in SUFFIXES[:3])
    # the kept part is the END of the prefix: the same as scoring that end directly
    kept = small.tokenize(prefix)[-out.prefix_tokens :]
    np.testing.assert_allclose(out.logprobs[0], reference(small, kept, SUFFIXES[0]), atol=2e-3)
    # a suffix that alone exceeds the context is an error, not a silent cut
    with pytest.raises(ContextOverflowError, match="candidate"):
        small.choice_logprobs(prefix, ["word " * 300], YES_NO)
    # generation keeps the end of an over-long prompt too
    assert isinstance(small.generate(prefix, chat=False, max_new_tokens=2), str)


def test_registry_loads_it(tmp_path: Path) -> None:
    llm = load_llm(
        "smollm2-135m", backend="llama.cpp", cache_dir=tmp_path, n_ctx=512, num_threads=1
    )
    assert llm.backend == "llama.cpp" and llm.n_ctx == 512
    rr = create_reranker("llm-pointwise", llm=llm, alpha=1.0, time_budget_s=None)
    items = [Item("1", "Aliens"), Item("2", "Babe"), Item("3", "Heat")]
    cands = [Candidate(it.id, score=1.0 - 0.1 * r, rank=r + 1) for r, it in enumerate(items)]
    out = rr.rank(UserContext(liked=("The Matrix", "Blade Runner")), cands, items)
    assert out.fallback_reason is None and sorted(out.item_ids()) == ["1", "2", "3"]


def test_not_a_gguf_or_missing(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        load_llm(str(bad), backend="llama.cpp")
    with pytest.raises(ModelLoadError, match="neither a packaged model"):
        gguf_path("org/some-hub-model")


# ---- the hash gate: nothing unverified reaches llama.cpp ----------------------------------------


@pytest.fixture()
def no_native_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("llama.cpp was asked to open an unverified file")

    monkeypatch.setattr(lc.LlamaCppLLM, "__init__", refuse)


def test_truncated_or_corrupt_single_file_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_native_load: None
) -> None:
    real = llm_weights.locate(SMOL)[0]
    data = real.read_bytes()
    truncated = tmp_path / "trunc" / real.name
    truncated.parent.mkdir()
    truncated.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(lc, "locate", lambda spec: [truncated])
    with pytest.raises(ModelLoadError, match="refusing"):
        load_llm("smollm2-135m", backend="llama.cpp", cache_dir=tmp_path / "c1")
    corrupt = tmp_path / "corrupt" / real.name
    corrupt.parent.mkdir()
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    corrupt.write_bytes(bytes(flipped))
    monkeypatch.setattr(lc, "locate", lambda spec: [corrupt])
    with pytest.raises(ModelLoadError, match="SHA-256"):
        load_llm("smollm2-135m", backend="llama.cpp", cache_dir=tmp_path / "c2")


def test_split_parts_are_joined_once_and_a_bad_join_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = llm_weights.locate(SMOL)[0].read_bytes()
    parts = []
    for i, (a, b) in enumerate([(0, len(data) // 3), (len(data) // 3, len(data))]):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(data[a:b])
        parts.append(p)
    spec = llm_weights.PackagedWeights(
        "smol-split", ("a", "b"), "*.bin", "smol-split.gguf", SMOL.sha256, SMOL.size, "reinstall"
    )
    monkeypatch.setattr(lc, "locate", lambda s: list(parts))
    cache = tmp_path / "cache"
    joined = ensure_gguf(spec, cache)
    assert joined == cache / "smol-split.gguf" and joined.read_bytes() == data
    assert not list(cache.glob(".*.tmp"))
    # a corrupted joined file (same size) is detected on the next first use and rebuilt
    with joined.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00" * 16)
    llm_weights._VERIFIED.clear()
    assert ensure_gguf(spec, cache).read_bytes() == data
    LlamaCppLLM(joined, n_ctx=256, n_threads=1).close()  # and it is a loadable model
    # a truncated part: refused, and no joined file is left behind
    joined.unlink()
    llm_weights._VERIFIED.clear()
    parts[1].write_bytes(data[len(data) // 3 : -100])
    with pytest.raises(ModelLoadError, match="bytes, expected"):
        ensure_gguf(spec, cache)
    assert not joined.exists() and not list(cache.glob(".*.tmp"))
