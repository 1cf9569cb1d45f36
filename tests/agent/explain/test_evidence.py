"""Evidence: exact score decomposition, co-likes, tags, request similarity, any item."""

from __future__ import annotations

import numpy as np
import pytest

from agent.explain.evidence import (
    HistoryEntry,
    build_evidence,
    labels_from_metadata,
    supported_modalities,
)
from retrieval.fusion import profile_vector, renormalise
from tests.agent.explain.explain_data import co_likes, film_items, real_vectors, unit, user_history


def fused_score(item_id: str, history: list[HistoryEntry], vectors: dict, weights: dict) -> float:
    """Independent reference: sum_m w_m cos(p_m, v_m) over modalities both sides have."""
    present = [
        m
        for m in ("text", "image", "audio")
        if item_id in vectors.get(m, {}) and any(h.item_id in vectors[m] for h in history)
    ]
    w = renormalise(weights, present)
    total = 0.0
    for m, wm in w.items():
        hist = [h for h in history if h.item_id in vectors[m]]
        raw, norm = profile_vector(
            np.stack([vectors[m][h.item_id] for h in hist]), np.array([h.weight for h in hist])
        )
        total += wm * float(raw @ vectors[m][item_id]) / norm
    return total


@pytest.fixture(scope="module")
def text_vectors(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return real_vectors(tmp_path_factory.mktemp("evidence"))


def test_contributions_sum_to_fused_score_with_real_text_vectors(text_vectors: dict) -> None:
    items, history = film_items(), user_history()
    for item_id in items:
        ev = build_evidence(
            item_id, history, items=items, vectors=text_vectors, weights={"text": 1.0}
        )
        expected = fused_score(item_id, history, text_vectors, {"text": 1.0})
        assert sum(link.contribution for link in ev.history) == pytest.approx(expected, abs=1e-6)
        assert ev.content_score == pytest.approx(expected, abs=1e-6)
        assert {link.item_id for link in ev.history} == {h.item_id for h in history}


def test_contributions_sum_across_modalities_with_a_missing_one() -> None:
    rng = np.random.default_rng(0)
    items = film_items()
    ids = list(items)
    vectors = {
        "text": dict(zip(ids, unit(rng, len(ids), 16), strict=True)),
        "image": dict(zip(ids[:6], unit(rng, 6, 8), strict=True)),  # some items have no image
        "audio": dict(zip(ids[3:], unit(rng, len(ids) - 3, 4), strict=True)),
    }
    weights = {"text": 1.0, "image": 0.5, "audio": 0.5}
    history = [
        HistoryEntry("sw", 1.0, 5),
        HistoryEntry("gf", 0.6, 4),
        HistoryEntry("heat", -0.4, 2),
    ]
    for item_id in ids:
        ev = build_evidence(item_id, history, items=items, vectors=vectors, weights=weights)
        expected = fused_score(item_id, history, vectors, weights)
        assert sum(link.contribution for link in ev.history) == pytest.approx(expected, abs=1e-6)
        for m, score in ev.modality_scores.items():
            assert sum(lk.contribution for lk in ev.history if lk.modality == m) == pytest.approx(
                score
            )
    ev = build_evidence("sw", history, items=items, vectors=vectors, weights=weights)  # no audio
    assert set(ev.modality_scores) == {"text", "image"}


def test_links_record_cosine_and_rating(text_vectors: dict) -> None:
    ev = build_evidence(
        "rotj", user_history(), items=film_items(), vectors=text_vectors, weights={"text": 1.0}
    )
    sw = next(lk for lk in ev.history if lk.item_id == "sw")
    assert sw.title == "Star Wars (1977)" and sw.rating == 5.0 and sw.modality == "text"
    assert sw.cosine == pytest.approx(
        float(text_vectors["text"]["sw"] @ text_vectors["text"]["rotj"]), abs=1e-5
    )
    assert ev.history[0].item_id == "sw"  # Star Wars drives Return of the Jedi


def test_co_likes_count_users_who_liked_both() -> None:
    cl = co_likes()
    # users 1 and 2 liked Star Wars and Return of the Jedi; user 0 did not rate it
    assert cl.counts("rotj", ["sw", "gf", "scream"]) == [2, 0, 0]
    assert cl.counts("sw", ["rotj", "unknown"]) == [2, 0]
    assert cl.counts("sw", ["rotj"], exclude_user=1) == [1]
    assert cl.likes("sw") == 3
    ev = build_evidence(
        "rotj", user_history(), items=film_items(), vectors={}, weights={"text": 1.0}, co_likes=cl
    )
    assert ev.co_liked == [("sw", "Star Wars (1977)", 2)]  # only liked history items, n > 0


def test_tags_matched_and_disliked() -> None:
    items = film_items()
    ev = build_evidence("alien", user_history(), items=items, vectors={}, weights={"text": 1.0})
    assert ev.matched_tags == ["Sci-Fi"]  # shared with Star Wars, which was liked
    assert ev.disliked_tags == ["Horror"]  # shared with Scream, rated 1
    ev = build_evidence(
        "heat",
        user_history(),
        items=items,
        vectors={},
        weights={"text": 1.0},
        disliked_topics=["action"],
    )
    assert "Action" in ev.disliked_tags and "Crime" in ev.matched_tags


def test_labels_from_store_metadata_join_the_tags() -> None:
    meta = {
        "image_tags": '[["espresso", 0.86], ["cup", 0.05]]',
        "audio_tags": '[["Electric piano", 0.7]]',
    }
    labels = labels_from_metadata(meta)
    assert labels == {"image": ["espresso", "cup"], "audio": ["Electric piano"]}
    assert labels_from_metadata({"image_tags": "not json"}) == {}
    ev = build_evidence(
        "toy", [], items=film_items(), vectors={}, weights={}, labels={"toy": labels}
    )
    assert ev.item_tags[-3:] == ["espresso", "cup", "Electric piano"] and ev.labels == labels


def test_any_item_works_including_not_recommended(text_vectors: dict) -> None:
    ev = build_evidence(
        "alien",
        user_history(),
        items=film_items(),
        vectors=text_vectors,
        weights={"text": 1.0},
        co_likes=co_likes(),
        rank=None,
    )
    assert ev.rank is None and ev.title == "Alien (1979)"
    scream = next(lk for lk in ev.history if lk.item_id == "scream")
    assert scream.contribution < 0  # the disliked slasher pulls Alien down
    with pytest.raises(KeyError):
        build_evidence("nope", user_history(), items=film_items(), vectors=text_vectors, weights={})


def test_request_similarity_and_scores(text_vectors: dict) -> None:
    from retrieval.candidates import Candidate
    from retrieval.encoders import create_encoder

    query = create_encoder("minilm", num_threads=1).encode_query(
        "space opera with rebels and jedi"
    )[0]
    cand = Candidate("rotj", 0.8, {"ease": 0.5, "content-text": 0.4}, rank=2)
    ev = build_evidence(
        "rotj",
        user_history(),
        items=film_items(),
        vectors=text_vectors,
        weights={"text": 1.0},
        request="space opera with rebels and jedi",
        request_vector=query,
        candidate=cand,
        llm_score=-0.3,
        rank=2,
    )
    other = build_evidence(
        "gf",
        user_history(),
        items=film_items(),
        vectors=text_vectors,
        weights={"text": 1.0},
        request="space opera",
        request_vector=query,
    )
    assert ev.request_score is not None and other.request_score is not None
    assert ev.request_score > other.request_score
    assert ev.retriever_score == 0.8 and ev.sources == {"ease": 0.5, "content-text": 0.4}
    assert ev.llm_score == -0.3 and ev.rank == 2
    assert ev.to_dict()["history"][0]["item_id"] == "sw"


def test_supported_modalities_need_share_and_a_positive_link() -> None:
    rng = np.random.default_rng(1)
    items = film_items()
    base = unit(rng, 1, 8)[0]
    vectors = {
        "text": dict(zip(items, unit(rng, len(items), 16), strict=True)),
        "image": {"sw": base, "rotj": base, "gf": -base},
    }
    vectors["text"]["rotj"] = vectors["text"]["sw"]  # text clearly pulls it up too
    history = [HistoryEntry("sw", 1.0), HistoryEntry("gf", 0.5)]
    ev = build_evidence(
        "rotj", history, items=items, vectors=vectors, weights={"text": 0.2, "image": 0.8}
    )
    assert "image" in supported_modalities(ev)
    ev = build_evidence(
        "rotj", history, items=items, vectors=vectors, weights={"text": 1.0, "image": 0.01}
    )
    assert "image" not in supported_modalities(ev)
