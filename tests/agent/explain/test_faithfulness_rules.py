"""Each faithfulness rule alone (a passing and a failing text), the rule table, and encoder
labels: cited as they appear (commas inside a label included), invented ones still rejected."""

from __future__ import annotations

import numpy as np
import pytest

from agent.explain import faithfulness as fz
from agent.explain.evidence import HistoryEntry, build_evidence, scored_labels
from agent.explain.explainer import Explainer, salvage, split_sentences
from agent.explain.faithfulness import Claim, TitleIndex, check_faithfulness, mask_titles
from agent.records import Evidence, HistoryLink
from retrieval.catalogue import Item
from tests.agent.explain.explain_data import film_items


def _film_evidence() -> Evidence:
    """Return of the Jedi, recommended because of Star Wars (rated 5); 2 co-likes."""
    return Evidence(
        item_id="rotj",
        title="Return of the Jedi (1983)",
        history=[
            HistoryLink("sw", "Star Wars (1977)", "text", 0.8, 0.5, 5.0),
            HistoryLink("gf", "Godfather, The (1972)", "text", 0.1, 0.05, 4.0),
        ],
        modality_scores={"text": 0.55},
        content_score=0.55,
        co_liked=[("sw", "Star Wars (1977)", 2)],
        matched_tags=["Action", "Sci-Fi"],
        item_tags=["Action", "Adventure", "Sci-Fi"],
        rank=1,
    )


def _claim(text: str, ev: Evidence | None = None, **kw: object) -> Claim:
    ev = ev or _film_evidence()
    titles = TitleIndex({i: it.title for i, it in film_items().items()})
    vocabulary = sorted({t for it in film_items().values() for t in it.tags})
    rendered = "- It is similar to 'Star Wars (1977)', which you rated 5 (similarity 0.80).\n"
    rendered += "- 2 users who liked 'Star Wars (1977)' also liked it."
    return Claim.build(
        text,
        ev,
        rendered=str(kw.get("rendered", rendered)),
        titles=titles,
        vocabulary=vocabulary,
    )


# (rule, a text it lets through, a text it rejects, a word of the reason)
CASES = [
    (fz.foreign_title, "Like Star Wars, it is set in space.", "Like Heat, it is tense.", "Heat"),
    (fz.unknown_quote, 'You rated "Star Wars" 5.', 'It is "the best sequel".', "best sequel"),
    (fz.unknown_year_title, "Star Wars (1977) led here.", "Like Titans (1997).", "Titans"),
    (fz.unknown_name, "You liked Star Wars.", "Steven Spielberg made it.", "Steven Spielberg"),
    (fz.unknown_tag_claim, "It is tagged Action and Sci-Fi.", "It is tagged Romance.", "romance"),
    (fz.foreign_tag, "It shares Sci-Fi with Star Wars.", "It is a Horror film.", "Horror"),
    (fz.unknown_number, "2 users who liked it also liked this.", "It scores 0.93.", "0.93"),
    (fz.judgement, "It shares Action with Star Wars.", "It is a classic.", "classic"),
    (fz.self_claim, "You rated Star Wars 5.", "You have seen it already.", "seen it"),
    (fz.misattributed_year, "Star Wars (1977) is close.", "It came out in 1984.", "1984"),
    (fz.misattributed_rating, "Star Wars, which you rated 5.", "You rated it 4 stars.", "4"),
    (fz.unsupported_modality, "It shares Action.", "Its poster looks like Star Wars.", "image"),
]


