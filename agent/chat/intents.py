"""Rule-based chat intent parsing: fast, predictable, and testable without an LLM.

The LLM is consulted only when no rule matches (see `RecommendationAgent.chat`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "last": -1,
}
_REF = (
    r"(?:#\s*(\d+)|number\s+(\d+)|no\.?\s*(\d+)|(?:the\s+)?("
    + "|".join(_ORDINALS)
    + r")(?:\s+one)?)"
)

_EXPLAIN = re.compile(r"\b(why|how come|explain|reason)\b.*?" + _REF, re.I)
_WHY_NOT = re.compile(r"\bwhy\s+(?:not|didn'?t you (?:recommend|suggest)|no)\s+(.+?)\??$", re.I)
_LIKE_REF = re.compile(
    r"\b(loved|love|liked|like|enjoyed|great|more like)\b[^#\d]*?" + _REF + r"\s*$", re.I
)
_DISLIKE_REF = re.compile(
    r"\b(hated|hate|disliked|dislike|not (?:for me|into)|boring|no more)\b[^#\d]*?" + _REF, re.I
)
_REFINE = re.compile(r"\b(more like|similar to|like)\s+" + _REF + r"\s*,?\s*(?:but\s+)?(.*)$", re.I)
_NOT_INTO = re.compile(
    r"\b(?:not (?:into|a fan of|keen on)|i (?:hate|dislike|don'?t like)|no more|less)"
    r"\s+(.+?)[.!]?$",
    re.I,
)
_GREETING = re.compile(r"^\s*(hi|hello|hey|help|\?)\s*[!.]*\s*$", re.I)


@dataclass(frozen=True)
class Intent:
    """What a chat message asks for.

    kind: "recommend" | "refine" | "explain" | "why_not" | "feedback_item" | "feedback_text"
        | "help".
    ref: 1-based index into the last shown list (-1 = last), when the message points at one.
    text: free text that goes with it (the request, the refinement, the disliked topic).
    liked: for feedback, True for like and False for dislike.
    """

    kind: str
    ref: int | None = None
    text: str = ""
    liked: bool | None = None


def _ref(groups: tuple[str | None, ...]) -> int | None:
    for g in groups:
        if g:
            return _ORDINALS[g.lower()] if g.lower() in _ORDINALS else int(g)
    return None


def parse_intent(message: str) -> Intent:
    """Classify one chat message. Anything unrecognised is a recommendation request."""
    msg = " ".join(message.strip().split())
    if not msg or _GREETING.match(msg):
        return Intent("help")
    if m := _EXPLAIN.search(msg):
        return Intent("explain", ref=_ref(m.groups()[1:5]))
    if m := _WHY_NOT.search(msg):
        return Intent("why_not", text=m.group(1).strip(" ?.!\"'"))
    if m := _REFINE.search(msg):
        rest = m.group(6).strip(" .!?")
        if rest or m.group(1).lower() != "like":  # "I like #2" alone is feedback, below
            return Intent("refine", ref=_ref(m.groups()[1:5]), text=rest)
    if m := _DISLIKE_REF.search(msg):
        return Intent("feedback_item", ref=_ref(m.groups()[1:5]), liked=False)
    if m := _LIKE_REF.search(msg):
        return Intent("feedback_item", ref=_ref(m.groups()[1:5]), liked=True)
    if m := _NOT_INTO.search(msg):
        return Intent("feedback_text", text=m.group(1).strip(" .!?"), liked=False)
    return Intent("recommend", text=msg)
