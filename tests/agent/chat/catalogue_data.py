"""A small hand-made film catalogue for the conversation-state tests (ids are strings)."""

from __future__ import annotations

from agent.chat.linking import TitleLinker

FILMS = [
    ("heat", "Heat", 1995),
    ("titanic", "Titanic", 1997),
    ("dark-knight", "Dark Knight, The", 2008),
    ("it-2017", "It", 2017),
    ("police-academy", "Police Academy", 1984),
    ("police-academy-2", "Police Academy 2: Their First Assignment", 1985),
    ("get-out", "Get Out", 2017),
    ("schindler", "Schindler's List", 1993),
    ("halloween", "Halloween", 1978),
    ("rocky-2", "Rocky II", 1979),
    ("amelie", "Amélie", 2001),
    ("ronin", "Ronin", 1998),
    ("collateral", "Collateral", 2004),
    ("airplane", "Airplane!", 1980),
    ("naked-gun", "The Naked Gun: From the Files of Police Squad!", 1988),
    ("super-troopers", "Super Troopers", 2001),
    ("lotr-1", "The Lord of the Rings: The Fellowship of the Ring", 2001),
    ("ring", "The Ring", 2002),
    ("scream-1996", "Scream", 1996),
    ("scream-1981", "Scream", 1981),
]


def make_linker() -> TitleLinker:
    return TitleLinker(FILMS, priors={"scream-1996": 10.0})
