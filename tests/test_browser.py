"""The app as a person uses it: headless Chromium asks, clicks Why, likes, and sees the list change.

Builds a small real store (real encoders, identity re-ranker, no LLM), serves `app.py` on a
free loopback port in a subprocess and drives Debian's `/usr/bin/chromium` with Playwright
(never a downloaded browser). Screenshots go to a temp folder, or to $FUSIONREC_SCREENSHOTS
(`make screenshots` refreshes docs/screenshots/), so a test run never rewrites tracked files.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
START_S = 300  # app.py start-up limit: imports take minutes on a loaded 2-core machine
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# (id, title, description, tags, skimage picture or None, has audio)
ITEMS = [
    (
        "astro",
        "Astronaut portrait",
        "A smiling astronaut in a white space suit in front of a flag.",
        ["space", "portrait", "nasa"],
        "astronaut.png",
        False,
    ),
    (
        "rocket",
        "Rocket on the pad",
        "A rocket waiting on the launch pad under a clear sky.",
        ["space", "rocket", "launch"],
        "rocket.jpg",
        False,
    ),
    (
        "hubble",
        "Hubble deep field",
        "Thousands of distant galaxies seen by the Hubble telescope.",
        ["space", "galaxies", "stars"],
        "hubble_deep_field.jpg",
        False,
    ),
    (
        "moon",
        "The Moon",
        "The grey surface of the Moon with craters.",
        ["space", "moon", "calm"],
        "moon.png",
        False,
    ),
    (
        "cat",
        "Chelsea the cat",
        "A ginger cat looking sideways, calm and curious.",
        ["cat", "pet", "calm"],
        "chelsea.png",
        False,
    ),
    (
        "coffee",
        "Cup of coffee",
        "A cup of coffee on a saucer, morning calm.",
        ["coffee", "food", "calm"],
        "coffee.png",
        False,
    ),
    (
        "horse",
        "Horse silhouette",
        "A black silhouette of a running horse.",
        ["horse", "animal"],
        "horse.png",
        False,
    ),
    (
        "camera",
        "Cameraman",
        "A man with a film camera on a tripod in a field.",
        ["photography", "film"],
        "camera.png",
        False,
    ),
    (
        "speech",
        "Spoken words",
        "A short clip of calm speech, a voice reading aloud.",
        ["speech", "voice", "calm"],
        None,
        True,
    ),
    (
        "coins",
        "Old coins",
        "A set of old coins on a table.",
        ["coins", "history"],
        "coins.png",
        False,
    ),
]
INTERACTIONS = [  # user_id, item_id, rating, timestamp
    ("alice", "astro", 5, 1),
    ("alice", "rocket", 5, 2),
    ("alice", "coins", 2, 3),
    ("bob", "cat", 5, 1),
    ("bob", "coffee", 4, 2),
    ("bob", "horse", 4, 3),
    ("carol", "rocket", 4, 1),
    ("carol", "hubble", 5, 2),
    ("carol", "camera", 3, 3),
]


def build_small_store(root: Path, encoders: object) -> Path:
    """A 10-item multimodal store with three users; returns its config path (no LLM)."""
    import skimage

    from retrieval.config import FusionrecConfig
    from retrieval.ingest import ingest_catalogue
    from retrieval.store import VectorStore

    media = root / "media"
    media.mkdir(parents=True)
    data = Path(skimage.__file__).parent / "data"
    rows = []
    for iid, title, desc, tags, picture, audio in ITEMS:
        row = {"id": iid, "title": title, "description": desc, "tags": tags}
        if picture:
            shutil.copy(data / picture, media / picture)
            row["image"] = f"media/{picture}"
        if audio:
            shutil.copy(ROOT / "tests" / "data" / "speech.flac", media / "speech.flac")
            row["audio"] = "media/speech.flac"
        rows.append(row)
    catalogue = root / "items.jsonl"
    catalogue.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "interactions.csv").write_text(
        "user_id,item_id,rating,timestamp\n"
        + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in INTERACTIONS)
    )
    cfg_path = root / "fusionrec.toml"
    cfg_path.write_text(
        f'[store]\npath = "{root / "store"}"\n\n[encoders]\nnum_threads = 1\n\n'
        f'[data]\ninteractions = "{root / "interactions.csv"}"\nitems = "{catalogue}"\n'
        f'users_path = "{root / "users.jsonl"}"\n\n[llm]\nreranker = "identity"\nexplain = false\n'
    )
    cfg = FusionrecConfig.from_toml(cfg_path)
    report = ingest_catalogue(catalogue, VectorStore.from_config(cfg), encoders)
    assert not report.failed, report.to_dict()
    return cfg_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(cfg_path: Path, port: int, log: Path) -> subprocess.Popen:
    """Start `app.py` on loopback and wait until it answers (or fail with its log)."""
    env = dict(
        os.environ,
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OPENBLAS_NUM_THREADS="1",
        ANONYMIZED_TELEMETRY="False",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.pop("FUSIONREC_USER", None)
    env.pop("FUSIONREC_PASSWORD", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--config", str(cfg_path), "--port", str(port)],
        cwd=cfg_path.parent,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"app.py did not answer within {START_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, encoders: object):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("browser")
    cfg = build_small_store(root, encoders)
    port = free_port()
    proc = serve(cfg, port, root / "app.log")
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _slow_machine_timeouts() -> None:
    """Playwright's `expect` waits 5 s by default; a shared 2-core CI machine can take longer
    to render a Gradio update, so every wait here allows 60 s (a real failure still fails)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)


