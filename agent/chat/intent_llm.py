"""The LLM's turn in chat intent parsing: only for ambiguous messages no rule matched."""

from __future__ import annotations

import logging
import re
from typing import Any

from agent.chat.intents import Intent
from agent.prompting import load_prompt

logger = logging.getLogger(__name__)

# Words that make an unmatched message ambiguous (it may be a complaint, not a request).
_AMBIGUOUS = re.compile(
    r"\b(not|no|don'?t|do not|never|stop|enough|without|hate|less|tired of|sick of|avoid)\b", re.I
)
_ANSWER = re.compile(r"^\W*([AB])\b\s*[:\-–]?\s*(.*)$", re.S)
MAX_MESSAGE_CHARS = 500  # longer messages are not worth an LLM call; they stay requests


def is_ambiguous(message: str) -> bool:
    """True when an unmatched message carries negation/complaint words."""
    return len(message) <= MAX_MESSAGE_CHARS and bool(_AMBIGUOUS.search(message))


def classify(llm: Any, message: str) -> Intent | None:
    """Ask the LLM whether `message` is a request or a topic to avoid; None when unsure.

    A "B" answer is accepted only when every word of its topic occurs in the message, so an
    injected or hallucinated topic can never become a filter. Errors mean "unsure".
    """
    safe = message.replace("<", "‹").replace(">", "›")
    try:
        answer = llm.generate(load_prompt("chat_intent").render(message=safe), max_new_tokens=16)
    except Exception as e:  # noqa: BLE001 - the rule result stands if the LLM fails
        logger.warning(
            "chat intent LLM failed (%s: %s); treating the message as a request",
            type(e).__name__,
            e,
        )
        return None
    m = _ANSWER.match(answer.strip().splitlines()[0] if answer.strip() else "")
    if not m:
        return None
    if m.group(1) == "A":
        return Intent("recommend", text=message)
    topic = m.group(2).strip(" .!\"'").lower()
    words = re.findall(r"[\w'-]+", topic)
    said = set(re.findall(r"[\w'-]+", message.lower()))
    if not words or len(words) > 4 or not all(w in said for w in words):
        return None
    return Intent("feedback_text", text=" ".join(words), liked=False)
