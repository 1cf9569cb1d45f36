"""Issue 11 through the app and the CLI: the file-read hole (#1), `recommend --k` (#8) and
damaged or hostile zips (#10), each against the real code paths (real Chroma store, real
MiniLM, the real app.py server on loopback for #1)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from ui import uploads


def _png(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A text-only store (MiniLM) with one operator item whose picture is in its folder."""
    root = tmp_path_factory.mktemp("site")
    _png(root / "media" / "cat.png")
    private = _png(root.parent / f"{root.name}-private" / "notes.png")  # outside every root
    (root / "items.jsonl").write_text(
        json.dumps({"id": "cat", "title": "Red cat", "image": "media/cat.png"})
        + "\n"
        + json.dumps({"id": "dog", "title": "Dog", "description": "a calm dog"})
        + "\n"
    )
    cfg = root / "fusionrec.toml"
    cfg.write_text(
        f'[store]\npath = "{root / "store"}"\n\n'
        '[encoders]\nimage = "none"\naudio = "none"\nnum_threads = 1\n\n'
        '[llm]\nreranker = "identity"\nexplain = false\n\n'
        f'[data]\nusers_path = "{root / "users.jsonl"}"\n'
    )
    from agent.agent import RecommendationAgent

    agent = RecommendationAgent.from_config(cfg)
    report = agent.ingest(root / "items.jsonl")
    assert report.added == 2 and not report.failed
    return root, cfg, private, agent


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _serve(cfg: Path, port: int, log: Path) -> subprocess.Popen:
    """app.py on loopback (as tests/test_browser.py starts it), waiting up to 5 minutes: the
    shared 2-core machine can take minutes to import gradio and torch under load."""
    import os
    import sys
    import time

    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    env.update(NO_PROXY="127.0.0.1,localhost", OPENBLAS_NUM_THREADS="1")
    env.pop("FUSIONREC_USER", None)
    env.pop("FUSIONREC_PASSWORD", None)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, str(root / "app.py"), "--config", str(cfg), "--port", str(port)],
        cwd=cfg.parent,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if _get(f"http://127.0.0.1:{port}/") == 200:
            return proc
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"app.py did not answer in 300 s:\n{log.read_text()[-3000:]}")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


