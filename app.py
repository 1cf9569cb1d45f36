"""The Gradio app: chat, recommendation cards (image, audio, Why, like), user picker, upload.

`python app.py --config fusionrec.toml` serves on 127.0.0.1:7860. Listening beyond this
machine needs `--host ADDR --allow-remote` *and* a login (FUSIONREC_USER/FUSIONREC_PASSWORD).
The page calls only the agent API (the same one the CLI uses); nothing loads at import time.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

if TYPE_CHECKING:
    import gradio as gr

    from agent.agent import RecommendationAgent

logger = logging.getLogger("fusionrec.app")

MAX_CARDS = 10  # card slots on the page; k is capped to this
DEFAULT_K = 5  # list length until the user moves the slider
SLOT_OUTPUTS = 4  # per card: column, image, audio, text


def _card_slot(n: int) -> tuple[list[Any], tuple[Any, Any, Any]]:
    """One hidden card: [column, image, audio, text] and its (Why, Like, Dislike) buttons."""
    import gradio as gr

    with gr.Column(
        visible=False, min_width=180, elem_classes="fr-card", elem_id=f"card-{n}"
    ) as col:
        hidden = dict(show_label=False, interactive=False, visible=False)
        img = gr.Image(height=150, container=False, buttons=["fullscreen"], **hidden)
        aud = gr.Audio(buttons=["download"], **hidden)
        text = gr.Markdown(elem_id=f"card-text-{n}")
        with gr.Row(elem_classes="fr-buttons"):
            btns = tuple(
                gr.Button(label, size="sm", elem_id=f"{name}-{n}")
                for label, name in (("Why?", "why"), ("Like", "like"), ("Dislike", "dislike"))
            )
    return [col, img, aud, text], btns  # type: ignore[return-value]


class _Page:
    """The page's event handlers and the state they share (the agent, what may be served).

    Each handler returns or yields the values of its outputs, in the order `_wire` lists them.
    """

    def __init__(
        self, agent: RecommendationAgent, *, upload_dir: Path, allowed: set[str], limit: int
    ) -> None:
        self.agent, self.upload_dir, self.allowed, self.limit = agent, upload_dir, allowed, limit
        self.n_out = 2 + MAX_CARDS * SLOT_OUTPUTS  # shown ids, header, then the slots
        self.demo: Any = None  # the Blocks, once built (uploads extend its allowed_paths)

    # ---- shared pieces ---------------------------------------------------------------------
    def card_updates(self, user_id: str, result: Any | None) -> list[Any]:
        """Values for [shown, header, *slots] from one RecommendResult (None clears the cards)."""
        import gradio as gr

        from ui import cards, serving

        recs = list(result.items[:MAX_CARDS]) if result is not None else []
        out: list[Any] = [[r.item.id for r in recs], cards.result_header(result, user_id)]
        labels = cards.encoder_labels(self.agent, [r.item.id for r in recs])
        for n in range(MAX_CARDS):
            if n >= len(recs):
                out += [gr.update(visible=False), gr.update(value=None), gr.update(value=None), ""]
                continue
            rec = recs[n]
            image = serving.servable(rec.item.image, self.allowed)
            audio = serving.servable(rec.item.audio, self.allowed)
            out += [
                gr.update(visible=True),
                gr.update(value=image, visible=image is not None),
                gr.update(value=audio, visible=audio is not None),
                cards.card_markdown(
                    rec, labels=labels.get(rec.item.id), reranked=bool(result and result.reranked)
                ),
            ]
        return out

    def skips(self, n: int | None = None) -> list[Any]:
        import gradio as gr

        return [gr.skip() for _ in range(self.n_out if n is None else n)]

    # ---- events ----------------------------------------------------------------------------
    def on_chat(
        self, message: str, history: list[Any], user_id: str, k: float
    ) -> Iterator[tuple[Any, ...]]:
        """Stream the reply (escaped); a new list also becomes the cards."""
        from retrieval.errors import FusionrecError
        from ui import serving, timers
        from ui.cards import safe_markdown as safe

        try:
            uid = serving.clean_user_id(user_id)
        except FusionrecError as e:
            yield (f"Sorry: {safe(e)}.", *self.skips())
            return
        before = self.agent.last_result(uid)
        text = ""
        for item, seconds in timers.with_ticks(self.agent.chat(uid, message, history, k=int(k))):
            text = text if item is None else safe(item)  # titles and LLM words stay text
            yield (text if item is not None else timers.working(text, seconds), *self.skips())
        after = self.agent.last_result(uid)
        if after is not before:  # a new list: show it as cards too
            yield (text, *self.card_updates(uid, after))

    def on_user(self, user_id: str) -> list[Any]:
        """A new user picked: empty chat, a fresh conversation, their last list."""
        import gradio as gr

        from retrieval.errors import FusionrecError
        from ui import serving

        try:
            uid = serving.clean_user_id(user_id)
        except FusionrecError as e:
            return [[], [], gr.update(visible=False), f"_{e}_", *self.card_updates("?", None)]
        known = (
            ""
            if self.agent.users.known(uid)
            else " (new user: starts cold, remembered from now on)"
        )
        self.agent.reset_conversation(uid)  # the chat starts empty, and so does what it understood
        return [
            [],
            [],
            gr.update(visible=False),
            f"Chatting as **{uid}**{known}.",
            *self.card_updates(uid, self.agent.last_result(uid)),
        ]

    def on_feedback(
        self,
        slot: int,
        liked: bool,
        user_id: str,
        k: float,
        shown: list[str],
        history: list[Any],
    ) -> Iterator[list[Any]]:
        """Record the like/dislike, then show (cards) and say (chat) the updated list."""
        import gradio as gr

        from agent.chat.respond import format_list
        from retrieval.errors import FusionrecError
        from ui import serving, timers
        from ui.cards import safe_markdown as safe

        n_out = self.n_out
        try:
            uid = serving.clean_user_id(user_id)
            item = self.agent.items[shown[slot]]
        except (FusionrecError, IndexError, KeyError) as e:
            yield [f"_Cannot record that: {safe(e)}_", *self.skips(n_out + 3)]
            return
        self.agent.feedback(uid, item.id, liked)
        verb = "Liked" if liked else "Noted: less like"
        title = safe(item.title)
        yield [
            f"{verb} “{title}”. Updating your picks…",
            gr.update(visible=False),
            *self.skips(n_out + 2),
        ]
        try:
            result = None
            for got, seconds in timers.with_ticks(
                self.agent.refresh_after_feedback(uid, k=int(k)) for _ in (0,)
            ):
                if got is None:
                    yield [
                        timers.working(f"{verb} “{title}”. Updating your picks…", seconds),
                        *self.skips(n_out + 3),
                    ]
                result = got or result
        except FusionrecError as e:
            yield [f"{verb} “{title}”, but no new list: {safe(e)}", *self.skips(n_out + 3)]
            return
        said = [
            *history,
            {
                "role": "assistant",
                "content": safe(format_list(result, f"{verb} “{item.title}”. Updated picks:")),
            },
        ]
        yield [
            f"{verb} “{title}”. Updated picks below.",
            gr.skip(),
            said,
            said,
            *self.card_updates(uid, result),
        ]

    def on_why(self, slot: int, user_id: str, shown: list[str]) -> Iterator[list[Any]]:
        """Stream the explanation into the Why panel, then the evidence table."""
        import gradio as gr

        from retrieval.errors import FusionrecError
        from ui import cards, serving, timers
        from ui.cards import safe_markdown as safe

        try:
            uid = serving.clean_user_id(user_id)
            item = self.agent.items[shown[slot]]
        except (FusionrecError, IndexError, KeyError) as e:
            yield [gr.update(visible=True), f"_Cannot explain that: {safe(e)}_", ""]
            return
        box = gr.update(visible=True, open=True, label=f"Why “{item.title}”?")
        yield [box, timers.working("Working out why…", 0), ""]
        text = "Working out why…"
        try:
            stream = cards.explain_with_evidence(self.agent, uid, item.id)
            for got, seconds in timers.with_ticks(stream):
                if got is None:
                    yield [gr.skip(), timers.working(text, seconds), gr.skip()]
                    continue
                text, exp = got
                text = safe(text)
                yield [
                    gr.skip(),
                    text,
                    cards.evidence_markdown(exp) if exp is not None else gr.skip(),
                ]
        except FusionrecError as e:
            yield [gr.skip(), f"Sorry: {safe(e)}.", ""]

    def on_upload(self, file: str | None) -> list[Any]:
        """Ingest an uploaded catalogue; serve its new media (and only those)."""
        import gradio as gr

        from ui import uploads

        text, rows, new = uploads.ingest_upload(
            self.agent, file, self.upload_dir, max_bytes=self.limit, served=self.allowed
        )
        if new and getattr(self.demo, "allowed_paths", None) is not None:
            self.demo.allowed_paths.extend(new)
        return [text, gr.update(value=rows, visible=bool(rows))]


def _layout(page: _Page, users: list[str], labels: dict[str, str]) -> dict[str, Any]:
    """Create the page's components (inside an open `gr.Blocks`); returns them by name."""
    import gradio as gr

    from ui import uploads

    c: dict[str, Any] = {}
    gr.Markdown(
        "## fusionrec · multimodal recommendations, private and offline\n"
        "Ask in the chat (“something calm to listen to”, “why #2?”, “like #1 but darker”, "
        "“not into horror”), or use the buttons on the cards."
    )
    with gr.Row(equal_height=True):
        c["user"] = gr.Dropdown(
            choices=[(labels.get(u, u), u) for u in users],
            value=users[0] if users else None,
            allow_custom_value=True,
            filterable=True,
            label="User",
            info="pick a known user or type a new id (new users start cold)",
            scale=1,
            elem_id="fr-user",
        )
        c["status"] = gr.Markdown(elem_id="fr-status", scale=2)
    c["k"] = gr.Slider(1, MAX_CARDS, value=DEFAULT_K, step=1, label="How many (k)", render=False)
    c["shown"] = gr.State([])
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            c["header"] = gr.Markdown(elem_id="fr-header")
            with gr.Accordion("Why?", visible=False, elem_id="fr-why") as c["why_box"]:
                c["why_text"] = gr.Markdown(elem_id="fr-why-text")
                c["why_evidence"] = gr.Markdown(elem_id="fr-why-evidence")
            c["slots"], c["buttons"] = [], []
            for row in range(0, MAX_CARDS, 3):
                with gr.Row(equal_height=False):
                    for n in range(row, min(row + 3, MAX_CARDS)):
                        components, btns = _card_slot(n)
                        c["slots"] += components
                        c["buttons"].append(btns)
        with gr.Column(scale=1, min_width=320):
            c["chat"] = gr.ChatInterface(
                page.on_chat,
                additional_inputs=[c["user"], c["k"]],
                additional_outputs=[c["shown"], c["header"], *c["slots"]],
                additional_inputs_accordion=gr.Accordion("Options", open=False, render=False),
                chatbot=gr.Chatbot(
                    height=460,
                    elem_id="fr-chat",
                    label="Chat",
                    show_label=False,
                    group_consecutive_messages=False,
                    placeholder="Ask for recommendations, or “why #1?”",
                    latex_delimiters=[],  # a "$" in a title is text, not KaTeX
                ),
                textbox=gr.Textbox(
                    placeholder="e.g. recommend something calm to listen to",
                    elem_id="fr-input",
                    submit_btn=True,
                    show_label=False,
                ),
                api_name="chat",
                fill_height=False,
            )
    with gr.Accordion("Add to the catalogue", open=False):
        gr.Markdown(
            f"Upload a JSONL, CSV or Parquet catalogue (`id, title, description, tags, image, "
            f"audio`), or a zip holding one catalogue and its media files; at most "
            f"{page.limit / 2**20:.0f} MB. Bad rows are listed; the rest goes in."
        )
        with gr.Row():
            c["upload"] = gr.File(
                file_types=list(uploads.UPLOAD_SUFFIXES),
                type="filepath",
                label="Catalogue",
                elem_id="fr-upload",
            )
            c["ingest"] = gr.Button("Ingest", variant="primary", scale=0, elem_id="fr-ingest")
        c["report"] = gr.Markdown(elem_id="fr-report")
        c["errors"] = gr.Dataframe(
            headers=["row", "id", "field", "error"],
            visible=False,
            wrap=True,
            interactive=False,
            label="Problem rows",
            elem_id="fr-errors",
        )
    return c


