"""Candidate generation on a tiny real-text catalogue (real MiniLM vectors, real Chroma store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrieval.candidates import CandidateGenerator, HybridConfig
from retrieval.numpy_index import NumpyIndex
from retrieval.profiles import History, build_profile

CATALOGUE = {
    "space1": "Starship Voyager: astronauts explore a distant galaxy on a space station.",
    "space2": "Mars Colony: a rocket crew lands on the red planet and fights for oxygen.",
    "space3": "Orbit: an astronaut stranded in outer space drifts around the Earth.",
    "love1": "Paris Hearts: two strangers fall in love during a summer in Paris.",
    "love2": "Wedding Season: a romantic comedy about a bride, a groom and a wedding planner.",
    "love3": "Second Chances: old sweethearts rekindle their romance years later.",
    "horror1": "The Cellar: a haunted house, a demon and a family trapped at night.",
    "horror2": "Nightmare Woods: campers are hunted by a masked killer in the forest.",
    "cook1": "Kitchen Masters: chefs compete to bake the perfect bread and pastry.",
    "cook2": "Street Food: a documentary about cooking noodles in night markets.",
}
IDS = list(CATALOGUE)


@pytest.fixture(scope="module")
def text_encoder():  # type: ignore[no-untyped-def]
    from retrieval.encoders import create_encoder

    return create_encoder("minilm", num_threads=1)


@pytest.fixture(scope="module")
def index(text_encoder) -> NumpyIndex:  # type: ignore[no-untyped-def]
    return NumpyIndex({"text": (IDS, text_encoder.encode(list(CATALOGUE.values())))})


def _log() -> pd.DataFrame:
    """Romance fans watch love1 -> love2 -> love3; horror fans horror1 -> horror2 -> cook1.

    The space items have no interactions at all.
    """
    rows = []
    for u in range(6):
        seq = ["love1", "love2", "love3"] if u % 2 == 0 else ["horror1", "horror2", "cook1"]
        rows += [
            {"user_id": f"u{u}", "item_id": i, "rating": 5.0, "timestamp": 1000 + 10 * k}
            for k, i in enumerate(seq)
        ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def generator(index, text_encoder) -> CandidateGenerator:  # type: ignore[no-untyped-def]
    return CandidateGenerator(index, config=HybridConfig(knn_k=5), text_encoder=text_encoder).fit(
        _log(), IDS
    )


def test_history_changes_candidates(generator: CandidateGenerator) -> None:
    romantic = generator.generate(History(["love1"], [5.0], [2000]), n=3)
    scary = generator.generate(History(["horror1"], [5.0], [2000]), n=3)
    assert romantic[0].item_id == "love2"
    assert scary[0].item_id == "horror2"
    assert [c.item_id for c in romantic] != [c.item_id for c in scary]


def test_no_seen_or_disliked_item_is_returned(generator: CandidateGenerator) -> None:
    hist = History(["love1", "horror1", "space1"], [5.0, 2.0, 4.0], [1, 2, 3], disliked=["love2"])
    for query in (None, "romance in Paris"):
        cands = generator.generate(hist, query=query, n=len(IDS), exclude=["cook2"])
        got = {c.item_id for c in cands}
        assert not got & {"love1", "horror1", "space1", "love2", "cook2"}
        assert len(cands) == len(IDS) - 5
        assert [c.rank for c in cands] == list(range(1, len(cands) + 1))


def test_cold_start_query_finds_items_without_interactions(generator: CandidateGenerator) -> None:
    cands = generator.generate(None, query="astronauts travelling through outer space", n=3)
    assert {c.item_id for c in cands} == {"space1", "space2", "space3"}
    assert all("query" in c.sources for c in cands)


def test_cold_start_without_anything_is_popularity(generator: CandidateGenerator) -> None:
    cands = generator.generate(None, n=4)
    assert len(cands) == 4
    assert set(cands[0].sources) >= {"popularity"} and cands[0].sources["popularity"] > 0


def test_every_candidate_keeps_its_sources(generator: CandidateGenerator) -> None:
    cands = generator.generate(
        History(["love1", "love2"], [5.0, 4.0], [1, 2]), query="a wedding", n=5
    )
    for c in cands:
        assert {"ease", "itemknn", "transitions", "popularity", "content-text", "query"} <= set(
            c.sources
        )
        assert sum(c.contributions.values()) == pytest.approx(c.score, abs=1e-9)
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)


def test_profile_dislikes_push_away(index: NumpyIndex) -> None:
    _, vecs, _ = index.get("text", ["love1", "horror1"])
    liked = build_profile(History(["love1", "horror1"], [5.0, 5.0], [1, 2]), index, half_life=None)[
        "text"
    ]
    pushed = build_profile(
        History(["love1", "horror1"], [5.0, 1.0], [1, 2]), index, half_life=None
    )["text"]
    assert pushed @ vecs[1] < liked @ vecs[1]
    assert np.linalg.norm(pushed) == pytest.approx(1.0, abs=1e-5)
    assert build_profile(History(), index) == {}


def test_chroma_store_plugs_in_like_the_numpy_index(
    tmp_path: Path, index: NumpyIndex, text_encoder
) -> None:  # type: ignore[no-untyped-def]
    from retrieval.store import VectorStore

    store = VectorStore.open(tmp_path / "store")
    ids, vecs, _ = index.get("text")
    store.upsert("text", ids, vecs, [{"title": i} for i in ids])
    gen = CandidateGenerator(store, config=HybridConfig(knn_k=5), text_encoder=text_encoder).fit(
        _log(), IDS
    )
    ref = CandidateGenerator(index, config=HybridConfig(knn_k=5), text_encoder=text_encoder).fit(
        _log(), IDS
    )
    hist = History(["love1", "cook1"], [5.0, 4.0], [1, 2])
    a = gen.generate(hist, query="bread and pastry", n=5)
    b = ref.generate(hist, query="bread and pastry", n=5)
    assert [c.item_id for c in a] == [c.item_id for c in b]
    assert a[0].sources["query"] == pytest.approx(b[0].sources["query"], abs=1e-4)
