"""Rules for one message: sentiment per mention, kinds, moods, era, people, exclusions."""

from __future__ import annotations

import pytest

from agent.chat.linking import TitleLinker
from agent.chat.request import parse_turn, request_words
from tests.agent.chat.catalogue_data import make_linker


@pytest.fixture(scope="module")
def linker() -> TitleLinker:
    return make_linker()


def feelings(linker: TitleLinker, text: str) -> dict[str, str | None]:
    links = linker.find(text)
    parse = parse_turn(text, links)
    return {ln.item_id or ln.text: s for ln, s in zip(links, parse.sentiments, strict=True)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I loved Heat and hated Titanic", {"heat": "liked", "titanic": "disliked"}),
        ("I loved Heat but not Titanic", {"heat": "liked", "titanic": "disliked"}),
        ("Heat was great but Titanic was boring", {"heat": "liked", "titanic": "disliked"}),
        ("I didn't like Heat", {"heat": "disliked"}),
        ("Titanic wasn't bad", {"titanic": "liked"}),
        ("I haven't seen Heat", {"heat": "not_seen"}),
        ("I have never watched Titanic", {"titanic": "not_seen"}),
        ("Have you seen Heat?", {"heat": "asked"}),
        ("What about Ronin?", {"ronin": "asked"}),
        (
            "I loved Heat, Ronin and Collateral",
            {"heat": "liked", "ronin": "liked", "collateral": "liked"},
        ),
        ("Ronin is one of my favorites", {"ronin": "liked"}),
        ("I watched Ronin yesterday", {"ronin": None}),  # no cue: the LLM's turn
        ("something like Heat", {"heat": "liked"}),
        ("Have you seen Ronin", {"ronin": "asked"}),  # a question without "?"
        ("We saw Ronin (1998). It was awful", {"ronin": "disliked"}),  # "it" = that title
        ("I'm looking forward to Collateral", {"collateral": "not_seen"}),
        ("I want to watch something like Heat", {"heat": "liked"}),
    ],
)
def test_sentiment_per_mention(linker: TitleLinker, text: str, expected: dict) -> None:
    assert feelings(linker, text) == expected


def test_kinds_moods_and_request_words(linker: TitleLinker) -> None:
    p = parse_turn("something calm to listen to while I read", [])
    assert p.kinds == ["audio"] and p.moods == ["calm"] and p.has_words
    p = parse_turn("show me a photo of a cat", [])
    assert p.kinds == ["image"]
    p = parse_turn("an upbeat song for my workout", [])
    assert p.kinds == ["audio"] and {"happy", "energetic"} <= set(p.moods)
    p = parse_turn("that sounds good, thanks", [])
    assert p.kinds == []  # "sounds good" is not a sound
    p = parse_turn("a scary movie for kids", [])
    assert p.kinds == ["text"] and p.moods == ["scary"] and p.attributes == ["for kids"]
    assert request_words("I loved it, thanks!") == []


@pytest.mark.parametrize(
    ("text", "era", "relative"),
    [
        ("something from the 80s", (1980, 1989), None),
        ("an action film from the 1990s", (1990, 1999), None),
        ("a comedy from the eighties", (1980, 1989), None),
        ("anything before 1990", (1870, 1989), None),
        ("made after 2010", (2010, 2100), None),
        ("between 1970 and 1975", (1970, 1975), None),
        ("older, please", None, "older"),
        ("something recent", None, "recent"),
    ],
)
def test_era(text: str, era: tuple[int, int] | None, relative: str | None) -> None:
    p = parse_turn(text, [])
    assert (p.era, p.era_relative) == (era, relative)


def test_genres(linker: TitleLinker) -> None:
    p = parse_turn("a sci-fi thriller or a romantic comedy", [])
    assert set(p.genres) == {"sci-fi", "thriller", "romance", "comedy"}


def test_exclusions(linker: TitleLinker) -> None:
    p = parse_turn("no horror please, something funny", [])
    assert p.exclude_terms == ["horror"] and "horror" not in p.genres and p.moods == ["funny"]
    p = parse_turn("nothing with Jim Carrey", [])
    assert p.exclude_terms == ["Jim Carrey"] and p.people == []
    p = parse_turn("a photo of a cat, nothing scary", [])
    assert p.exclude_terms == ["scary"] and p.moods == []
    p = parse_turn("not that one, older", [])
    assert [(r.pointer, r.role) for r in p.refs] == [("that one", "exclude")]
    assert p.era_relative == "older"
    for text in ("not Titanic please", "anything except Titanic", "nothing like Titanic"):
        p = parse_turn(text, linker.find(text))
        assert p.exclude_links == [0], text
    p = parse_turn("not a fan of horror", [])
    assert p.exclude_terms == ["horror"] and p.genres == []
    p = parse_turn("No, I have not seen it", [])
    assert p.exclude_terms == []  # a reply, not an exclusion


def test_like_x_but_y(linker: TitleLinker) -> None:
    text = "something like Heat but funnier"
    p = parse_turn(text, linker.find(text))
    assert p.like_links == [0] and p.but == "funnier" and p.moods == ["funny"]
    p = parse_turn("something like the first but older", [])
    assert [(r.ordinal, r.role) for r in p.refs] == [(1, "like")]
    assert p.but == "older" and p.era_relative == "older"
    p = parse_turn("more like #2", [])
    assert [(r.ordinal, r.shown, r.role) for r in p.refs] == [(2, True, "like")]
    text = "I like Heat"  # a feeling, and still an anchor is not read from "I like"
    p = parse_turn(text, linker.find(text))
    assert p.like_links == [] and p.sentiments == ["liked"]


def test_people(linker: TitleLinker) -> None:
    assert parse_turn("movies with Tom Hanks", []).people == ["Tom Hanks"]
    assert parse_turn("something directed by Kathryn Bigelow", []).people == ["Kathryn Bigelow"]
    assert parse_turn("Christopher Nolan films", []).people == ["Christopher Nolan"]
    assert parse_turn("something with a twist", []).people == []


def test_pointer_feelings(linker: TitleLinker) -> None:
    p = parse_turn("I haven't seen it", [])
    assert [(r.pointer, r.role, r.sentiment) for r in p.refs] == [("it", "sentiment", "not_seen")]
    p = parse_turn("I loved the second one!", [])
    assert [(r.ordinal, r.sentiment) for r in p.refs] == [(2, "liked")]


def test_titles_are_not_read_as_request_words(linker: TitleLinker) -> None:
    cat = TitleLinker([("sm", "Scary Movie", 2000), ("dk", "The Dark Knight", 2008)])
    text = "I loved Scary Movie and The Dark Knight"
    p = parse_turn(text, cat.find(text))
    assert p.moods == [] and p.kinds == [] and not p.has_words