def _wire(demo: gr.Blocks, page: _Page, c: dict[str, Any]) -> None:
    """Connect every component's events to the page's handlers."""
    chat = c["chat"]
    card_outputs = [c["shown"], c["header"], *c["slots"]]
    user_change = dict(
        fn=page.on_user,
        inputs=[c["user"]],
        outputs=[chat.chatbot, chat.chatbot_state, c["why_box"], c["status"], *card_outputs],
        api_visibility="private",
    )
    c["user"].change(**user_change)
    demo.load(**user_change)
    for n, (why_btn, like_btn, dislike_btn) in enumerate(c["buttons"]):
        why_btn.click(
            functools.partial(page.on_why, n),
            [c["user"], c["shown"]],
            [c["why_box"], c["why_text"], c["why_evidence"]],
            api_visibility="private",
        )
        for btn, liked in ((like_btn, True), (dislike_btn, False)):
            btn.click(
                functools.partial(page.on_feedback, n, liked),
                [c["user"], c["k"], c["shown"], chat.chatbot],
                [c["status"], c["why_box"], chat.chatbot, chat.chatbot_state, *card_outputs],
                api_visibility="private",
                show_progress="minimal",
            )
    import gradio as gr

    def on_upload(
        file: str | None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (gradio API)
    ) -> list[Any]:
        return page.on_upload(file)  # gradio shows ingest's progress bar through `progress`

    c["ingest"].click(
        on_upload, [c["upload"]], [c["report"], c["errors"]], api_visibility="private"
    )


