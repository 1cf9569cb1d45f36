"""Chat turns: parse the intent with rules, then call the same agent API as everyone else."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from agent.chat.intent_llm import classify, is_ambiguous
from agent.chat.intents import Intent, parse_intent
from agent.prompting import load_prompt
from agent.records import RecommendResult
from retrieval.errors import FusionrecError

logger = logging.getLogger(__name__)

CHAT_K = 5  # items listed in a chat reply; the UI cards show the same list


def format_list(result: RecommendResult, header: str) -> str:
    """A short numbered list; the note says when the retriever order stood."""
    lines = [header]
    if getattr(result, "understood", None):  # the conversation state, in a line (user words)
        lines.append(
            "_Understood: " + re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", result.understood) + "_"
        )
    for rec in result.items:
        tags = ", ".join(rec.item.tags[:3])
        lines.append(f"{rec.rank}. {rec.item.title}" + (f" ({tags})" if tags else ""))
    if result.note:
        lines.append(f"_{result.note}_")
    return "\n".join(lines)


def _resolve(agent: Any, user_id: str, intent: Intent) -> str:
    """Item id the message points at ("#3"), or raise with a message the user can act on."""
    shown = agent.users.get(user_id).last_shown
    if not shown:
        raise FusionrecError("there is no list yet; ask for recommendations first")
    ref = intent.ref or 1
    index = len(shown) - 1 if ref == -1 else ref - 1
    if not 0 <= index < len(shown):
        raise FusionrecError(f"there is no #{ref}; the last list has {len(shown)} items")
    return shown[index]


def _recommend(
    agent: Any, user_id: str, query: str | None, header: str, k: int, *, refresh: bool = False
) -> Iterator[str]:
    """Recommend for `query`, or (`refresh`) again for the user's last request after feedback."""
    yield header + "\n_(finding and ranking candidates…)_"
    if refresh:
        result = agent.refresh_after_feedback(user_id, k=k)
    else:
        result = agent.recommend(user_id, k=k, query=query)
    if not result.items:
        yield "Nothing left to recommend: you have seen or ruled out the whole catalogue."
        return
    yield format_list(result, header)


def _converse(agent: Any, user_id: str, header: str, k: int) -> Iterator[str]:
    """The list for the conversation so far (agent/chat/turn.py): every turn changes it."""
    yield header + "\n_(finding and ranking candidates…)_"
    result = agent.recommend_conversation(user_id, k=k)
    if not result.items:
        yield "Nothing left to recommend: you have seen or ruled out the whole catalogue."
        return
    yield format_list(result, header)


def respond(agent: Any, user_id: str, message: str, *, k: int = CHAT_K) -> Iterator[str]:
    """Stream the whole reply so far for one message. Errors become a sentence, never a crash."""
    intent = parse_intent(message)
    try:
        if intent.kind == "recommend" and agent.llm is not None and is_ambiguous(message):
            intent = classify(agent.llm, message) or intent  # rules first, LLM where they fail
        if intent.kind != "help":  # every turn goes into the conversation state
            agent.update_conversation(user_id, message)
        if intent.kind == "help":
            yield load_prompt("chat_help").render()
        elif intent.kind in ("recommend", "refine"):
            yield from _converse(agent, user_id, "Here is what I found:", k)
        elif intent.kind == "explain":
            item_id = _resolve(agent, user_id, intent)
            yield from agent.explain_stream(user_id, item_id)
        elif intent.kind == "why_not":
            item = agent.find_item(intent.text)
            if item is None:
                yield f"I could not find “{intent.text}” in the catalogue."
                return
            prefix = f"About “{item.title}”: "
            for text in agent.explain_stream(user_id, item.id):
                yield prefix + text
        elif intent.kind == "feedback_item":
            item_id = _resolve(agent, user_id, intent)
            agent.feedback(user_id, item_id, bool(intent.liked))
            verb = "Glad you liked" if intent.liked else "Noted, less like"
            header = f"{verb} “{agent.items[item_id].title}”. Updated picks:"
            yield from _recommend(agent, user_id, None, header, k, refresh=True)
        elif intent.kind == "feedback_text":
            agent.users.add_avoid(user_id, intent.text)
            header = f"Got it: no more {intent.text}. Updated picks:"
            yield from _recommend(agent, user_id, None, header, k, refresh=True)
    except FusionrecError as e:
        yield f"Sorry: {e}."
    except Exception:  # the UI must never see a traceback
        logger.exception("chat turn failed for user %s", user_id)
        yield "Sorry: something went wrong on my side; the details are in the log."