# ---- #1: media only from the operator's folders, before and after a restart ------------------
def test_uploaded_row_naming_a_private_file_is_never_served(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_browser import free_port

    root, cfg, private, agent = site
    upload_dir = root / "uploads"  # app.py's default: <store>/../uploads
    rows = [
        {"id": "up", "title": "Uploaded picture", "image": "pic.png"},
        {"id": "leak", "title": "Leak", "image": str(private)},
        {"id": "gone", "title": "Gone", "image": "/no/such/dir/x.png"},
    ]
    pic = _png(tmp_path / "pic.png").read_bytes()
    bundle = _zip(
        tmp_path / "bundle.zip",
        {"items.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(), "pic.png": pic},
    )
    text, table, new = uploads.ingest_upload(
        agent, str(bundle), upload_dir, max_bytes=uploads.MAX_UPLOAD_BYTES, served=set()
    )
    assert "added 3" in text, text
    uploaded = next(p for p in new if Path(p).name == "pic.png")

    port = free_port()  # "restart": a fresh app.py process on the same store
    proc = _serve(cfg, port, tmp_path / "app.log")
    try:
        base = f"http://127.0.0.1:{port}/gradio_api/file="
        assert _get(base + str(private)) == 403
        assert _get(base + str((root / "media" / "cat.png").resolve())) == 200
        assert _get(base + uploaded) == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    errors = {r[1]: r[3] for r in table}
    # an existing private file and a missing path read the same: nothing is revealed
    assert errors == {"leak": "image not found or not readable", "gone": errors["gone"]}
    assert errors["gone"] == errors["leak"]
    assert agent.items["leak"].image is None  # the private file was never opened or kept
    assert [Path(p).name for p in new] == ["pic.png"]


def test_media_files_stay_inside_their_catalogue_or_operator_folders(tmp_path: Path) -> None:
    """An operator catalogue row naming a file elsewhere needs `--media-dir` to be shown."""
    from retrieval.catalogue import Item
    from ui import serving

    inside = _png(tmp_path / "cat" / "a.png")
    elsewhere = _png(tmp_path / "photos" / "b.png")
    items = [Item("a", "A", image=str(inside)), Item("b", "B", image=str(elsewhere))]
    sources = {"a": str(tmp_path / "cat"), "b": str(tmp_path / "cat")}
    assert serving.media_files(items, sources=sources) == [str(inside.resolve())]
    both = serving.media_files(items, sources=sources, roots=[tmp_path / "photos"])
    assert both == sorted([str(inside.resolve()), str(elsewhere.resolve())])
    assert serving.media_files(items, sources={}) == []  # no recorded origin, no roots: none


# ---- #8: recommend --k ------------------------------------------------------------------------
@pytest.mark.parametrize("k", ["0", "-5"])
def test_recommend_with_k_below_one_is_a_one_line_error(site, k: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from agent.cli import main

    _, cfg, _, _ = site
    assert main(["--config", str(cfg), "recommend", "--user", "u1", "--k", k]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"fusionrec: error: --k must be at least 1 (got {k})"


def test_recommend_with_a_huge_k_says_why_the_list_is_short(site, capsys) -> None:  # type: ignore[no-untyped-def]
    from agent.cli import main

    _, cfg, _, _ = site
    assert main(["--config", str(cfg), "recommend", "--user", "u1", "--k", "1000000000"]) == 0
    out, err = capsys.readouterr()
    assert len([x for x in out.splitlines() if x.strip()[:2].rstrip(".").isdigit()]) >= 2
    assert "note: asked for 1,000,000,000, got" in err and "n_candidates" in err


# ---- #10: damaged and hostile zips --------------------------------------------------------------
def _corrupt(path: Path, needle: bytes) -> Path:
    data = bytearray(path.read_bytes())
    at = data.index(needle)
    data[at] ^= 0xFF  # one flipped byte of member data: the CRC no longer matches
    path.write_bytes(bytes(data))
    return path


def _false_size(path: Path, member: str, size: int) -> Path:
    """Rewrite a member's sizes in both headers (a zip that lies about its size)."""
    import struct

    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, off in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
        start = 0
        while (at := data.find(sig, start)) >= 0:
            start = at + 4
            name_at = at + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                struct.pack_into("<II", data, at + off, size, size)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damage", ["crc", "size"])
def test_damaged_zip_is_a_clear_refusal_and_leaves_nothing(tmp_path: Path, damage: str) -> None:
    payload = b"id,title\n" + b"".join(b"%d,Item %d\n" % (n, n) for n in range(200))
    bundle = _zip(tmp_path / "bundle.zip", {"items.csv": payload, "pic.png": b"x" * 500})
    if damage == "crc":
        _corrupt(bundle, b"Item 150")
    else:
        _false_size(bundle, "items.csv", len(payload) // 3)
    updir = tmp_path / "uploads"
    with pytest.raises(uploads.UploadError, match="damaged or unsupported zip"):
        uploads.save_upload(bundle, updir)
    assert not [p for p in updir.rglob("*") if p.is_file()]

    class NoIngest:
        def ingest(self, *a, **k):  # type: ignore[no-untyped-def]
            raise AssertionError("a refused upload must not be ingested")

    text, rows, new = uploads.ingest_upload(
        NoIngest(), str(bundle), updir, max_bytes=uploads.MAX_UPLOAD_BYTES, served=set()
    )
    assert text.startswith("**Refused:**") and "damaged" in text and rows == [] == new


def test_refused_zip_slip_leaves_nothing_behind(tmp_path: Path) -> None:
    """The catalogue unpacked before the evil member was found used to stay on disk."""
    bundle = _zip(
        tmp_path / "evil.zip", {"items.csv": b"id,title\n1,A\n", "../../escape.txt": b"pwned"}
    )
    updir = tmp_path / "uploads"
    with pytest.raises(uploads.UploadError, match="outside the upload folder"):
        uploads.save_upload(bundle, updir)
    assert not [p for p in updir.rglob("*")]  # not even an empty stamp folder
    assert not (tmp_path / "escape.txt").exists()


def test_media_errors_in_the_upload_report_do_not_reveal_paths(tmp_path: Path) -> None:
    from retrieval.catalogue import RowError
    from retrieval.ingest import IngestReport

    report = IngestReport(
        failed=[
            RowError("a", "image", "/srv/x.png: image /srv/x.png: file not found"),
            RowError("b", "image", "/etc/y.png: image /etc/y.png: cannot decode (Unidentified)"),
            RowError("c", "audio", "/etc/z.wav: audio /etc/z.wav: file is 900 MB; limit 200 MB"),
            RowError("d", "title", "missing title", 4),
        ]
    )
    rows = uploads.report_rows(report)
    assert [r[3] for r in rows] == [
        "image not found or not readable",
        "image not found or not readable",
        "audio not found or not readable",
        "missing title",
    ]


# ---- the load test's isolation check can fail ---------------------------------------------------
def test_load_test_isolation_check_catches_another_sessions_state() -> None:
    from bench.load_chat import check_isolation

    own, others = ["recommend a war film", "why #2?"], ["recommend a western"]
    card = "**#{} {}**\n\n<small>War</small>"
    good = (
        "Here is what I found:\n1. Stalingrad (1993) (War)\n2. Glory (1989) (War)",
        "Top 2 for user **7** — “recommend a war film” · retriever order",
        card.format(1, "Stalingrad (1993)"),
        card.format(2, "Glory (1989)"),
    )
    assert check_isolation(good, user="7", own=own, others=others) == (True, "")
    swapped = (*good[:2], good[3], good[2])  # cards from another list
    assert check_isolation(swapped, user="7", own=own, others=others)[0] is False
    assert check_isolation(good, user="8", own=own, others=others)[0] is False
    leak = ('Recommended because it matches your request "recommend a western".', "")
    assert check_isolation(leak, user="7", own=own, others=others)[0] is False
    plain = ("Recommended because you rated Glory 5.", "")
    assert check_isolation(plain, user="7", own=own, others=others) == (None, "")