def build_demo(
    agent: RecommendationAgent,
    *,
    upload_dir: str | Path,
    media: set[str] | None = None,
    max_upload_bytes: int | None = None,
) -> gr.Blocks:
    """The whole page, wired to `agent`: handlers (`_Page`), components (`_layout`), events
    (`_wire`).

    Args:
        agent: the recommendation agent every event calls.
        upload_dir: the only folder catalogue uploads are written to.
        media: local media files the cards may show (also gradio's `allowed_paths`);
            None = `ui.serving.allowed_media` (files inside their catalogue's folder or
            the upload folder; never a path a row names elsewhere).
        max_upload_bytes: size limit for one uploaded file (default 50 MB).
    """
    import gradio as gr

    from ui import serving, uploads

    upload_dir = Path(upload_dir).expanduser()
    allowed = media if media is not None else serving.allowed_media(agent, upload_dir=upload_dir)
    page = _Page(
        agent,
        upload_dir=upload_dir,
        allowed=allowed,
        limit=max_upload_bytes or uploads.MAX_UPLOAD_BYTES,
    )
    labels = agent.user_labels()  # demo personas, labelled as such in the picker, come first
    known = agent.users.user_ids()
    users = [*(u for u in labels if u in known), *(u for u in known if u not in labels)]
    with gr.Blocks(title="fusionrec", analytics_enabled=False, fill_width=True) as demo:
        components = _layout(page, users, labels)
        _wire(demo, page, components)
    page.demo = demo
    return demo


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="app.py", description="Serve the fusionrec Gradio app.")
    p.add_argument(
        "--config", help="TOML config (see retrieval/config.py); default: built-in defaults"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; others need --allow-remote and a login)",
    )
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (also needs FUSIONREC_USER/FUSIONREC_PASSWORD)",
    )
    p.add_argument(
        "--upload-dir", help="where uploaded catalogues go (default: <store>/../uploads)"
    )
    p.add_argument(
        "--media-dir",
        action="append",
        default=[],
        help="a folder whose image/audio files the cards may show, whatever catalogue names "
        "them (repeatable; each item's own catalogue folder and the upload folder always are)",
    )
    p.add_argument(
        "--concurrency", type=int, default=4, help="requests one event handles at a time"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Check the bind address, build the agent, serve until interrupted. Returns the exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from retrieval.errors import FusionrecError
    from ui import cards, serving, uploads

    login = (os.environ.get("FUSIONREC_USER", ""), os.environ.get("FUSIONREC_PASSWORD", ""))
    try:
        if any(login) and not all(login):
            raise FusionrecError("set both FUSIONREC_USER and FUSIONREC_PASSWORD, or neither")
        serving.check_bind(args.host, allow_remote=args.allow_remote, has_auth=all(login))
        from agent.agent import RecommendationAgent

        agent = RecommendationAgent.from_config(args.config)
        upload_dir = Path(
            args.upload_dir or agent.config.store_path().parent / "uploads"
        ).expanduser()
        media = serving.allowed_media(agent, upload_dir=upload_dir, media_dirs=args.media_dir)
        demo = build_demo(agent, upload_dir=upload_dir, media=media)
    except FusionrecError as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    import gradio as gr

    demo.queue(default_concurrency_limit=max(1, args.concurrency))
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        auth=login if all(login) else None,
        max_file_size=uploads.MAX_UPLOAD_BYTES,
        allowed_paths=sorted(media),
        theme=gr.themes.Soft(),
        css=cards.CSS,
        ssr_mode=False,
        mcp_server=False,
        show_error=False,
        quiet=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
