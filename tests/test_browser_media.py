"""The media demo as a person sees it (issue 13): three journeys in headless Chromium.

1. A cold user asks for "something calm to listen to while I read": the cards are music
   tracks with audio players and say what YAMNet heard.
2. "pictures of birds", then Why on a card: the card shows the picture and what the image
   encoder saw, and the Why panel names those labels.
3. A demo persona (labelled so in the picker) gets a list; a Like changes it.

The store is a SMALL media demo (67 items: the mood-folder music tracks, bird stamps, farm
and wild animal photos with their sounds, a few ambient sounds, plants, vehicles and space
for the personas), built from the cached registry packages by the real build code
(`build_media_catalogue(select=...)`) and ingested with the real encoders (MiniLM,
EfficientNet-Lite0, YAMNet); the app runs with the identity re-ranker and template
explanations (no LLM), so the cards must say "retriever order". The packages come from
`make setup-media` (`fetch.fetch_all`), never from this test: without them it skips.
Screenshots go to a temp folder, or to $FUSIONREC_SCREENSHOTS (`make screenshots`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.llm import weights as llm_weights
from tests.test_browser import (
    CHROME_ARGS,
    CHROMIUM,
    _card_titles,
    _pick_user,
    _slow_machine_timeouts,
    free_port,
    serve,
)

# (source, category or None = any, subcategory or None = any) -> rows kept, in id order
SUBSET: tuple[tuple[tuple[str, str | None, str | None], int], ...] = (
    (("immich", None, None), 28),  # every mood-folder track: calm must beat energetic
    (("tuxpaint", "animals", "birds"), 10),  # those with a sound first
    (("gcompris", "animals", "farm"), 9),  # photo + sound
    (("gcompris", "animals", "wild"), 4),
    (("gcompris", "sounds", None), 4),
    (("tuxpaint", "plants", None), 4),  # Maya's history (each persona gets a history)
    (("tuxpaint", "vehicles", None), 3),  # Leo's
    (("tuxpaint", "space", None), 3),
)
PERSONA_SOUNDS = ("gc-sound-rain-in-the-garden", "gc-sound-frogs-in-a-pond-during-a-storm")
PERSONA = "ana"  # "Ana — animals & kids' things (demo persona)": her list has pictures and sounds
DEMO_PERSONA = "(demo persona)"  # retrieval.datasets.media.personas.LABEL_SUFFIX
CARDS = 5  # the app's default k
RESPONSE_MS = 180_000  # longest wait for one answer (first request loads models; 2 busy cores)


def _media_cache_ready() -> bool:
    from retrieval.datasets.media import fetch

    cache = fetch.default_cache()
    return all((cache / p.key / ".complete").is_file() for p in fetch.PACKAGES if not p.optional)


def select_rows(rows: list[Any]) -> list[Any]:
    """The test's subset of the media rows, by their (withheld) package labels."""

    def matches(row: Any, want: tuple[str, str | None, str | None]) -> bool:
        lab = row.labels
        return all(
            v is None or lab.get(k) == v
            for k, v in zip(("source", "category", "subcategory"), want, strict=True)
        )

    kept: dict[str, Any] = {r.id: r for r in rows if r.id in PERSONA_SOUNDS}
    for want, n in SUBSET:
        pool = sorted(
            (r for r in rows if matches(r, want) and r.id not in kept),
            key=lambda r: (r.audio is None, r.id),
        )
        kept.update((r.id, r) for r in pool[:n])
    return list(kept.values())


NO_LLM = '[llm]\nreranker = "identity"\nexplain = false\n'
# the packaged 1.5B as the demo runs it: chat re-rank at the default chat_alpha, explanations
WITH_LLM = '[llm]\nmodel = "qwen2.5-coder-1.5b"\nbackend = "llama.cpp"\nnum_threads = 2\n'