@pytest.mark.parametrize(("rule", "good", "bad", "why"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_rule_alone(rule: fz.Rule, good: str, bad: str, why: str) -> None:
    assert rule(_claim(good)) is None
    reason = rule(_claim(bad))
    assert reason is not None and why.lower() in reason.lower()


def test_the_table_holds_every_rule_once_and_names_the_one_that_failed() -> None:
    names = [name for name, _ in fz.RULES]
    assert names == [rule.__name__ for _, rule in fz.RULES]
    assert len(set(names)) == len(names)
    assert set(names) == {c[0].__name__ for c in CASES}  # each rule has a test case above
    result = check_faithfulness("It is a classic.", _film_evidence())
    assert not result.ok and result.rule == "judgement"
    result = check_faithfulness("You rated Star Wars 5.", _film_evidence())
    assert not result.ok and result.rule == "unknown_number"  # 5 is not in `rendered` ("")
    result = check_faithfulness("You rated Star Wars 5.", _film_evidence(), rendered="rated 5")
    assert result.ok and result.rule is None


def test_one_masking_scheme_for_checks_and_sentence_splitting() -> None:
    ev = _film_evidence()
    ev.history.append(HistoryLink("la", "L.A. Confidential (1997)", "text", 0.3, 0.1, 5.0))
    masked = mask_titles("You rated l.a. confidential and Star Wars 5.", ev)
    assert "confidential" not in masked.text.lower() and "Star Wars" not in masked.text
    assert sorted(map(sorted, masked.refs.values())) == [["la"], ["sw"]]
    assert not any(ch.isdigit() for p in masked.refs for ch in p)  # no digit to mistake
    assert masked.unmask(masked.text) == "You rated l.a. confidential and Star Wars 5."
    text = "You liked L.A. Confidential. It is close to Star Wars."
    assert split_sentences(text, ev) == [
        "You liked L.A. Confidential.",
        "It is close to Star Wars.",
    ]


# ---- encoder labels -----------------------------------------------------------------------


def _media_evidence() -> tuple[Explainer, Evidence]:
    """A cold user's request for a calm sound; the item's photo and sound carry labels with
    commas inside (ImageNet "tabby, tabby cat", AudioSet "Beep, bleep")."""
    items = {
        "cat": Item(id="cat", title="Cat at the window", tags=("animals",), description="A cat."),
        "dog": Item(id="dog", title="Dog in the park", tags=("animals",), description="A dog."),
    }
    meta = {
        "image_tags": '[["tabby, tabby cat", 0.62], ["Egyptian cat", 0.2], ["tiger cat", 0.1]]',
        "audio_tags": '[["Beep, bleep", 0.41], ["Busy signal", 0.2], ["Sidetone", 0.12]]',
    }
    rng = np.random.default_rng(1)
    vec = rng.normal(size=8).astype(np.float32)
    vec /= np.linalg.norm(vec)
    ev = build_evidence(
        "cat",
        [],
        items=items,
        vectors={"text": {"cat": vec, "dog": vec}},
        weights={"text": 1.0},
        labels={"cat": scored_labels(meta)},
        request="a calm cat",
        request_vector=vec,
        rank=1,
    )
    return Explainer(None, items=items), ev


def test_evidence_carries_what_the_encoders_saw_with_scores() -> None:
    explainer, ev = _media_evidence()
    assert ev.labels["image"][0] == "tabby, tabby cat"
    assert ev.label_scores["image"]["tabby, tabby cat"] == pytest.approx(0.62)
    rendered = explainer.render_evidence(ev)
    assert '- Its picture shows "tabby, tabby cat" (0.62) and "Egyptian cat" (0.20)' in rendered
    picture = next(ln for ln in rendered.splitlines() if "picture shows" in ln)
    assert "tiger cat" not in picture  # a 0.10 guess is not shown as something it saw
    assert '- Its sound was tagged "Beep, bleep" (0.41)' in rendered
    assert 'You asked for "a calm cat" (similarity 1.00)' in rendered
    template = explainer.template(ev)
    assert 'Its picture shows "tabby, tabby cat" (0.62).' in template
    assert explainer.check(template, ev).ok, explainer.check(template, ev).reason


@pytest.mark.parametrize(
    "text",
    [
        "Its sound was tagged beep, bleep, busy signal, sidetone.",  # the text once rejected
        'Its sound was tagged "beep, bleep, busy signal, sidetone".',
        'Its sound was tagged "Beep, bleep", "Busy signal" and "Sidetone".',
        "Its picture shows a tabby cat (0.62), which matches your request for a calm cat.",
        'Its picture shows "tabby, tabby cat" (0.62) and its sound was tagged Busy signal.',
        "Its photo shows an Egyptian cat and a tiger cat.",
    ],
)
def test_labels_are_accepted_as_they_appear(text: str) -> None:
    explainer, ev = _media_evidence()
    result = explainer.check(text, ev)
    assert result.ok, result.reason


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Its picture shows a golden retriever.", "golden retriever"),
        ("Its sound was tagged Piano and Violin.", "piano"),
        ('Its sound was tagged "beep, bleep, violin".', "violin"),
        ("Its picture shows a tabby cat (0.93).", "0.93"),
        ("Its picture looks like the photos you liked.", "modality"),
        ("It sounds like the tracks you liked.", "modality"),
        ("Its sound was tagged Beep, bleep, like items you liked.", "modality"),
        ("Its photo shows a tabby cat, loved by critics.", "critics"),
    ],
)
def test_invented_media_facts_are_still_rejected(text: str, why: str) -> None:
    explainer, ev = _media_evidence()
    result = explainer.check(text, ev)
    assert not result.ok and why in (result.reason or "").lower(), result


