"""EASE / ItemKNN / transitions / popularity on synthetic checkerboard interactions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from retrieval.cf import (
    EASE,
    ItemKNN,
    ItemScorer,
    Popularity,
    Transitions,
    history_weights,
    time_decayed_popularity,
    top_k,
)


def checkerboard(n_users: int = 20, n_items: int = 10, holdout: bool = True) -> sp.csr_matrix:
    """Even users like even items, odd users odd items; each user misses one of their items."""
    m = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        m[u, u % 2 :: 2] = 1.0
        if holdout:
            m[u, (u % 2 + 2 * (u % (n_items // 2))) % n_items] = 0.0
    return sp.csr_matrix(m)


@pytest.mark.parametrize("model", [EASE(l2=1.0), ItemKNN(k=5, shrink=0.0)], ids=["ease", "itemknn"])
def test_checkerboard_recommends_own_parity(model: ItemScorer) -> None:
    ui = checkerboard()
    model.fit(ui)
    for u in range(ui.shape[0]):
        ids, scores = model.recommend(u, ui, n=1)
        assert ids[0] % 2 == u % 2, (u, ids)
        assert ui[u, ids[0]] == 0  # never a liked item
        assert scores.dtype == np.float32


def test_recommend_batch_items_filter_and_padding() -> None:
    ui = checkerboard()
    model = EASE(l2=1.0).fit(ui)
    ids, scores = model.recommend(np.array([0, 1]), ui, n=4, items=np.array([0, 1, 2, 3]))
    assert ids.shape == (2, 4)
    for row in ids:
        assert set(row[row >= 0]) <= {0, 1, 2, 3}
    assert (ids == -1).any() and np.isneginf(scores[ids == -1]).all()  # only 1 unseen allowed item


@pytest.mark.parametrize(
    "model", [EASE(l2=3.0), ItemKNN(k=3, shrink=1.0), Popularity(), Transitions(2, 0.5, 1.0)]
)
def test_save_load_roundtrip(model: ItemScorer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ui = checkerboard()
    model.fit(sp.csr_matrix(ui.multiply(np.arange(1, 11, dtype=np.float32))))
    path = tmp_path / f"{model.kind}.npz"
    model.save(path)
    loaded = type(model).load(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.score(ui), model.score(ui), rtol=1e-6)
    assert ItemScorer.load(path).kind == model.kind
    other = EASE if not isinstance(model, EASE) else ItemKNN
    with pytest.raises(ValueError, match="valid kinds"):
        other.load(path)


def test_transitions_predict_what_comes_next() -> None:
    # every user watches 0 -> 1 -> 2 -> 3 (values are positions)
    seq = sp.csr_matrix(np.tile(np.array([1, 2, 3, 4, 0, 0], np.float32), (5, 1)))
    model = Transitions(window=1, smoothing=0.0).fit(seq)
    last_is_1 = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0]], np.float32))
    ids, _ = model.recommend(0, last_is_1, n=1)
    assert ids[0] == 2


def test_popularity_and_wrong_shape() -> None:
    ui = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1]], np.float32))
    model = Popularity().fit(ui)
    ids, _ = model.recommend(1, ui, n=2)
    assert list(ids) == [1, 2]  # ties broken by id, item 0 already seen
    with pytest.raises(ValueError, match="item columns"):
        model.score(sp.csr_matrix(np.ones((1, 4), np.float32)))
    with pytest.raises(TypeError):
        model.fit(np.ones((2, 3)))  # type: ignore[arg-type]


def test_time_decayed_popularity_is_causal() -> None:
    items = np.array([0, 0, 1, 1, 1])
    times = np.array([0, 86400, 10 * 86400, 10 * 86400, 10 * 86400])
    pop = time_decayed_popularity(
        items, times, np.array([86400, 20 * 86400]), 2, half_life_days=1.0
    )
    assert pop[0, 1] == 0.0  # item 1 is only rated later
    assert pop[0, 0] == pytest.approx(1.5)  # 2**-1 + 1
    assert pop[1, 1] > pop[1, 0]


def test_history_weights() -> None:
    w = history_weights(
        np.array([2, 1, 0]),
        np.array([5.0, 1.0, 4.0]),
        half_life=1.0,
        last_n=2,
        like_threshold=3.0,
        negative_weight=0.5,
    )
    np.testing.assert_allclose(w, [0.0, -0.25, 1.0])


def test_top_k_deterministic_ties() -> None:
    ids, vals = top_k(np.array([[1.0, 2.0, 2.0, 0.5]]), 3)
    assert ids.tolist() == [[1, 2, 0]]
    assert vals.tolist() == [[2.0, 2.0, 1.0]]
