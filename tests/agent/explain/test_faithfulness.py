"""Faithfulness check: titles, quotes, spans, tags, numbers, ratings and modality claims."""

from __future__ import annotations

import numpy as np
import pytest

from agent.explain.evidence import HistoryEntry, build_evidence
from agent.explain.explainer import Explainer
from agent.explain.faithfulness import TitleIndex, check_faithfulness, title_forms
from agent.records import Evidence
from tests.agent.explain.explain_data import co_likes, film_items, unit, user_history


def _vectors() -> dict:
    """Deterministic text vectors where Return of the Jedi sits next to Star Wars."""
    rng = np.random.default_rng(3)
    items = film_items()
    text = dict(zip(items, unit(rng, len(items), 32), strict=True))
    text["rotj"] = (text["sw"] + 0.3 * text["rotj"]) / np.linalg.norm(
        text["sw"] + 0.3 * text["rotj"]
    )
    return {"text": text}


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    return Explainer(None, items=film_items())


@pytest.fixture(scope="module")
def rotj() -> Evidence:
    return build_evidence(
        "rotj",
        user_history(),
        items=film_items(),
        vectors=_vectors(),
        weights={"text": 1.0},
        co_likes=co_likes(),
        rank=1,
    )


def test_title_forms_cover_movielens_conventions() -> None:
    assert title_forms("Empire Strikes Back, The (1980)") >= {
        "Empire Strikes Back, The (1980)",
        "Empire Strikes Back, The",
        "The Empire Strikes Back",
        "The Empire Strikes Back (1980)",
    }
    index = TitleIndex({"esb": "Empire Strikes Back, The (1980)", "a": "Alien (1979)"})
    assert [(f, ids) for f, ids, _ in index.find("Unlike The Empire Strikes Back or Alien.")] == [
        ("The Empire Strikes Back", {"esb"}),
        ("Alien", {"a"}),
    ]


def test_evidence_titles_pass(explainer: Explainer, rotj: Evidence) -> None:
    ok = [
        'You rated "Star Wars (1977)" 5, and this one is similar.',
        "Like Star Wars, which you rated 5, it is Sci-Fi.",
        "2 users who liked Star Wars (1977) also liked Return of the Jedi.",
        "It shares Action and Adventure with films you liked.",
    ]
    for text in ok:
        assert explainer.check(text, rotj).ok, (text, explainer.check(text, rotj).reason)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Fans of Alien will enjoy it too.", "Alien"),
        ("It continues The Empire Strikes Back.", "Empire Strikes Back"),
        ("It is similar to the movie Titans (1997).", "Titans (1997)"),
        ("It is like Star Wars, which was released in 1984.", "1984"),
        ('It is like "The (1983)".', "the (1983)"),
        ('It is a lot like "Titanic".', "titanic"),
        ("It was directed by Steven Spielberg.", "Steven Spielberg"),
        ("It is a Horror film like the ones you enjoy.", "Horror"),
        ("Its similarity to your taste is 0.93.", "0.93"),
        ("Three users who liked Star Wars also liked it.", "three"),
        ("You rated it 5 stars.", "rated it"),
        ("The user rated 4 stars for this item.", "4"),
        ("Star Wars, which you rated 4, is similar.", "4"),
        ("It is tagged Romance.", "romance"),
        ("It is a classic, praised for its innovative storytelling.", "classic"),
        ("Critics loved it.", "critics"),
    ],
)
def test_unsupported_mentions_are_rejected(
    explainer: Explainer, rotj: Evidence, text: str, why: str
) -> None:
    result = explainer.check(text, rotj)
    assert not result.ok
    assert why.lower() in (result.reason or "").lower()


def test_numbers_must_come_from_the_rendered_evidence(explainer: Explainer, rotj: Evidence) -> None:
    rendered = explainer.render_evidence(rotj)
    score = f"{rotj.content_score:.2f}"
    assert score in rendered
    assert check_faithfulness(f"Its content score is {score}.", rotj, rendered=rendered).ok
    assert not check_faithfulness(f"Its content score is {score}.", rotj, rendered="").ok


def _media_evidence(image_weight: float, labels: dict | None = None) -> Evidence:
    rng = np.random.default_rng(5)
    items = film_items()
    base = unit(rng, 1, 8)[0]
    vectors = {
        "text": dict(zip(items, unit(rng, len(items), 16), strict=True)),
        "image": {"sw": base, "rotj": base},
        "audio": {
            "sw": base[:4] / np.linalg.norm(base[:4]),
            "rotj": base[:4] / np.linalg.norm(base[:4]),
        },
    }
    vectors["text"]["rotj"] = vectors["text"]["sw"]
    return build_evidence(
        "rotj",
        [HistoryEntry("sw", 1.0, 5.0)],
        items=items,
        vectors=vectors,
        weights={"text": 1.0, "image": image_weight, "audio": image_weight},
        labels=labels or {},
        rank=1,
    )


def test_modality_claims_need_that_modality_to_matter(explainer: Explainer) -> None:
    labels = {"rotj": {"audio": ["Electric piano"]}, "sw": {"audio": ["Electric piano"]}}
    strong, weak = _media_evidence(1.0, labels), _media_evidence(0.01, labels)
    claims = [
        "Its cover art looks like that of Star Wars.",
        "Its sound is tagged Electric piano, like items you liked.",
        "It sounds like Star Wars.",
    ]
    for text in claims:
        assert explainer.check(text, strong).ok, explainer.check(text, strong).reason
        result = explainer.check(text, weak)
        assert not result.ok and "modality" in (result.reason or "")
    assert not explainer.check("It is tagged Guitar.", strong).ok  # not one of its labels


def test_text_only_evidence_rejects_any_modality_claim(
    explainer: Explainer, rotj: Evidence
) -> None:
    for text in ("Its poster looks like Star Wars.", "It sounds like Star Wars."):
        assert not explainer.check(text, rotj).ok


def test_template_always_passes(explainer: Explainer) -> None:
    items, vectors = film_items(), _vectors()
    histories = [user_history(), [HistoryEntry("gf", 1.0)], [HistoryEntry("scream", -1.0, 1.0)], []]
    for history in histories:
        for item_id in items:
            for rank in (None, 1):
                for request in (None, "space opera"):
                    ev = build_evidence(
                        item_id,
                        history,
                        items=items,
                        vectors=vectors,
                        weights={"text": 1.0},
                        co_likes=co_likes(),
                        rank=rank,
                        request=request,
                        request_vector=vectors["text"]["sw"] if request else None,
                    )
                    text = explainer.template(ev)
                    assert text and explainer.check(text, ev).ok, (
                        text,
                        explainer.check(text, ev).reason,
                    )
    for weight in (1.0, 0.01):
        labels = {"rotj": {"audio": ["Electric piano"]}, "sw": {"audio": ["Electric piano"]}}
        ev = _media_evidence(weight, labels)
        assert explainer.check(explainer.template(ev), ev).ok
    assert "looks like" in explainer.template(_media_evidence(1.0))


def test_empty_text_fails(rotj: Evidence) -> None:
    assert not check_faithfulness("   ", rotj).ok