def build_media_store(
    root: Path, encoders: object, llm: str = NO_LLM
) -> tuple[Path, dict[str, Any]]:
    """Build and ingest the small media demo; returns its config and per-id store labels."""
    from agent.explain.evidence import labels_from_metadata
    from retrieval.config import FusionrecConfig
    from retrieval.datasets.media.build import build_media_catalogue
    from retrieval.datasets.media.demo import media_config_text
    from retrieval.ingest import ingest_catalogue
    from retrieval.store import VectorStore

    t0 = time.perf_counter()
    report = build_media_catalogue(root, select=select_rows)
    t1 = time.perf_counter()
    cfg_path = root / "fusionrec.toml"
    cfg_path.write_text(media_config_text(root) + "\n[encoders]\nnum_threads = 1\n\n" + llm)
    store = VectorStore.from_config(FusionrecConfig.from_toml(cfg_path))
    ingest = ingest_catalogue(root / "catalogue.jsonl", store, encoders)
    assert ingest.added == report.items, ingest.to_dict()
    ids, _, metas = store.get("text", include_vectors=False)
    labels = {i: labels_from_metadata(m) for i, m in zip(ids, metas, strict=True)}
    rows = [json.loads(x) for x in (root / "catalogue.jsonl").read_text().splitlines() if x]
    timing = {"build_s": round(t1 - t0, 1), "ingest_s": round(time.perf_counter() - t1, 1)}
    (root / "timing.json").write_text(json.dumps(timing | {"items": report.items}))
    return cfg_path, {
        "labels": labels,
        "ids": {r["title"]: r["id"] for r in rows},
        "benchmark": json.loads((root / "benchmark_labels.json").read_text()),
        "log": root / "app.log",
    }


@pytest.fixture(scope="module")
def media_app(
    tmp_path_factory: pytest.TempPathFactory, encoders: object
) -> Iterator[dict[str, Any]]:
    yield from _media_app(tmp_path_factory, encoders, NO_LLM)


def _media_app(
    tmp_path_factory: pytest.TempPathFactory, encoders: object, llm: str
) -> Iterator[dict[str, Any]]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (make setup-system)")
    if not _media_cache_ready():
        pytest.skip("needs the media packages in the cache (make setup-media)")
    root = tmp_path_factory.mktemp("media-browser")
    cfg, info = build_media_store(root, encoders, llm)
    port = free_port()
    proc = serve(cfg, port, root / "app.log")
    info["url"] = f"http://127.0.0.1:{port}/"
    yield info
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _ask(page: Any, text: str, header: str | None = None) -> None:
    """Send a chat message; wait until the header shows `header` (default: the message, which
    it quotes) and the cards have settled."""
    from playwright.sync_api import expect

    page.locator("#fr-input textarea").fill(text)
    page.locator("#fr-input textarea").press("Enter")
    expect(page.locator("#fr-header")).to_contain_text(header or text, timeout=RESPONSE_MS)
    expect(page.locator("#card-0")).to_be_visible()
    _settled(page)


def _settled(page: Any) -> None:
    """Wait until every shown card has its text (no "0.3s" loading timer over it)."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[id^=card-text-]')]"
        ".filter(e => e.offsetParent !== null)"
        ".every(e => e.innerText.trim().startsWith('#'))"
    )


def _wait_media(page: Any, n: int) -> None:
    """Let card `n`'s picture finish loading (a screenshot should show it, not a blank)."""
    page.wait_for_function(
        "n => [...document.querySelectorAll(`#card-${n} img`)].every(i => i.complete)", arg=n
    )


def _has_player(page: Any, n: int) -> bool:
    return page.locator(f"#card-{n} audio").count() > 0


def _has_picture(page: Any, n: int) -> bool:
    return page.locator(f"#card-{n} img").count() > 0


def test_three_journeys_on_the_media_demo(media_app: dict[str, Any], tmp_path: Path) -> None:
    _in_browser(media_app, tmp_path, _journeys)


def _in_browser(info: dict[str, Any], tmp_path: Path, journeys: Any) -> None:
    """Run `journeys(page, info, shot)` in headless Chromium; a failure saves the page."""
    from playwright.sync_api import sync_playwright

    _slow_machine_timeouts()
    shots_dir = Path(os.environ.get("FUSIONREC_SCREENSHOTS") or tmp_path / "screenshots")
    shots_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1150})
        page.set_default_timeout(RESPONSE_MS)

        def shot(name: str) -> None:
            page.screenshot(path=str(shots_dir / name), full_page=True)

        try:
            journeys(page, info, shot)
        except Exception as e:  # a failure says what the page and the app showed
            fail = tmp_path / "failure.png"
            page.screenshot(path=str(fail), full_page=True)
            log = info["log"].read_text(errors="replace")[-3000:]
            raise AssertionError(f"{e}\n(page: {fail})\napp.log tail:\n{log}") from e
        finally:
            browser.close()


HAS_QWEN = all(
    importlib.util.find_spec(p) for p in llm_weights.PACKAGED["qwen2.5-coder-1.5b"].packages
)


