"""The app's guard rails and formatting, without a server: uploads, binding, cards, evidence."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from agent.records import Evidence, Explanation, HistoryLink, Recommendation, RecommendResult
from retrieval.catalogue import Item, RowError
from retrieval.errors import FusionrecError
from retrieval.ingest import IngestReport
from ui import cards, serving, timers, uploads


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ---- upload names and paths --------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        ".",
        "",
        ".bashrc",
        "..\\..\\windows\\win.ini",
        "cat.exe",
        "notes.txt",
        ".hidden.csv",
    ],
)
def test_bad_upload_names_are_refused(name: str) -> None:
    with pytest.raises(uploads.UploadError):
        uploads.sanitize_filename(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/items.csv", "items.csv"),
        ("/abs/path/items.jsonl", "items.jsonl"),
        ("C:\\Users\\me\\my items.parquet", "my_items.parquet"),
        ("mé$sy;name`.csv", "m_sy_name_.csv"),
        ("bundle.ZIP", "bundle.ZIP"),
    ],
)
def test_upload_names_lose_folders_and_odd_characters(name: str, expected: str) -> None:
    assert uploads.sanitize_filename(name) == expected


def test_traversal_name_is_written_inside_the_upload_dir(tmp_path: Path) -> None:
    src = tmp_path / "incoming.csv"
    src.write_text("id,title\n1,A\n")
    updir = tmp_path / "a" / "uploads"
    saved = uploads.save_upload(src, updir, name="../../../../escape.csv")
    assert saved.name == "escape.csv" and serving.inside(updir, saved)
    assert not (tmp_path / "escape.csv").exists()
    assert _files_under(tmp_path) == {src, saved}


def test_oversize_upload_is_refused_before_copying(tmp_path: Path) -> None:
    src = tmp_path / "big.csv"
    src.write_bytes(b"x" * 2048)
    updir = tmp_path / "uploads"
    with pytest.raises(uploads.UploadError, match="over the"):
        uploads.save_upload(src, updir, max_bytes=1024)
    assert not updir.exists() or not _files_under(updir)


def test_upload_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(uploads.UploadError):
        uploads.save_upload(tmp_path, tmp_path / "uploads", name="dir.csv")


def _zip(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "evil", ["../evil.csv", "/tmp/evil.csv", "a/../../evil.csv", "C:/evil.csv", "..\\evil.csv"]
)
def test_zip_slip_members_are_refused(tmp_path: Path, evil: str) -> None:
    archive = _zip(tmp_path / "in.zip", {"items.csv": b"id,title\n1,A\n", evil: b"pwned"})
    updir = tmp_path / "uploads"
    with pytest.raises(uploads.UploadError, match="outside"):
        uploads.save_upload(archive, updir)
    assert not (tmp_path / "evil.csv").exists()
    assert all(serving.inside(updir, p) for p in _files_under(updir))


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "in.zip", {"items.csv": b"id,title\n1,A\n"}, symlink="media/link.png")
    with pytest.raises(uploads.UploadError, match="outside"):
        uploads.save_upload(archive, tmp_path / "uploads")


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "in.zip", {"items.csv": b"id,title\n1,A\n", "pad.bin": b"\0" * 100_000}
    )
    with pytest.raises(uploads.UploadError, match="more than"):
        uploads.extract_zip(archive, tmp_path / "out", max_total=10_000)


def test_zip_with_catalogue_and_media_unpacks_inside(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "bundle.zip",
        {"shop/items.jsonl": b'{"id": "1", "title": "A"}\n', "shop/media/a.png": b"\x89PNG"},
    )
    updir = tmp_path / "uploads"
    catalogue = uploads.save_upload(archive, updir)
    assert catalogue.name == "items.jsonl" and serving.inside(updir, catalogue)
    assert (catalogue.parent / "media" / "a.png").is_file()
    assert not list(updir.rglob("*.zip"))  # the archive itself is not kept


def test_zip_without_exactly_one_catalogue_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "in.zip", {"a.csv": b"id,title\n", "b.jsonl": b""})
    with pytest.raises(uploads.UploadError, match="exactly one"):
        uploads.save_upload(archive, tmp_path / "uploads")
    with pytest.raises(uploads.UploadError, match="not a readable zip"):
        (tmp_path / "fake.zip").write_bytes(b"not a zip")
        uploads.save_upload(tmp_path / "fake.zip", tmp_path / "uploads")


# ---- binding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_nothing(host: str) -> None:
    serving.check_bind(host, allow_remote=False, has_auth=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_remote_hosts_need_allow_remote_and_a_login(host: str) -> None:
    with pytest.raises(FusionrecError, match="--allow-remote"):
        serving.check_bind(host, allow_remote=False, has_auth=True)
    with pytest.raises(FusionrecError, match="login"):
        serving.check_bind(host, allow_remote=True, has_auth=False)
    serving.check_bind(host, allow_remote=True, has_auth=True)


def test_main_refuses_remote_bind_before_loading_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import app

    monkeypatch.delenv("FUSIONREC_USER", raising=False)
    monkeypatch.delenv("FUSIONREC_PASSWORD", raising=False)
    monkeypatch.setattr(
        "agent.agent.RecommendationAgent.from_config",
        lambda *a, **k: pytest.fail("must refuse before building the agent"),
    )
    assert app.main(["--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert app.main(["--host", "0.0.0.0", "--allow-remote"]) == 2
    assert "FUSIONREC_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("FUSIONREC_USER", "me")
    assert app.main([]) == 2  # half a login is a mistake, not "no login"
    assert "both" in capsys.readouterr().err


def test_importing_app_loads_no_models() -> None:
    import subprocess
    import sys

    code = (
        "import sys, app; heavy = [m for m in ('torch', 'gradio', 'transformers', 'chromadb') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        env=dict(os.environ),
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("text", "ok"), [("42", "42"), ("  new user ", "new user")])
def test_user_ids_are_cleaned(text: str, ok: str) -> None:
    assert serving.clean_user_id(text) == ok


@pytest.mark.parametrize("text", ["", "   ", None, "x" * 65, "bad\nid"])
def test_bad_user_ids_are_refused(text: str | None) -> None:
    with pytest.raises(FusionrecError):
        serving.clean_user_id(text)


# ---- media, cards, evidence --------------------------------------------------------------------
def test_only_listed_local_media_files_are_served(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(b"\x89PNG")
    items = [
        Item("1", "A", image=str(img), audio=str(tmp_path / "missing.wav")),
        Item("2", "B", image="https://example.org/b.png"),
        Item("3", "C", image="/etc/passwd"),
    ]
    allowed = set(serving.media_files(items))
    assert allowed == {str(img.resolve())}
    assert serving.servable(str(img), allowed) == str(img.resolve())
    assert serving.servable("/etc/passwd", allowed) is None
    assert serving.servable("https://example.org/b.png", allowed) is None  # offline: never fetched
    assert serving.media_files(items, under=tmp_path / "elsewhere") == []


def _rec(rank: int = 1, llm: float | None = None) -> Recommendation:
    item = Item(
        "m1", "Toy *Story* (1995)", tags=("Animation", "Children's", "Comedy", "a", "b", "c")
    )
    return Recommendation(item=item, score=0.8123, rank=rank, sources={"cf": 0.5}, llm_score=llm)


def test_card_shows_rank_title_tags_and_scores_escaped() -> None:
    text = cards.card_markdown(_rec(3, llm=0.91))
    assert text.startswith("**#3 Toy \\*Story\\* (1995)**")
    assert "Animation, Children's, Comedy, a, b" in text and ", c" not in text
    assert "score 0.812" in text and "LLM 0.91" in text
    assert "LLM" not in cards.card_markdown(_rec())


def test_result_header_says_how_the_list_was_made() -> None:
    result = RecommendResult(
        "7", [_rec()], reranked=False, note="LLM over its 15 s budget", query="calm"
    )
    text = cards.result_header(result, "7")
    assert "Top 1 for user **7**" in text and "“calm”" in text and "retriever order" in text
    assert "15 s budget" in text
    assert "ask in the chat" in cards.result_header(None, "7")


def _explanation(**kw: object) -> Explanation:
    ev = Evidence(
        item_id="m1",
        title="Toy Story",
        content_score=0.42,
        rank=2,
        retriever_score=0.7,
        history=[
            HistoryLink("h1", "Aladdin | (1992)", "text", 0.61, 0.2, 5.0),
            HistoryLink("h2", "Lion King", "image", 0.55, 0.3, None),
        ],
        modality_scores={"text": 0.2, "image": 0.22},
        co_liked=[("h1", "Aladdin", 12), ("h3", "Up", 1)],
        matched_tags=["Animation"],
        request="something funny",
        request_score=0.33,
    )
    return Explanation(text="Because you liked Aladdin.", evidence=ev, **kw)  # type: ignore[arg-type]


def test_evidence_lists_history_contributions_colikes_tags_and_path() -> None:
    text = cards.evidence_markdown(_explanation(path="llm"))
    assert "**Explanation path:** llm" in text
    lines = text.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    assert len(table) == 4 and table[2].startswith(
        "| Lion King | image"
    )  # largest contribution first
    assert "Aladdin \\| (1992)" in table[3]  # a pipe in a title cannot break the table
    assert "+0.3000" in table[2] and "| 5 |" in table[3]
    assert "Aladdin (12 users); Up (1 user)" in text
    assert "**Matched tags:** Animation" in text and "something funny" in text
    assert "**Rank** #2" in text


def test_evidence_says_when_the_template_was_used_and_why() -> None:
    text = cards.evidence_markdown(
        _explanation(
            path="template",
            rejected="Toy Story won 3 Oscars.",
            reason="names a number not in the evidence",
        )
    )
    assert "template" in text and "LLM text rejected: names a number" in text
    text = cards.evidence_markdown(_explanation(path="template", reason="no LLM configured"))
    assert "LLM not used: no LLM configured" in text


def test_cold_start_evidence_says_so() -> None:
    exp = Explanation(text="Popular.", evidence=Evidence(item_id="x", title="X"), path="template")
    assert "cold start" in cards.evidence_markdown(exp)


def test_ingest_report_rows_and_summary() -> None:
    report = IngestReport(
        added=3,
        failed=[
            RowError("7", "image", "cannot decode image", 4),
            RowError(None, "id", "missing id", 9),
        ],
    )
    assert uploads.report_rows(report) == [
        [4, "7", "image", "image not found or not readable"],  # never which (issue 11 #10)
        [9, "", "id", "missing id"],
    ]
    assert "added 3" in uploads.report_markdown(
        report, "items.csv"
    ) and "2 problem row(s)" in uploads.report_markdown(report, "items.csv")


def test_with_ticks_reports_silence_and_passes_items_and_errors() -> None:
    import time

    def slow():  # type: ignore[no-untyped-def]
        yield "a"
        time.sleep(0.35)
        yield "b"

    got = list(timers.with_ticks(slow(), every=0.1))
    items = [g for g, _ in got if g is not None]
    assert items == ["a", "b"] and any(g is None for g, _ in got)
    assert "working… 12 s" in timers.working(
        "Here:", 12
    ) and "loads the language model" in timers.working("", 12)

    def broken():  # type: ignore[no-untyped-def]
        yield "x"
        raise FusionrecError("boom")

    with pytest.raises(FusionrecError, match="boom"):
        list(timers.with_ticks(broken(), every=0.1))
