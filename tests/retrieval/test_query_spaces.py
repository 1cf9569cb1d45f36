"""A request is matched against an item's own words first, and what its encoders saw second.

Real MiniLM vectors; the label space (`image-text`) holds text vectors of label names, as the
label bridge makes them. A classifier's wrong guess must not outvote a description.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrieval.candidates import CandidateGenerator, HybridConfig
from retrieval.numpy_index import NumpyIndex

QUERY = "a bowl of fruit salad"
TEXT = {
    "salad": "Fruit salad with apples, grapes and oranges in a bowl.",
    "frame": "A wooden picture frame hanging on a wall.",
    "chair": "A kitchen chair with four legs.",
}
LABELS = {  # what an image classifier said; "frame" got a label that reads like the request
    "salad": "plate",
    "frame": QUERY,
    "chair": "folding chair",
    "photo-only": "strawberry, orange, banana",  # no description at all
}


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    from retrieval.encoders import create_encoder

    return create_encoder("minilm", num_threads=1)


def _generator(encoder, label_weight: float) -> CandidateGenerator:  # type: ignore[no-untyped-def]
    index = NumpyIndex(
        {
            "text": (list(TEXT), encoder.encode(list(TEXT.values()))),
            "image-text": (list(LABELS), encoder.encode(list(LABELS.values()))),
        }
    )
    cfg = HybridConfig(query_label_weight=label_weight, weights={"query": 1.0})
    empty = pd.DataFrame(columns=["user_id", "item_id", "rating", "timestamp"])
    return CandidateGenerator(index, config=cfg, text_encoder=encoder).fit(empty, list(LABELS))


def test_own_words_outweigh_a_matching_label(encoder) -> None:  # type: ignore[no-untyped-def]
    ranked = [c.item_id for c in _generator(encoder, 0.5).generate(query=QUERY, n=4)]
    assert ranked[0] == "salad", ranked
    # taking the best space alone put the mislabelled frame first: the weight is what fixes it
    s = _generator(encoder, 0.5)._query_scores([QUERY], [set()])[0]
    ids = list(LABELS)
    assert s[ids.index("salad")] > s[ids.index("frame")]


def test_an_item_without_words_is_found_by_its_labels(encoder) -> None:  # type: ignore[no-untyped-def]
    gen = _generator(encoder, 0.5)
    s = gen._query_scores(["strawberries and bananas"], [set()])[0]
    ids = list(LABELS)
    assert np.isfinite(s[ids.index("photo-only")])
    assert s[ids.index("photo-only")] > s[ids.index("chair")]


def test_label_weight_zero_reads_only_the_items_own_words(encoder) -> None:  # type: ignore[no-untyped-def]
    gen = _generator(encoder, 0.0)
    s = gen._query_scores([QUERY], [set()])[0]
    own = encoder.encode_query([QUERY]) @ encoder.encode(list(TEXT.values())).T
    np.testing.assert_allclose(s[:3], own[0], rtol=1e-5)