@pytest.fixture(scope="module")
def media_app_llm(
    tmp_path_factory: pytest.TempPathFactory, encoders: object
) -> Iterator[dict[str, Any]]:
    yield from _media_app(tmp_path_factory, encoders, WITH_LLM)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_QWEN, reason="1.5B weights not installed (make setup-llm)")
def test_the_llm_at_work_on_the_media_demo(media_app_llm: dict[str, Any], tmp_path: Path) -> None:
    """With the packaged 1.5B: the calm request's cards say the LLM re-ranked them (or why it
    could not, within its time budget), and the Why is the LLM's text about what was heard."""
    _in_browser(media_app_llm, tmp_path, _llm_journey)


def _llm_journey(page: Any, info: dict[str, Any], shot: Any) -> None:
    from playwright.sync_api import expect

    page.goto(info["url"])
    expect(page.locator("#fr-status")).to_contain_text("Chatting as")
    _pick_user(page, "listener")
    _ask(page, "something calm to listen to while I read")  # loads the model: may hit the budget
    _ask(page, "something calm and gentle to listen to")  # the model is warm now
    header = page.locator("#fr-header").inner_text()
    assert "re-ranked by the LLM" in header, header
    expect(page.locator("#card-text-0")).to_contain_text("re-ranked by the LLM")
    loud = [t for t in _card_titles(page) if labels_of(info, t, "mood") == "energetic"]
    assert not loud, f"a calm request got tracks filed under energetic: {loud}"
    page.locator("#why-0").click()
    expect(page.locator("#fr-why-evidence")).to_contain_text("What the encoders saw")
    expect(page.locator("#fr-why-text")).not_to_be_empty()
    evidence = page.locator("#fr-why-evidence").inner_text()
    # the model wrote it (or wrote one the check refused, which the panel says): it ran
    assert "written by the LLM" in evidence or "LLM text rejected" in evidence, evidence[:400]
    page.locator("#fr-why").scroll_into_view_if_needed()
    shot("media-04-llm-rerank-why.png")


def _journeys(page: Any, info: dict[str, Any], shot: Any) -> None:
    from playwright.sync_api import expect

    labels: dict[str, dict[str, list[str]]] = info["labels"]
    page.goto(info["url"])
    expect(page.locator("#fr-status")).to_contain_text("Chatting as")

    # 1. a calm-music request from a cold user: music tracks with players and what was heard
    _pick_user(page, "reader")
    _ask(page, "something calm to listen to while I read")
    calm = _card_titles(page)
    for n in range(3):
        assert _has_player(page, n), f"card {n} ({calm[n]!r}) has no audio player"
        expect(page.locator(f"#card-text-{n}")).to_contain_text("heard in the sound")
        expect(page.locator(f"#card-text-{n}")).to_contain_text("retriever order")
    expect(page.locator("#fr-header")).to_contain_text("retriever order")  # no LLM in this app
    shot("media-01-calm.png")
    music = [t for t in calm[:3] if labels_of(info, t, "source") == "immich"]
    assert len(music) == 3, f"top 3 for a calm request are not all music tracks: {calm}"
    loud = [t for t in calm if labels_of(info, t, "mood") == "energetic"]
    assert not loud, f"a calm request got tracks filed under energetic: {loud}"  # issue 13

    # 2. pictures of birds; the card shows the picture and what was seen; Why names it
    _ask(page, "pictures of birds")
    titles = _card_titles(page)
    with_image = [n for n in range(len(titles)) if _has_picture(page, n)]
    assert len(with_image) >= 3, f"bird cards without pictures: {titles}"
    slot = with_image[0]
    _wait_media(page, slot)
    expect(page.locator(f"#card-text-{slot}")).to_contain_text("seen in the picture")
    page.locator(f"#why-{slot}").click()
    expect(page.locator("#fr-why-evidence")).to_contain_text("What the encoders saw")
    why = page.locator("#fr-why-text").inner_text()
    page.locator("#fr-why").scroll_into_view_if_needed()
    shot("media-02-birds-why.png")
    seen = labels[info["ids"][titles[slot]]].get("image", [])
    assert seen, f"no image labels stored for {titles[slot]!r}"
    assert any(_first_name(lb).lower() in why.lower() for lb in seen), (
        f"the Why text names none of the image labels {seen}: {why!r}"
    )

    # 3. a demo persona, picked by its label; their list; a Like changes it
    page.locator("#fr-user input").click()
    option = page.get_by_role("option", name=re.compile(rf"^Ana — .*{re.escape(DEMO_PERSONA)}$"))
    expect(option).to_be_visible()
    option.click()
    expect(page.locator("#fr-status")).to_contain_text(PERSONA)
    expect(page.locator("#fr-user input")).to_have_value(re.compile(re.escape(DEMO_PERSONA)))
    _ask(page, "recommend something for me", header=f"Top {CARDS} for user {PERSONA}")
    before = _card_titles(page)
    assert len(before) == CARDS, before
    page.locator("#like-0").click()
    expect(page.locator("#fr-status")).to_contain_text("Updated picks")
    _settled(page)
    after = _card_titles(page)
    for n in range(len(after)):
        _wait_media(page, n)
    shot("media-03-persona-like.png")
    assert after != before and before[0] not in after, (before, after)


