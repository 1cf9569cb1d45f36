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


def build_demo(
    agent: RecommendationAgent,
    *,
    upload_dir: str | Path,
    media: set[str] | None = None,
    max_upload_bytes: int | None = None,
) -> gr.Blocks:
    """The whole page, wired to `agent`.

    Args:
        agent: the recommendation agent every event calls.
        upload_dir: the only folder catalogue uploads are written to.
        media: local media files the cards may show (also gradio's `allowed_paths`);
            None = `ui.serving.allowed_media` (files inside their catalogue's folder or
            the upload folder; never a path a row names elsewhere).
        max_upload_bytes: size limit for one uploaded file (default 50 MB).
    """
    import gradio as gr

    from agent.chat.respond import format_list
    from retrieval.errors import FusionrecError
    from ui import cards, serving, timers, uploads

    upload_dir = Path(upload_dir).expanduser()
    allowed = media if media is not None else serving.allowed_media(agent, upload_dir=upload_dir)
    limit = max_upload_bytes or uploads.MAX_UPLOAD_BYTES
    users = agent.users.user_ids()
    from retrieval.datasets.media.personas import persona_labels

    cfg = getattr(agent, "config", None)  # demo personas first, labelled as such in the picker
    personas = persona_labels(cfg.data.items if cfg is not None else None)
    users = [*(u for u in personas if u in users), *(u for u in users if u not in personas)]
    n_out = 2 + MAX_CARDS * SLOT_OUTPUTS  # shown ids, header, then the slots

    def card_updates(user_id: str, result: Any | None) -> list[Any]:
        """Values for [shown, header, *slots] from one RecommendResult (None clears the cards)."""
        recs = list(result.items[:MAX_CARDS]) if result is not None else []
        out: list[Any] = [[r.item.id for r in recs], cards.result_header(result, user_id)]
        for n in range(MAX_CARDS):
            if n >= len(recs):
                out += [gr.update(visible=False), gr.update(value=None), gr.update(value=None), ""]
                continue
            rec = recs[n]
            image = serving.servable(rec.item.image, allowed)
            audio = serving.servable(rec.item.audio, allowed)
            out += [
                gr.update(visible=True),
                gr.update(value=image, visible=image is not None),
                gr.update(value=audio, visible=audio is not None),
                cards.card_markdown(rec),
            ]
        return out

    def skips(n: int = n_out) -> list[Any]:
        return [gr.skip() for _ in range(n)]

    def on_chat(
        message: str, history: list[Any], user_id: str, k: float
    ) -> Iterator[tuple[Any, ...]]:
        try:
            uid = serving.clean_user_id(user_id)
        except FusionrecError as e:
            yield (f"Sorry: {e}.", *skips())
            return
        before = agent.last_result(uid)
        text = ""
        for item, seconds in timers.with_ticks(agent.chat(uid, message, history, k=int(k))):
            text = text if item is None else item
            yield (text if item is not None else timers.working(text, seconds), *skips())
        after = agent.last_result(uid)
        if after is not before:  # a new list: show it as cards too
            yield (text, *card_updates(uid, after))

    def on_user(user_id: str) -> list[Any]:
        try:
            uid = serving.clean_user_id(user_id)
        except FusionrecError as e:
            return [[], [], gr.update(visible=False), f"_{e}_", *card_updates("?", None)]
        known = "" if agent.users.known(uid) else " (new user: starts cold, remembered from now on)"
        return [
            [],
            [],
            gr.update(visible=False),
            f"Chatting as **{uid}**{known}.",
            *card_updates(uid, agent.last_result(uid)),
        ]

    def on_feedback(
        slot: int, liked: bool, user_id: str, k: float, shown: list[str], history: list[Any]
    ) -> Iterator[list[Any]]:
        """Record the like/dislike, then show (cards) and say (chat) the updated list."""
        try:
            uid = serving.clean_user_id(user_id)
            item = agent.items[shown[slot]]
        except (FusionrecError, IndexError, KeyError) as e:
            yield [f"_Cannot record that: {e}_", *skips(n_out + 3)]
            return
        agent.feedback(uid, item.id, liked)
        verb = "Liked" if liked else "Noted: less like"
        yield [
            f"{verb} “{item.title}”. Updating your picks…",
            gr.update(visible=False),
            *skips(n_out + 2),
        ]
        try:
            result = None
            for got, seconds in timers.with_ticks(
                agent.refresh_after_feedback(uid, k=int(k)) for _ in (0,)
            ):
                if got is None:
                    yield [
                        timers.working(f"{verb} “{item.title}”. Updating your picks…", seconds),
                        *skips(n_out + 3),
                    ]
                result = got or result
        except FusionrecError as e:
            yield [f"{verb} “{item.title}”, but no new list: {e}", *skips(n_out + 3)]
            return
        said = [
            *history,
            {
                "role": "assistant",
                "content": format_list(result, f"{verb} “{item.title}”. Updated picks:"),
            },
        ]
        yield [
            f"{verb} “{item.title}”. Updated picks below.",
            gr.skip(),
            said,
            said,
            *card_updates(uid, result),
        ]

    def on_why(slot: int, user_id: str, shown: list[str]) -> Iterator[list[Any]]:
        try:
            uid = serving.clean_user_id(user_id)
            item = agent.items[shown[slot]]
        except (FusionrecError, IndexError, KeyError) as e:
            yield [gr.update(visible=True), f"_Cannot explain that: {e}_", ""]
            return
        box = gr.update(visible=True, open=True, label=f"Why “{item.title}”?")
        yield [box, timers.working("Working out why…", 0), ""]
        text = "Working out why…"
        try:
            for got, seconds in timers.with_ticks(cards.explain_with_evidence(agent, uid, item.id)):
                if got is None:
                    yield [gr.skip(), timers.working(text, seconds), gr.skip()]
                    continue
                text, exp = got
                yield [
                    gr.skip(),
                    text,
                    cards.evidence_markdown(exp) if exp is not None else gr.skip(),
                ]
        except FusionrecError as e:
            yield [gr.skip(), f"Sorry: {e}.", ""]

    def on_upload(
        file: str | None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (gradio API)
    ) -> list[Any]:
        text, rows, new = uploads.ingest_upload(
            agent, file, upload_dir, max_bytes=limit, served=allowed
        )
        if new and getattr(demo, "allowed_paths", None) is not None:  # serve new media, only it
            demo.allowed_paths.extend(new)
        return [text, gr.update(value=rows, visible=bool(rows))]

    with gr.Blocks(title="fusionrec", analytics_enabled=False, fill_width=True) as demo:
        gr.Markdown(
            "## fusionrec · multimodal recommendations, private and offline\n"
            "Ask in the chat (“something calm to listen to”, “why #2?”, “like #1 but darker”, "
            "“not into horror”), or use the buttons on the cards."
        )
        with gr.Row(equal_height=True):
            user = gr.Dropdown(
                choices=[(personas.get(u, u), u) for u in users],
                value=users[0] if users else None,
                allow_custom_value=True,
                filterable=True,
                label="User",
                info="pick a known user or type a new id (new users start cold)",
                scale=1,
                elem_id="fr-user",
            )
            status = gr.Markdown(elem_id="fr-status", scale=2)
        k = gr.Slider(1, MAX_CARDS, value=DEFAULT_K, step=1, label="How many (k)", render=False)
        shown = gr.State([])
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                header = gr.Markdown(elem_id="fr-header")
                with gr.Accordion("Why?", visible=False, elem_id="fr-why") as why_box:
                    why_text = gr.Markdown(elem_id="fr-why-text")
                    why_evidence = gr.Markdown(elem_id="fr-why-evidence")
                slots: list[Any] = []
                buttons: list[tuple[Any, Any, Any]] = []
                for row in range(0, MAX_CARDS, 3):
                    with gr.Row(equal_height=False):
                        for n in range(row, min(row + 3, MAX_CARDS)):
                            components, btns = _card_slot(n)
                            slots += components
                            buttons.append(btns)
            with gr.Column(scale=1, min_width=320):
                chat = gr.ChatInterface(
                    on_chat,
                    additional_inputs=[user, k],
                    additional_outputs=[shown, header, *slots],
                    additional_inputs_accordion=gr.Accordion("Options", open=False, render=False),
                    chatbot=gr.Chatbot(
                        height=460,
                        elem_id="fr-chat",
                        label="Chat",
                        show_label=False,
                        group_consecutive_messages=False,
                        placeholder="Ask for recommendations, or “why #1?”",
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
                f"{limit / 2**20:.0f} MB. Bad rows are listed; the rest goes in."
            )
            with gr.Row():
                upload = gr.File(
                    file_types=list(uploads.UPLOAD_SUFFIXES),
                    type="filepath",
                    label="Catalogue",
                    elem_id="fr-upload",
                )
                ingest_btn = gr.Button("Ingest", variant="primary", scale=0, elem_id="fr-ingest")
            report = gr.Markdown(elem_id="fr-report")
            errors = gr.Dataframe(
                headers=["row", "id", "field", "error"],
                visible=False,
                wrap=True,
                interactive=False,
                label="Problem rows",
                elem_id="fr-errors",
            )

        card_outputs = [shown, header, *slots]
        user_change = dict(
            fn=on_user,
            inputs=[user],
            outputs=[chat.chatbot, chat.chatbot_state, why_box, status, *card_outputs],
            api_visibility="private",
        )
        user.change(**user_change)
        demo.load(**user_change)
        for n, (why_btn, like_btn, dislike_btn) in enumerate(buttons):
            why_btn.click(
                functools.partial(on_why, n),
                [user, shown],
                [why_box, why_text, why_evidence],
                api_visibility="private",
            )
            for btn, liked in ((like_btn, True), (dislike_btn, False)):
                btn.click(
                    functools.partial(on_feedback, n, liked),
                    [user, k, shown, chat.chatbot],
                    [status, why_box, chat.chatbot, chat.chatbot_state, *card_outputs],
                    api_visibility="private",
                    show_progress="minimal",
                )
        ingest_btn.click(on_upload, [upload], [report, errors], api_visibility="private")
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
