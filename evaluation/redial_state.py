"""What the ReDial evaluation's system understands from a dialogue: the chat's own state.

`chat_state` runs `agent.chat.state.track_dialogue` (the code the app's chat uses) over the
turns before each recommendation and turns the state into a `ConversationQuery`. The
`ExactTitleMatcher` stand-in (all mentions liked, genres from a word list) is kept for
comparison and for environments without the agent package.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retrieval.catalogue import Item
from retrieval.conversational import ConversationQuery
from retrieval.datasets.redial import RedialTurn

logger = logging.getLogger(__name__)

MAX_REQUEST_CHARS = 1_000  # stand-in: user words kept for the `query` source (the most recent)


@dataclass(frozen=True)
class TurnState:
    """What the system understood from the dialogue before one turn."""

    query: ConversationQuery
    mentioned_ids: tuple[str, ...]  # every catalogue film the state linked
    state: Any = None  # the chat's ConversationState (the LLM re-ranker reads it), if any


StateFn = Callable[[RedialTurn], TurnState]


_YEAR_PAREN = re.compile(r"\((1[89]\d\d|20\d\d)\)")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_STANDIN_GENRES = {
    "comedy": "comedy", "comedies": "comedy", "funny": "comedy", "horror": "horror",
    "scary": "horror", "action": "action", "romance": "romance", "romantic": "romance",
    "thriller": "thriller", "thrillers": "thriller", "drama": "drama", "dramas": "drama",
    "animated": "animation", "animation": "animation", "cartoon": "animation",
    "documentary": "documentary", "documentaries": "documentary", "musical": "musical",
    "western": "western", "westerns": "western", "mystery": "mystery", "fantasy": "fantasy",
    "adventure": "adventure", "crime": "crime", "family": "family", "kids": "family",
    "sci": "sci-fi", "scifi": "sci-fi", "war": "war",
}  # fmt: skip


def _norm(text: str) -> str:
    return " ".join(w.lower() for w in _WORD.findall(text))


class ExactTitleMatcher:
    """TEMPORARY stand-in linker until `agent.chat.state` exists: "Title (Year)" spans only.

    ReDial writes every film as "Title (Year)"; the longest run of words before a year in
    parentheses that equals a catalogue title (case and punctuation ignored, a leading
    "The"/"A" optional) is linked, preferring a film of that year.
    """

    def __init__(self, items: Sequence[Item]) -> None:
        self.titles: dict[str, list[tuple[str, int | None]]] = {}
        for it in items:
            key = _norm(it.title)
            year = (it.metadata or {}).get("year")
            for k in {key, re.sub(r"^(the|a|an) ", "", key)}:
                if k:
                    self.titles.setdefault(k, []).append((it.id, year))

    def link(self, text: str) -> list[str]:
        found: list[str] = []
        start = 0
        for m in _YEAR_PAREN.finditer(text):
            words = _WORD.findall(text[start : m.start()])[-12:]
            year = int(m.group(1))
            for n in range(len(words), 0, -1):
                hits = self.titles.get(" ".join(w.lower() for w in words[-n:]))
                if hits:
                    same = [i for i, y in hits if y == year] or [hits[0][0]]
                    found.append(same[0])
                    break
            start = m.end()
        return found


def user_request(turn: RedialTurn, *, max_chars: int = MAX_REQUEST_CHARS) -> str:
    """The seeker's own words, most recent last, cut to the last `max_chars` characters."""
    text = " ".join(t for s, t in turn.utterances if s == "user")
    return text[-max_chars:]


def standin_state(items: Sequence[Item]) -> StateFn:
    """Mentions from `ExactTitleMatcher` (all counted as liked), genres from a word list."""
    matcher = ExactTitleMatcher(items)

    def state(turn: RedialTurn) -> TurnState:
        ids = tuple(dict.fromkeys(i for _, t in turn.utterances for i in matcher.link(t)))
        request = user_request(turn)
        genres = tuple(
            dict.fromkeys(
                _STANDIN_GENRES[w] for w in _norm(request).split() if w in _STANDIN_GENRES
            )
        )
        query = ConversationQuery(liked_ids=ids, request_text=request, genres=genres)
        return TurnState(query, ids)

    return state


def query_from_state(state: Any, *, seeds: str = "mentioned") -> ConversationQuery:
    """A `ConversationState` (agent.chat.state) as the retriever's query.

    Args:
        state: the conversation state.
        seeds: which films seed CF and content: "liked" (the user's liked films only) or
            "mentioned" (every linked film, either speaker, except the disliked ones; in
            ReDial most mentions are films the seeker likes or the recommender offered).
    """
    r = state.request
    disliked = tuple(state.disliked_ids())
    if seeds == "liked":
        liked = tuple(dict.fromkeys([*r.like_ids, *state.liked_ids()]))
    elif seeds == "mentioned":
        liked = tuple(
            i for i in dict.fromkeys([*r.like_ids, *state.mentioned_ids()]) if i not in disliked
        )
    else:
        raise ValueError(f"seeds must be 'liked' or 'mentioned', got {seeds!r}")
    return ConversationQuery(
        liked_ids=liked,
        disliked_ids=disliked,
        request_text=r.text,
        genres=tuple(r.genres),
        moods=tuple(r.moods),
        era=r.era,
        people=tuple(r.people),
        exclude_ids=tuple(r.exclude_ids),
    )


def chat_state(
    items: Sequence[Item],
    *,
    popularity: Mapping[str, float] | None = None,
    seeds: str = "mentioned",
) -> tuple[StateFn, str]:
    """The chat's own conversation state when `agent.chat.state` exists, else the stand-in."""
    try:
        from agent.chat.linking import TitleLinker
        from agent.chat.state import track_dialogue
    except ImportError:
        logger.warning("agent.chat.state not available: using the exact-title stand-in linker")
        return standin_state(items), "stand-in exact-title matcher (evaluation/redial.py)"
    linker = TitleLinker(
        [(it.id, it.title, (it.metadata or {}).get("year")) for it in items], priors=popularity
    )

    def state(turn: RedialTurn) -> TurnState:
        st = track_dialogue(list(turn.utterances), linker=linker)
        return TurnState(query_from_state(st, seeds=seeds), tuple(st.mentioned_ids()), st)

    return state, f"agent.chat.state.track_dialogue (the chat's conversation state), seeds={seeds}"
