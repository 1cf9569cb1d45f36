"""Conversational retriever: each source on hand-made cases, exclusions, Chroma-backed vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrieval.catalogue import Item
from retrieval.config import ConversationConfig
from retrieval.conversational import ConversationQuery, ConversationRetriever
from retrieval.numpy_index import NumpyIndex

ITEMS = [
    Item("a", "Heat", "A crime thriller about a bank robbery crew and a detective.",
         tags=("Crime", "Thriller"),
         metadata={"year": 1995, "genres": ["Crime", "Thriller"], "directors": ["Michael Mann"],
                   "cast": ["Al Pacino", "Robert De Niro"]}),
    Item("b", "Ronin", "Mercenaries chase a briefcase through France in car chases.",
         tags=("Action", "Thriller"),
         metadata={"year": 1998, "genres": ["Action", "Thriller"], "cast": ["Robert De Niro"]}),
    Item("c", "Toy Story", "Animated toys come alive; a family comedy for kids.",
         tags=("Animation", "Comedy"), metadata={"year": 1995, "genres": ["Animation", "Comedy"]}),
    Item("d", "The Shining", "A haunted hotel, a scary horror film in the snow.",
         tags=("Horror",), metadata={"year": 1980, "genres": ["Horror"],
                                     "directors": ["Stanley Kubrick"]}),
    Item("e", "Finding Nemo", "An animated fish comedy for children and families.",
         tags=("Animation", "Family"), metadata={"year": 2003, "genres": ["Animation", "Family"]}),
    Item("f", "Black Panther", "", metadata={"year": None}),
]  # fmt: skip
# users who rate Heat also rate Ronin; Toy Story goes with Finding Nemo
RATINGS = pd.DataFrame(
    {
        "user_id": ["1", "1", "2", "2", "3", "3", "4", "4", "5"],
        "item_id": ["a", "b", "a", "b", "c", "e", "c", "e", "d"],
        "rating": [5.0] * 9,
    }
)


@pytest.fixture(scope="module")
def index(encoders):  # type: ignore[no-untyped-def]
    vecs = encoders.text.encode([it.text() for it in ITEMS])
    return NumpyIndex({"text": ([it.id for it in ITEMS], vecs)})


@pytest.fixture(scope="module")
def retriever(index, encoders):  # type: ignore[no-untyped-def]
    return ConversationRetriever(
        ITEMS,
        index,
        text_encoder=encoders.text,
        interactions=RATINGS,
        popularity={"c": 10.0, "a": 5.0, "d": 1.0},
        config=ConversationConfig(weights={"itemknn": 1.0, "ease": 1.0, "content": 0.5,
                                           "query": 1.0, "attributes": 0.5, "popularity": 0.1}),
    )  # fmt: skip


def ids(cands) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.item_id for c in cands]


def test_cf_from_a_liked_film(retriever) -> None:  # type: ignore[no-untyped-def]
    got = retriever.generate(ConversationQuery(liked_ids=("a",)), n=3)
    assert ids(got)[0] == "b"
    assert "a" not in ids(got)  # the liked film itself is never recommended
    top = got[0]
    assert top.sources["itemknn"] > 0 and "ease" in top.sources and "content" in top.sources
    assert top.rank == 1 and abs(sum(top.contributions.values()) - top.score) < 1e-6


def test_request_text_and_genres(retriever) -> None:  # type: ignore[no-untyped-def]
    scary = retriever.generate(ConversationQuery(request_text="a scary horror movie"), n=2)
    assert ids(scary)[0] == "d" and "itemknn" not in scary[0].sources
    kids = retriever.generate(ConversationQuery(genres=("Children",)), n=2)  # alias of Family
    assert ids(kids)[0] == "e"
    people = retriever.score_sources([ConversationQuery(people=("robert de niro",))])
    assert list(people["attributes"][0]) == [1, 1, 0, 0, 0, 0]
    era = retriever.score_sources([ConversationQuery(era=(1990, 1999))])["attributes"][0]
    assert list(era) == [1, 1, 1, 0, 0, 0]  # unknown year never matches


def test_exclusions_and_dislikes(retriever) -> None:  # type: ignore[no-untyped-def]
    q = ConversationQuery(liked_ids=("c",), disliked_ids=("a",), exclude_ids=("e", "zzz"))
    got = ids(retriever.generate(q, n=10))
    assert not {"a", "c", "e"} & set(got)
    assert sorted(got) == ["b", "d", "f"]
    mask = retriever.excluded_mask([q])[0]
    assert list(mask) == [True, False, True, False, True, False]


def test_nothing_known_falls_back_to_popularity(retriever) -> None:  # type: ignore[no-untyped-def]
    got = retriever.generate(ConversationQuery(), n=3)
    assert ids(got) == ["c", "a", "d"]
    raw = retriever.score_sources([ConversationQuery()])
    assert np.isnan(raw["itemknn"]).all() and np.isnan(raw["query"]).all()


def test_vectors_from_a_chroma_store(tmp_path: Path, encoders) -> None:  # type: ignore[no-untyped-def]
    from retrieval.ingest import Encoders, ingest_items
    from retrieval.store import VectorStore

    store = VectorStore.open(tmp_path / "store", prefix="conv")
    ingest_items(ITEMS[:5], store, Encoders(text=encoders.text))
    r = ConversationRetriever(ITEMS, store, text_encoder=encoders.text)  # "f" not ingested
    assert not r.models  # no co-ratings: no CF source
    got = r.generate(ConversationQuery(request_text="animated fish"), n=6)
    assert ids(got)[0] == "e"
    assert got[-1].item_id == "f" and "query" not in got[-1].sources
