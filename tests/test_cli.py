"""The `fusionrec` command as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "fusionrec.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "store"}"\n'
        '[encoders]\nimage = "none"\naudio = "none"\nnum_threads = 1\n'
        '[llm]\nreranker = "identity"\nexplain = false\n'
        f'[data]\nusers_path = "{tmp_path / "users.jsonl"}"\n'
    )
    return path


def test_empty_catalogue_exits_nonzero_with_a_report_entry(
    tmp_path: Path, config: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty.jsonl").write_text("")
    report = tmp_path / "report.json"
    assert (
        main(
            [
                "--config",
                str(config),
                "ingest",
                str(tmp_path / "empty.jsonl"),
                "-q",
                "--report",
                str(report),
            ]
        )
        == 1
    )
    failed = json.loads(report.read_text())["failed"]
    assert failed and failed[0]["field"] == "catalogue"


def test_ingest_recommend_explain_and_clear_errors(tmp_path: Path, config: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {"id": "a", "title": "Ocean waves at night", "description": "Calm sea sounds for sleep."},
        {"id": "b", "title": "Thunderstorm", "description": "Loud rain and thunder."},
        {"id": "c", "title": "City traffic", "description": "Cars, horns and buses."},
        {"id": "c", "title": "Duplicate", "description": "Same id again."},
    ]
    cat = tmp_path / "items.jsonl"
    cat.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["--config", str(config), "ingest", str(cat), "-q"]) == 0
    out = capsys.readouterr()
    assert "added 3" in out.out and "duplicate id" in out.err

    assert (
        main(
            [
                "--config",
                str(config),
                "recommend",
                "--user",
                "new",
                "--k",
                "2",
                "--query",
                "relaxing sea",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in result["items"]][0] == "a"

    assert main(["--config", str(config), "explain", "--user", "new", "--item", "a", "--json"]) == 0
    exp = json.loads(capsys.readouterr().out)
    assert exp["text"] and exp["evidence"]["item_id"] == "a"

    assert main(["--config", str(config), "explain", "--user", "new", "--item", "zzz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown item id 'zzz'" in err[0]
