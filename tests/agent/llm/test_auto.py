"""backend = "auto": the rules (CUDA, what is installed, GGUF or not, converted copy, memory),
the real measured probe on SmolLM2 (both backends, subprocesses), and its cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.llm import load_llm, probe
from agent.llm.probe import PROBE_FILE, BackendChoice, choose_backend
from agent.llm.weights import PACKAGED, converted_dir


def fake_converted(cache: Path, name: str = "smollm2-135m", size: int = 1000) -> Path:
    folder = converted_dir(PACKAGED[name], cache)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * size)
    (folder / "fusionrec-manifest.json").write_text(json.dumps({"source_sha256": "x"}))
    return folder


def test_cuda_means_transformers_nf4(tmp_path: Path) -> None:
    c = choose_backend("smollm2-135m", device="cuda", cache_dir=tmp_path)
    assert c.backend == "transformers" and "NF4" in c.reason


def test_rules_without_a_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(*a: object, **k: object) -> None:
        raise AssertionError("a rule should have decided")

    monkeypatch.setattr(probe, "run_probe", no_probe)
    c = choose_backend("org/hub-model", device="cpu", cache_dir=tmp_path)
    assert c.backend == "transformers" and "not a GGUF" in c.reason
    c = choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path)
    assert c.backend == "llama.cpp" and "no converted bf16 copy" in c.reason
    c = choose_backend(str(tmp_path / "m.gguf"), device="cpu", cache_dir=tmp_path)
    assert c.backend == "llama.cpp" and "local .gguf" in c.reason
    real = probe._installed
    monkeypatch.setattr(probe, "_installed", lambda m: m != "llama_cpp" and real(m))
    c = choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path)
    assert c.backend == "transformers" and "not installed" in c.reason


def test_too_little_memory_for_transformers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_converted(tmp_path, size=4096)
    monkeypatch.setattr(probe, "_available_memory", lambda: 2048)
    c = choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path)
    assert c.backend == "llama.cpp" and "free memory" in c.reason


def test_probe_picks_the_faster_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_converted(tmp_path)
    speeds = {"llama.cpp": 150.0, "transformers": 240.0}
    calls: list[str] = []

    def fake_probe(backend: str, name: str, **k: object) -> dict[str, float]:
        calls.append(backend)
        return {"prompt_tokens_per_s": speeds[backend]}

    monkeypatch.setattr(probe, "run_probe", fake_probe)
    c = choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path)
    assert c == BackendChoice("transformers", c.reason, {"llama.cpp": 150.0, "transformers": 240.0})
    assert "150" in c.reason and "240" in c.reason and not c.cached
    again = choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path)
    assert again.cached and again.backend == "transformers" and len(calls) == 2
    # another thread count is another key: measured again
    choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path, num_threads=1)
    assert len(calls) == 4

    # a failing backend: the other one, not cached
    def half_broken(backend: str, name: str, **k: object) -> dict[str, float]:
        if backend == "transformers":
            raise RuntimeError("out of memory")
        return {"prompt_tokens_per_s": 10.0}

    monkeypatch.setattr(probe, "run_probe", half_broken)
    c = choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path, refresh=True)
    assert c.backend == "llama.cpp" and "out of memory" in c.reason
    # a corrupt probe file is ignored, not fatal
    (tmp_path / PROBE_FILE).write_text("{not json")
    monkeypatch.setattr(probe, "run_probe", fake_probe)
    assert choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path).backend == (
        "transformers"
    )


@pytest.mark.slow
def test_real_probe_of_both_backends_on_smollm2(tmp_path: Path) -> None:
    """Both backends measured for real in subprocesses, after converting SmolLM2 for
    transformers (~1 min on a quiet 2-core machine; 11 min under load 15, hence slow)."""
    from agent.llm.weights import ensure_converted

    ensure_converted(PACKAGED["smollm2-135m"], tmp_path)  # transformers needs its copy
    c = choose_backend("smollm2-135m", device="cpu", cache_dir=tmp_path, num_threads=1)
    assert set(c.measured) == {"llama.cpp", "transformers"}, c.reason
    assert all(v > 0 for v in c.measured.values())
    assert c.backend == max(c.measured, key=lambda b: c.measured[b])
    stored = json.loads((tmp_path / PROBE_FILE).read_text())
    assert [v["backend"] for v in stored.values()] == [c.backend]
    llm = load_llm("smollm2-135m", backend="auto", device="cpu", cache_dir=tmp_path, num_threads=1)
    assert llm.backend == c.backend
