"""The "Understood:" line above the cards: what the conversation state read, escaped."""

from __future__ import annotations

from agent.chat.state import describe_state, track_dialogue
from agent.records import Recommendation, RecommendResult
from retrieval.catalogue import Item
from tests.agent.chat.catalogue_data import make_linker
from ui import cards


def test_header_shows_what_was_understood_escaped() -> None:
    state = track_dialogue(
        [
            ("user", "I loved Heat and hated Titanic"),
            ("user", "something funny, nothing with *Bob_X*"),
        ],
        linker=make_linker(),
    )
    line = describe_state(state.to_dict())
    assert "liked: Heat" in line and "disliked: Titanic" in line and "mood: funny" in line
    result = RecommendResult(user_id="7", items=[], reranked=False, understood=line)
    assert "Understood" not in cards.result_header(result, "7")  # no list yet: nothing else
    result.items = [Recommendation(item=Item("x", "X"), score=1.0, rank=1)]
    header = cards.result_header(result, "7")
    assert "**Understood:** liked: Heat" in header
    assert "\\*Bob\\_X\\*" in header and "*Bob_X*" not in header  # user words are escaped


def test_describe_state_of_an_empty_state_is_empty() -> None:
    assert describe_state(track_dialogue([], linker=make_linker()).to_dict()) == ""
