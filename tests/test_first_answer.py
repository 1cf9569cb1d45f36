"""bench/first_answer.py without a model: how it reads a /chat response (built by the real
`ui.cards` functions, so a change of the page's wording fails here), the app log, and the
temporary model homes it starts the app with."""

from __future__ import annotations

import json
from pathlib import Path

from agent.records import Recommendation, RecommendResult
from bench.first_answer import PROBE_FILE, Run, chosen_by, model_home, reply_marker, scan_log
from retrieval.catalogue import Item
from ui import cards


def _response(reranked: bool, note: str | None = None) -> tuple[object, ...]:
    recs = [
        Recommendation(
            Item(f"i{n}", f"Calm [track] {n}"), 0.9 - n / 10, n, {}, -0.3 if reranked else None
        )
        for n in (1, 2)
    ]
    result = RecommendResult("maya", recs, reranked, note=note, query="something calm")
    header = cards.result_header(result, "maya")
    slots = [cards.card_markdown(r, reranked=reranked) for r in recs]
    return ("Here is what I found:\n1. Calm [track] 1", ["i1", "i2"], header, *slots)


def test_reply_marker_reads_the_header_and_cards() -> None:
    assert reply_marker(_response(True))[:2] == (True, 2)
    reason = "LLM re-rank stopped at the 15 s time budget (x); showing the retriever's order"
    reranked, scored, header, note = reply_marker(_response(False, reason))
    assert (reranked, scored) == (False, 0)
    assert header.startswith("Top 2 for user")
    assert note == reason
    assert reply_marker("Sorry: something went wrong.")[0] is None
    assert reply_marker(("Sorry: no list.", [], "", ""))[0] is None


def test_scan_log_keeps_the_first_time_of_each_event() -> None:
    lines = [
        (1.0, "INFO fusionrec.app: starting"),
        (
            9.5,
            "INFO agent.llm.probe: LLM backend 'auto' -> llama.cpp: measured prompt reading on "
            "this CPU: llama.cpp 150 tokens/s, transformers 90 tokens/s",
        ),
        (12.25, "INFO agent.llm.weights: verified SHA-256 of qwen2.5-coder-1.5b (3.7 s)"),
        (14.0, "INFO agent.llm.llamacpp: loaded qwen2.5-coder-1.5b with llama.cpp (n_ctx=4096)"),
        (30.0, "WARNING agent.rerank.llm: LLM re-rank stopped at the 15 s time budget (..)"),
        (60.0, "WARNING agent.rerank.llm: LLM re-rank stopped at the 15 s time budget (..)"),
    ]
    events, found = scan_log(lines)
    assert events == {
        "auto_choice": 9.5,
        "sha256_verified": 12.25,
        "llm_loaded": 14.0,
        "rerank_budget_stop": 30.0,
    }
    assert found["backend"] == "llama.cpp"
    assert found["reason"].endswith("transformers 90 tokens/s")
    events, found = scan_log([(2.0, "INFO agent.llm.transformers: loaded LLM x on cpu (bf16)")])
    assert events == {"llm_loaded": 2.0} and found == {}


def test_model_homes_link_the_real_files_and_never_touch_them(tmp_path: Path) -> None:
    real = tmp_path / "home"
    models = real / "models"
    (models / "model-bf16").mkdir(parents=True)
    (models / "model.gguf").write_bytes(b"GGUF")
    probe = {"k": {"backend": "llama.cpp", "reason": "r"}}
    (models / PROBE_FILE).write_text(json.dumps(probe))
    (real / "cache").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    with model_home("as-is", models, work) as home:
        assert home is None
    with model_home("no-probe", models, work) as home:
        assert home is not None
        assert sorted(p.name for p in (home / "models").iterdir()) == ["model-bf16", "model.gguf"]
        assert (home / "cache").resolve() == (real / "cache").resolve()
        (home / "models" / PROBE_FILE).write_text("{}")  # what the app's probe writes
    assert not home.exists()
    with model_home("empty", models, work) as home:
        assert list((home / "models").iterdir()) == []
    assert json.loads((models / PROBE_FILE).read_text()) == probe
    assert (models / "model.gguf").read_bytes() == b"GGUF"
    assert list(work.iterdir()) == []


def test_chosen_by_tells_probe_cache_and_rule_apart() -> None:
    run = Run("cfg", "as-is", "m", "maya", "qwen2.5-coder-1.5b", "auto", 2, 15.0, [1.0, 1.0, 1.0])
    assert chosen_by(run) is None  # auto never ran
    run.backend = "llama.cpp"
    assert chosen_by(run) == "rule"
    run.probe_entry = {"backend": "llama.cpp", "reason": "measured"}
    assert chosen_by(run) == "probe cache"
    run.probe_ran = True
    assert chosen_by(run) == "probe"
