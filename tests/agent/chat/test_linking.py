"""TitleLinker on hand-written chat lines: years, articles, case, punctuation, typos."""

from __future__ import annotations

import time

import pytest

from agent.chat.linking import MAX_LINK_CHARS, TitleLinker, normalize_title
from tests.agent.chat.catalogue_data import FILMS, make_linker


@pytest.fixture(scope="module")
def linker() -> TitleLinker:
    return make_linker()


def ids(linker: TitleLinker, text: str) -> list[str]:
    return [item_id for _, item_id, _ in linker.link(text)]


def test_normalize_title_moves_article_and_drops_year() -> None:
    assert normalize_title("Dark Knight, The (2008)") == "the dark knight"
    assert normalize_title("Schindler's List") == "schindlers list"
    assert normalize_title("Amélie") == "amelie"
    assert normalize_title("Rocky II") == "rocky 2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I loved Heat and hated Titanic", ["heat", "titanic"]),
        ("i loved the dark knight", ["dark-knight"]),
        ("Dark Knight, The (2008) is great", ["dark-knight"]),
        ("THE DARK KNIGHT!!!", ["dark-knight"]),
        ("have you seen dark knight?", ["dark-knight"]),
        ("schindlers list made me cry", ["schindler"]),
        ("Schindler’s List", ["schindler"]),
        ("I liked Amelie a lot", ["amelie"]),
        ("Rocky 2 is fine", ["rocky-2"]),
        ("Police Academy 2 was funny", ["police-academy-2"]),
        ("Police Academy (1984) was funny", ["police-academy"]),
        ("I loved Heat, Ronin and Collateral", ["heat", "ronin", "collateral"]),
        ("Heat was great", ["heat"]),
    ],
)
def test_links_titles(linker: TitleLinker, text: str, expected: list[str]) -> None:
    assert ids(linker, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I cried at Titanc", ["titanic"]),  # one letter missing
        ("the dark knigth was intense", ["dark-knight"]),  # transposition
        ("Schindlers Lsit", ["schindler"]),
        ("Colateral (2004) is tense", ["collateral"]),
    ],
)
def test_small_typos(linker: TitleLinker, text: str, expected: list[str]) -> None:
    assert ids(linker, text) == expected
    assert all(score < 1.0 for _, _, score in linker.link(text))


@pytest.mark.parametrize(
    "text",
    [
        "it was great, I loved it",  # "It" (2017) only as a title
        "I want to get out of here",  # "Get Out" only when written like a title
        "I heat my soup",  # lowercase one-word title without a cue
        "Amy Adams is great",  # no such film; no partial match either
        "reading books is fun",  # no fuzzy match of common words
    ],
)
def test_no_false_links(linker: TitleLinker, text: str) -> None:
    assert ids(linker, text) == []


def test_common_word_titles_need_title_form(linker: TitleLinker) -> None:
    assert ids(linker, "I watched It (2017) last night") == ["it-2017"]
    assert ids(linker, 'We saw "It" yesterday') == ["it-2017"]
    assert ids(linker, "Have you seen Get Out?") == ["get-out"]


def test_year_picks_among_same_titles(linker: TitleLinker) -> None:
    assert ids(linker, "Scream (1981) was odd") == ["scream-1981"]
    assert ids(linker, "Scream (1996) rules") == ["scream-1996"]
    assert ids(linker, "I liked Scream") == ["scream-1996"]  # no year: the prior decides
    # "the" before a capitalised title that starts without it is not part of it
    assert ids(linker, "all the Scream (1996) movies") == ["scream-1996"]


def test_year_that_matches_nothing_is_unknown(linker: TitleLinker) -> None:
    links = linker.find("Halloween (2018) was bad")
    assert [(ln.item_id, ln.year) for ln in links] == [(None, 2018)]
    assert linker.link("Halloween (2018) was bad") == []


def test_longest_title_wins(linker: TitleLinker) -> None:
    text = "The Lord of the Rings: The Fellowship of the Ring (2001) is a classic"
    assert ids(linker, text) == ["lotr-1"]
    assert ids(linker, "Then The Ring (2002)") == ["ring"]


def test_unknown_titles_are_kept_as_text(linker: TitleLinker) -> None:
    links = linker.find('I liked Some Odd Film (2019) and "Unknown Thing" too')
    assert [(ln.text, ln.item_id) for ln in links] == [
        ("Some Odd Film (2019)", None),
        ("Unknown Thing", None),
    ]
    spans = linker.find("Hi I am looking for a movie like Strange Days (1995)")
    assert [ln.text for ln in spans] == ["Strange Days (1995)"]


def test_offsets_point_into_text(linker: TitleLinker) -> None:
    text = "so: Dark Knight, The (2008)!"
    (link,) = linker.find(text)
    assert text[link.start : link.end] == link.text == "Dark Knight, The (2008)"
    assert link.year == 2008


def test_long_text_is_cut_and_fast(linker: TitleLinker) -> None:
    text = ("blah " * 30_000) + "Titanic"
    start = time.perf_counter()
    assert ids(linker, text) == []  # past MAX_LINK_CHARS
    assert time.perf_counter() - start < 5.0
    assert len(text) > MAX_LINK_CHARS


def test_speed_on_a_large_catalogue() -> None:
    """6,000+ titles (the size of ReDial's) and a chat line: milliseconds."""
    words = ["red", "night", "river", "ghost", "city", "silent", "iron", "paper", "winter", "moon"]
    titles = [
        (f"x{i}", f"{words[i % 10].title()} {words[(i // 10) % 10]} {i}", 1950 + i % 70)
        for i in range(6500)
    ]
    big = TitleLinker(titles + FILMS)
    line = "Hi! I loved the dark knigth and Heat, have you seen anything like Titanic (1997)?"
    big.link(line)
    start = time.perf_counter()
    for _ in range(20):
        found = big.link(line)
    per_call = (time.perf_counter() - start) / 20
    assert [i for _, i, _ in found] == ["dark-knight", "heat", "titanic"]
    assert per_call < 0.05, per_call  # ~2 ms here; generous for a shared CPU


def test_movielens_style_titles() -> None:
    """Alternate titles in a trailing parenthesis, foreign articles, sequels not in the list."""
    linker = TitleLinker(
        [
            ("7", "Seven (Se7en) (1995)", None),
            ("p", "Postman, The (Postino, Il) (1994)", None),
            ("t", "Toy Story (1995)", None),
        ]
    )
    assert [i for _, i, _ in linker.link("Have you seen Se7en?")] == ["7"]
    assert [i for _, i, _ in linker.link("I liked Seven a lot")] == ["7"]
    assert [i for _, i, _ in linker.link("I loved Il Postino")] == ["p"]
    assert [i for _, i, _ in linker.link("I loved the postman")] == ["p"]
    assert linker.link("Toy Story 2 was fun") == []  # a sequel the catalogue lacks
    assert [i for _, i, _ in linker.link("Toy Story was fun")] == ["t"]
    assert linker.year("7") == 1995


def test_non_english_and_empty(linker: TitleLinker) -> None:
    assert linker.find("") == []
    assert ids(linker, "J'ai adoré Titanic, c'était génial") == ["titanic"]
    assert ids(linker, "我喜欢看电影") == []
