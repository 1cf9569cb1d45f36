"""ReDial protocol: metrics on hand-computed ranks, intervals, linking, a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.redial import run_redial_eval
from evaluation.redial_metrics import bootstrap_weights, interval, paired, ranks_for, summarize
from evaluation.redial_report import to_markdown
from evaluation.redial_state import ExactTitleMatcher, standin_state
from retrieval.catalogue import Item
from retrieval.datasets.redial import load_redial
from tests.retrieval.datasets.redial_data import write_redial


def test_ranks_exclude_mentioned_films_and_count_ties_against_the_system() -> None:
    merged = np.array([[0.9, 0.8, 0.5, 0.5, 0.1]])
    # target 3 ties with 2: pessimistic rank 4; excluding item 0 lifts it to 3
    assert ranks_for(merged, [3], [np.array([], dtype=np.int64)]).tolist() == [4]
    assert ranks_for(merged, [3], [np.array([0])]).tolist() == [3]


def test_metrics_on_hand_computed_ranks() -> None:
    ranks = np.array([1, 3, 12, 60])
    boot = bootstrap_weights(["d1", "d1", "d2", "d3"], n=200)
    s = summarize(ranks, boot)
    assert s["n"] == 4
    assert s["recall@1"] == 0.25 and s["recall@5"] == 0.5 and s["recall@10"] == 0.5
    assert s["recall@20"] == 0.75 and s["recall@50"] == 0.75
    # NDCG@10: (1/log2(2) + 1/log2(4)) / 4 = (1 + 0.5) / 4
    assert s["ndcg@10"] == pytest.approx(0.375, abs=1e-4)
    lo, hi = s["recall@10_ci"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0


def test_dialogue_bootstrap_and_paired_differences() -> None:
    groups = ["a"] * 5 + ["b"] * 5
    boot = bootstrap_weights(groups, n=500, seed=1)
    assert boot[0].shape == (500, 2) and (boot[0].sum(1) == 2).all()
    const = np.ones(10)
    assert interval(const, boot) == (1.0, 1.0)
    r = np.array([1, 2, 30, 40, 50, 1, 1, 1, 100, 100])
    same = paired(r, r, boot)
    assert same["recall@10"] == {"diff": 0.0, "ci": [0.0, 0.0]}
    better = paired(np.ones(10, dtype=np.int64), r, boot)
    assert better["recall@10"]["diff"] == pytest.approx(0.5)
    assert better["recall@10"]["ci"][0] > 0


def test_standin_linker_reads_title_year_spans() -> None:
    items = [
        Item("1", "Police Academy", metadata={"year": 1984}),
        Item("2", "Police Academy 2: Their First Assignment", metadata={"year": 1985}),
        Item("3", "The Shining", metadata={"year": 1980}),
        Item("4", "It", metadata={"year": 1990}),
        Item("5", "It", metadata={"year": 2017}),
    ]
    m = ExactTitleMatcher(items)
    text = ("You should watch Police Academy (1984) and Police Academy 2: Their First "
            "Assignment (1985). I loved it. Shining (1980) and It (2017)")  # fmt: skip
    assert m.link(text) == ["1", "2", "3", "5"]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from agent.llm import load_llm
    from tests.agent.tiny_llm import build_tiny_llm

    folder = build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))
    return load_llm(str(folder), dtype="float32", device="cpu")


def _run(root: Path, encoder, llm):  # type: ignore[no-untyped-def]
    return run_redial_eval(
        root / "data",
        out=root / "out" / "redial.json",
        store_dir=root / "store",
        cache_dir=root / "cache",
        encoder=encoder,
        n_boot=50,
        llm=llm,
        n_llm=4,
        n_llm_val=2,
        llm_top_n=5,
    )


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory, encoders, tiny_llm):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("redial-eval")
    write_redial(root / "data")
    return _run(root, encoders.text, tiny_llm), root


def test_end_to_end_on_a_tiny_directory(tiny_report) -> None:  # type: ignore[no-untyped-def]
    report, root = tiny_report
    # 5 dialogues: the first (d1, 2 samples) is validation; 5 reported samples
    assert report["split"]["validation_dialogues"] == 1
    assert report["split"]["validation_samples"] == 2
    assert report["split"]["reported_samples"] == 5
    rows = report["rows"]
    assert "popularity" in rows and "hybrid retriever (no in-domain prior)" in rows
    retriever_rows = [r for n, r in rows.items() if "LLM" not in n and not n.startswith("fused")]
    assert len(retriever_rows) == 5
    for row in retriever_rows:
        assert row["n"] == 5
        assert 0.0 <= row["recall@10"] <= row["recall@50"] <= 1.0
    # the 2018 film (no text, no ratings, no popularity) ties at the bottom: never in the top 5
    assert report["bucket_sizes"]["no film mentioned yet"] == 2
    # scored reported turns: d2 (no film before), d3 (Toy Story), d5 (The Shining)
    assert report["linking"]["reported"]["prev_entity_films"] == 2
    assert report["linking"]["reported"]["found"] == 2
    saved = json.loads((root / "out" / "redial.json").read_text())
    assert saved["rows"].keys() == rows.keys()
    md = (root / "out" / "redial.md").read_text()
    assert "| GPT-4 (published) |" in md and "Mention linking" in md


def test_llm_rows_use_the_same_subsample_and_a_prompt_cache(
    tiny_report, encoders, tiny_llm
) -> None:  # type: ignore[no-untyped-def]
    report, root = tiny_report
    llm = report["llm"]
    assert llm["reported_samples_scored"] == 4 and llm["validation_samples_scored"] == 2
    assert 0.0 <= llm["alpha"] <= 1.0
    llm_rows = [n for n in report["rows"] if "LLM" in n or n.startswith("fused")]
    assert len(llm_rows) == 3 and all(report["rows"][n]["n"] == 4 for n in llm_rows)
    assert llm["stats"]["scored_prompts"] >= 1
    again = _run(root, encoders.text, tiny_llm)  # same prompts: every score from the cache
    assert again["llm"]["stats"]["scored_prompts"] == 0
    assert again["rows"].keys() == report["rows"].keys()


def test_markdown_renders_every_row(tiny_report) -> None:  # type: ignore[no-untyped-def]
    md = to_markdown(tiny_report[0])
    for name in tiny_report[0]["rows"]:
        assert f"| {name} |" in md


def test_standin_state_counts_mentions_and_genres(tmp_path: Path) -> None:
    data = load_redial(write_redial(tmp_path), enrich=False, ratings=False)
    state = standin_state(data.items)
    st = state(data.turns[1])
    assert st.mentioned_ids == ("10", "11", "12")
    scary = state(data.turns[2])
    assert scary.query.genres == ("horror",) and scary.mentioned_ids == ()


def test_cli_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    out = str(tmp_path / "r.json")
    assert main(["eval", "--dataset", "redial", "--out", out]) == 2
    assert "--data DIR" in capsys.readouterr().err
    assert (
        main(["eval", "--dataset", "redial", "--data", str(tmp_path / "nope"), "--out", out]) == 2
    )
    assert "ReDial directory not found" in capsys.readouterr().err