def _card_titles_with(page, word: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The card titles once a card names `word` (the chat can render before the cards)."""
    deadline = time.monotonic() + 60
    titles = _card_titles(page)
    while not any(word in t.lower() for t in titles) and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        titles = _card_titles(page)
    return titles


def _pick_user(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Choose (or type in) a user in the picker and wait until the page says so."""
    from playwright.sync_api import expect

    picker = page.locator("#fr-user input")
    picker.fill(name)
    picker.press("Enter")
    expect(page.locator("#fr-status")).to_contain_text(name)


def _card_titles(page) -> list[str]:  # type: ignore[no-untyped-def]
    titles = []
    for n in range(10):
        card = page.locator(f"#card-{n}")
        if card.count() and card.is_visible():
            first = page.locator(f"#card-text-{n}").inner_text().strip().split("\n")[0]
            titles.append(first.split(" ", 1)[1] if first.startswith("#") else first)  # drop "#3 "
    return titles


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make setup-system)")
def test_chat_why_like_and_upload_in_a_real_browser(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    _slow_machine_timeouts()

    shots = Path(os.environ.get("FUSIONREC_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(app_url)
        expect(page.locator("#fr-status")).to_contain_text("Chatting as")

        # The user picker: alice has a history (astronaut, rocket).
        _pick_user(page, "alice")

        # Ask in the chat; the reply streams in and the cards appear.
        page.locator("#fr-input textarea").fill("recommend something about space")
        page.locator("#fr-input textarea").press("Enter")
        expect(page.locator("#fr-chat")).to_contain_text("Here is what I found", timeout=60_000)
        expect(page.locator("#card-0")).to_be_visible()
        expect(page.locator("#fr-header")).to_contain_text("alice")
        before = _card_titles(page)
        assert len(before) == 5, before
        assert not any("Astronaut" in t or "Rocket" in t for t in before), (
            before
        )  # seen items filtered
        page.screenshot(path=str(shots / "01-recommendations.png"), full_page=True)

        # Why on the first card: the explanation and its evidence show up.
        page.locator("#why-0").click()
        expect(page.locator("#fr-why-evidence")).to_contain_text("Explanation path", timeout=60_000)
        expect(page.locator("#fr-why-text")).not_to_contain_text("Working out why")
        assert page.locator("#fr-why-text").inner_text().strip()
        page.screenshot(path=str(shots / "02-why.png"), full_page=True)

        # Like the first card: it joins the history, so the list changes at once.
        liked = before[0]
        page.locator("#like-0").click()
        expect(page.locator("#fr-status")).to_contain_text("Updated picks", timeout=60_000)
        after = _card_titles(page)
        assert after != before and liked not in after, (before, after)
        page.screenshot(path=str(shots / "03-after-like.png"), full_page=True)

        # Upload a catalogue with one good and one bad row: the good one goes in, the bad is listed.
        upload = tmp_path / "new items.csv"
        upload.write_text(
            "id,title,description,tags\nnew1,Night sky,Stars over a calm lake,space|calm\n"
            "new2,,no title here,oops\n"
        )
        page.get_by_text("Add to the catalogue").click()
        page.locator("#fr-upload input[type=file]").set_input_files(str(upload))
        page.locator("#fr-ingest").click()
        expect(page.locator("#fr-report")).to_contain_text("added 1", timeout=60_000)
        expect(page.locator("#fr-errors")).to_contain_text("missing title")
        page.locator("#fr-errors").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "04-upload-report.png"), full_page=True)
        browser.close()


HOSTILE = [  # issue 11 #2: catalogue text that tries to fetch, link and shout in the chat
    ("pix", "![](http://127.0.0.1:9/pixel.png) Prize pixel"),
    ("claim", "[Click to claim your prize](http://127.0.0.1:9/claim)"),
    ("shout", "<h1>Huge prize</h1><b>bold prize</b> <img src=http://127.0.0.1:9/i.png>"),
]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make setup-system)")
def test_catalogue_markup_stays_text_in_chat_and_why(app_url: str, tmp_path: Path) -> None:
    """Titles with Markdown images/links and HTML: no request leaves, no link, no heading."""
    from playwright.sync_api import expect, sync_playwright

    _slow_machine_timeouts()

    upload = tmp_path / "prizes.jsonl"
    upload.write_text(
        "".join(
            json.dumps({"id": i, "title": t, "description": "win a prize, claim the prize"}) + "\n"
            for i, t in HOSTILE
        )
    )
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(app_url)
        expect(page.locator("#fr-status")).to_contain_text("Chatting as")
        page.get_by_text("Add to the catalogue").click()
        page.locator("#fr-upload input[type=file]").set_input_files(str(upload))
        page.locator("#fr-ingest").click()
        expect(page.locator("#fr-report")).to_contain_text("added 3", timeout=60_000)

        _pick_user(page, "mallory")
        page.locator("#fr-input textarea").fill("recommend a prize to claim")
        page.locator("#fr-input textarea").press("Enter")
        chat = page.locator("#fr-chat")
        expect(chat).to_contain_text("Click to claim your prize", timeout=60_000)
        expect(chat).to_contain_text("<h1>Huge prize</h1>")  # shown as the text it is
        expect(chat).to_contain_text("![](http://127.0.0.1:9/pixel.png)")
        assert chat.locator("a").filter(has_text="Click").count() == 0
        assert chat.locator("h1, img[src*='127.0.0.1:9/'], a[href*='127.0.0.1:9/']").count() == 0

        # the Why panel of a hostile card: the explanation quotes the title as text too
        titles = _card_titles_with(page, "prize")
        slot = next(n for n, t in enumerate(titles) if "prize" in t.lower())
        page.locator(f"#why-{slot}").click()
        why = page.locator("#fr-why-text")
        expect(page.locator("#fr-why-evidence")).to_contain_text("Explanation path", timeout=60_000)
        assert why.locator("h1, img, a").count() == 0
        page.wait_for_timeout(1000)  # let any late image load show up in the request log
        browser.close()
    leaked = [u for u in requests if "127.0.0.1:9/" in u]
    assert not leaked, leaked