def test_no_labels_no_description() -> None:
    """Without labels in a modality, even describing it is invented."""
    explainer, ev = _media_evidence()
    ev.labels.pop("audio")
    ev.label_scores.pop("audio")
    assert not explainer.check("Its sound was tagged Sidetone.", ev).ok
    assert explainer.check("Its picture shows a tabby cat.", ev).ok


def test_history_credit_through_labels_needs_the_modality() -> None:
    """Sharing a label with liked items is credit for the match: only where that modality
    holds enough of the content score (here text only), else rejected."""
    explainer, ev = _media_evidence()
    ev.history = [HistoryLink("dog", "Dog in the park", "text", 0.9, 0.5, 5.0)]
    ev.modality_scores = {"text": 0.5}
    text = "Its picture shows a tabby cat, similar to Dog in the park."
    result = explainer.check(text, ev)
    assert not result.ok and result.rule == "unsupported_modality"
    assert explainer.check("You liked Dog in the park.", ev).ok
    entries = [HistoryEntry("dog", 1.0, 5.0)]
    assert entries[0].weight == 1.0


def test_a_sentence_cut_by_the_token_limit_ends_at_its_last_whole_clause() -> None:
    ev = _film_evidence()
    cut = salvage(
        'It is similar to "Star Wars (1977)", which you rated 5, and 2 users who liked', ev
    )
    assert cut == 'It is similar to "Star Wars (1977)", which you rated 5.'
    assert salvage("You rated Star Wars 5 and", ev) is None  # too short to say anything
    assert salvage('It is similar to "Star Wars (1977)" and to "Godfather, The', ev) is None


def test_catalogue_tags_that_are_plain_words_do_not_forbid_them() -> None:
    """A media catalogue tags items "sound" or "music": "its sound was tagged" and the user's
    request "upbeat music" are no claim of those tags; a bare claim still is."""
    explainer, ev = _media_evidence()
    ev.request = "upbeat music"
    vocabulary = ["sound", "music", "animals"]
    text = 'Its sound was tagged "Beep, bleep" (0.41), and it matches your request "upbeat music".'
    rendered = explainer.render_evidence(ev)
    assert check_faithfulness(text, ev, rendered=rendered, vocabulary=vocabulary).ok
    result = check_faithfulness("It is music for you.", ev, vocabulary=vocabulary)
    assert not result.ok and result.rule == "foreign_tag"


def test_a_label_that_is_also_the_title_is_read_as_a_label() -> None:
    explainer, ev = _media_evidence()
    ev.title = "Tabby"  # the item's own title, masked in the text, is also in its label
    result = explainer.check('Its picture shows "tabby, tabby cat" (0.62).', ev)
    assert result.ok, result.reason


def test_the_prompts_style_example_fits_the_evidence() -> None:
    """A cold user's request gets an example about the request and what was seen, never one
    about a rating they never gave (the 1.5B copied that shape and invented ratings)."""
    explainer, ev = _media_evidence()
    prompt = explainer.render_prompt(ev)
    example = prompt.rsplit("Example of the style:", 1)[1]
    assert "matches your request" in example and "picture shows" in example
    assert "rated" not in example and "users who liked" not in example


def test_brackets_copied_from_the_example_are_dropped_not_the_fact() -> None:
    from agent.explain.explainer import _clean

    explainer, ev = _media_evidence()
    raw = 'It matches your request "<a calm cat>". Its picture shows "<tabby, tabby cat>".'
    text = _clean(raw)
    assert text == 'It matches your request "a calm cat". Its picture shows "tabby, tabby cat".'
    assert explainer.check(text, ev).ok, explainer.check(text, ev).reason
    assert not explainer.check(_clean('Its picture shows "<a golden retriever>".'), ev).ok