def labels_of(info: dict[str, Any], title: str, key: str) -> Any:
    """A withheld package label (benchmark_labels.json) of the card titled `title`."""
    return info["benchmark"].get(info["ids"].get(title, ""), {}).get(key)


def _first_name(label: str) -> str:
    return label.split(",", 1)[0].strip()


# ---- the card and Why pieces the journeys rely on (no browser) --------------------------------
HOSTILE_LABEL = "<img src=http://127.0.0.1:9/x.png> [claim](http://127.0.0.1:9/) *big*"


def _rec(llm: float | None = None) -> Any:
    from agent.records import Recommendation
    from retrieval.catalogue import Item

    item = Item("owl", "Owl (photo and sound)", tags=("photo", "sound"))
    return Recommendation(item=item, score=0.5, rank=1, llm_score=llm)


def test_card_names_what_the_encoders_saw_and_how_the_list_was_ranked() -> None:
    from ui import cards

    labels = {
        "image": [("house finch, linnet, Carpodacus mexicanus", 0.27), (HOSTILE_LABEL, None)],
        "audio": [("Hoot", 0.45), ("Owl", 0.43), ("Animal", 0.5), ("Bird", 0.28)],
    }
    text = cards.card_markdown(_rec(), labels=labels, reranked=False)
    assert "_seen in the picture:_ house finch 0.27, \\<img src=" in text  # first name, escaped
    assert "_heard in the sound:_ Hoot 0.45, Owl 0.43, Animal 0.50</small>" in text  # best 3
    assert "\\[claim\\](http\\://" in text and "\\*big\\*" in text  # no link, no autolink
    assert "<img" not in text.replace("\\<img", "")
    assert text.endswith("score 0.500 · retriever order</small>")
    text = cards.card_markdown(_rec(llm=0.9), labels={}, reranked=True)
    assert "LLM 0.90 · re-ranked by the LLM" in text and "seen in" not in text
    assert "LLM" not in cards.card_markdown(_rec()) and "order" not in cards.card_markdown(_rec())


def test_card_labels_come_from_the_store_and_a_broken_store_only_drops_them() -> None:
    from ui import cards

    class Store:
        def get(self, space: str, ids: list[str], *, include_vectors: bool) -> Any:
            assert space == "text" and not include_vectors
            meta = {"image_tags": json.dumps([["tabby, tabby cat", 0.62]]), "audio_tags": "{bad"}
            return ["cat"], None, [meta]

    class Broken:
        def get(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("store closed")

    class Agent:
        store: Any = Store()

    assert cards.encoder_labels(Agent(), ["cat"]) == {
        "cat": {"image": [("tabby, tabby cat", 0.62)]}
    }
    Agent.store = Broken()
    assert cards.encoder_labels(Agent(), ["cat"]) == {}
    assert cards.encoder_labels(Agent(), []) == {}


def test_why_evidence_quotes_whole_labels_escaped() -> None:
    from agent.records import Evidence, Explanation
    from ui import cards

    ev = Evidence(
        item_id="owl",
        title="Owl",
        labels={"image": ["great grey owl, great gray owl", HOSTILE_LABEL], "audio": ["Hoot"]},
        label_scores={"image": {"great grey owl, great gray owl": 0.09}, "audio": {"Hoot": 0.45}},
    )
    text = cards.evidence_markdown(Explanation(text="x", evidence=ev, path="template"))
    line = next(ln for ln in text.split("\n\n") if ln.startswith("**What the encoders saw"))
    assert "picture: “great grey owl, great gray owl” (0.09), “\\<img" in line
    assert "; sound: “Hoot” (0.45)" in line
    assert "<img" not in line.replace("\\<img", "") and "\\[claim\\](http\\://" in line
