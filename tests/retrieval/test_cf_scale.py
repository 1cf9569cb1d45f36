"""Scale paths of the collaborative models: memory guards, chunked top-k, blocked ItemKNN,
matrix factorisation via `implicit`, and the automatic EASE / ALS choice."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from retrieval import cf
from retrieval.candidates import CandidateGenerator, HybridConfig, NumpyIndex
from retrieval.cf import (
    EASE,
    ItemKNN,
    ItemScorer,
    ModelTooLargeError,
    Popularity,
    Transitions,
    choose_cf_model,
    ease_bytes,
)
from retrieval.factors import ALS, BPR
from retrieval.profiles import History


def random_interactions(n_users: int = 120, n_items: int = 80, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    pop = (np.arange(n_items) + 1.0) ** -0.8
    rows, cols = [], []
    for u in range(n_users):
        k = int(rng.integers(2, 15))
        rows += [u] * k
        cols += list(rng.choice(n_items, size=k, replace=False, p=pop / pop.sum()))
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


def two_groups(n_users: int = 60, n_items: int = 20) -> sp.csr_matrix:
    """Even users like even items, odd users odd items; each misses a few of their own.

    Rank 2: factor models need few factors here, or they memorise the matrix.
    """
    rng = np.random.default_rng(1)
    m = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        own = np.arange(u % 2, n_items, 2)
        m[u, rng.choice(own, size=len(own) - 3, replace=False)] = 1.0
    return sp.csr_matrix(m)


def reference_itemknn(x: sp.csr_matrix, k: int, shrink: float) -> sp.csr_matrix:
    """The original one-shot ItemKNN (all pairs at once, a loop per column)."""
    x = sp.csr_matrix((x > 0).astype(np.float32))
    co = sp.coo_matrix(x.T @ x)
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    off = co.row != co.col
    rows, cols = co.row[off], co.col[off]
    vals = co.data[off] / (norms[rows] * norms[cols] + shrink + 1e-9)
    sim = sp.csc_matrix((vals, (rows, cols)), shape=co.shape, dtype=np.float32)
    sim.sort_indices()
    keep = np.zeros(len(sim.data), bool)
    for j in range(sim.shape[1]):
        lo, hi = sim.indptr[j], sim.indptr[j + 1]
        order = np.argsort(-sim.data[lo:hi], kind="stable")[:k]
        keep[lo + order] = True
    keep &= sim.data > 0
    r = sim.indices[keep]
    c = np.repeat(np.arange(sim.shape[1]), np.diff(sim.indptr))[keep]
    return sp.csr_matrix((sim.data[keep], (r, c)), shape=sim.shape, dtype=np.float32)


@pytest.mark.parametrize("block_pairs", [1, 300, 10**9])
def test_blocked_itemknn_equals_one_shot(block_pairs: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x = random_interactions()
    monkeypatch.setattr(ItemKNN, "block_pairs", block_pairs)
    got = ItemKNN(k=7, shrink=2.0).fit(x).W
    want = reference_itemknn(x, 7, 2.0)
    assert got.shape == want.shape and got.nnz == want.nnz
    assert (got != want).nnz == 0  # identical weights, ties broken the same way


def test_recommend_scores_users_in_bounded_chunks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x = random_interactions()
    model = EASE(l2=5.0).fit(x)
    users = np.arange(x.shape[0])
    full_ids, full_scores = model.recommend(users, x, n=10)
    shapes: list[tuple[int, int]] = []
    original = model.score

    def spy(rows: sp.csr_matrix) -> np.ndarray:
        out = original(rows)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(model, "score", spy)
    monkeypatch.setattr(cf, "CHUNK_FLOATS", 3 * x.shape[1])  # 3 users per chunk
    ids, scores = model.recommend(users, x, n=10)
    assert max(s[0] for s in shapes) == 3 and len(shapes) == -(-x.shape[0] // 3)
    np.testing.assert_array_equal(ids, full_ids)
    np.testing.assert_array_equal(scores, full_scores)


def test_popularity_scores_are_a_broadcast_view() -> None:
    x = random_interactions()
    model = Popularity().fit(x)
    s = model.score(x)
    assert s.shape == x.shape and s.strides[0] == 0  # one row, no users x items copy
    ids, _ = model.recommend(np.arange(5), x, n=3)
    for u, row in enumerate(ids):
        assert not set(row) & set(x[u].indices)


def test_ease_refuses_a_catalogue_over_the_memory_limit() -> None:
    x = random_interactions()
    model = EASE(l2=5.0)
    model.memory_limit_bytes = ease_bytes(x.shape[1]) - 1
    with pytest.raises(ModelTooLargeError, match=r"ease: .*GiB, over the limit of") as e:
        model.fit(x)
    assert isinstance(e.value, MemoryError)
    assert model.n_items == 0  # nothing half-fitted
    model.memory_limit_bytes = ease_bytes(x.shape[1])
    assert model.fit(x).B.shape == (80, 80)


def test_other_models_refuse_over_their_limit() -> None:
    x = random_interactions()
    order = sp.csr_matrix(x.multiply(np.arange(1, 81, dtype=np.float32)))
    for model, data in ((ItemKNN(5), x), (Transitions(3), order), (ALS(8, iterations=2), x)):
        model.memory_limit_bytes = 100
        with pytest.raises(ModelTooLargeError, match=model.kind):
            model.fit(data)


def test_a_million_items_are_refused_for_ease_without_allocating() -> None:
    # 1M items: EASE needs ~29 TB; the check runs before any array is built
    x = sp.csr_matrix((3, 1_000_000), dtype=np.float32)
    with pytest.raises(ModelTooLargeError, match="1,000,000 x 1,000,000"):
        EASE().fit(x)


def test_choose_cf_model() -> None:
    kind, why = choose_cf_model(1_682)
    assert kind == "ease" and "ease_max_items" in why
    kind, why = choose_cf_model(100_000)
    assert kind == "als" and "100,000 items > ease_max_items" in why
    kind, why = choose_cf_model(4_000, memory_limit_bytes=10**6)
    assert kind == "als" and "over" in why
    assert choose_cf_model(10**6, cf_model="ease")[0] == "ease"  # explicit: fit will refuse
    with pytest.raises(ValueError, match="valid: auto, ease, als"):
        choose_cf_model(10, cf_model="svd")


@pytest.mark.parametrize("model", [ALS(4, 0.1, 10.0, 15), BPR(2, iterations=300)])
def test_factor_models_recommend_own_group(model: ItemScorer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = two_groups()
    model.fit(x)
    ids, scores = model.recommend(np.arange(x.shape[0]), x, n=2)
    hits = (ids % 2 == (np.arange(x.shape[0]) % 2)[:, None]).mean()
    assert hits >= 0.9, hits
    for u, row in enumerate(ids):
        assert not set(row) & set(x[u].indices)
    path = tmp_path / f"{model.kind}.npz"
    model.save(path)
    loaded = ItemScorer.load(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.score(x[:4]), model.score(x[:4]), rtol=1e-5, atol=1e-6)


def test_als_fold_in_matches_implicit_recalculate_user() -> None:
    import implicit.cpu.als

    x = random_interactions()
    ours = ALS(12, 0.1, 5.0, 10, random_state=3).fit(x)
    ref = implicit.cpu.als.AlternatingLeastSquares(
        factors=12, regularization=0.1, alpha=5.0, iterations=10, random_state=3
    )
    ref.fit(x, show_progress=False)
    np.testing.assert_allclose(ours.item_factors, ref.item_factors)
    rows = np.arange(10)
    np.testing.assert_allclose(
        ours.user_vectors(x[rows]), ref.recalculate_user(rows, x[rows]), rtol=1e-3, atol=1e-4
    )


def _frame(x: sp.csr_matrix) -> tuple[pd.DataFrame, list[str]]:
    coo = sp.coo_matrix(x)
    df = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in coo.row],
            "item_id": [f"i{i}" for i in coo.col],
            "timestamp": np.arange(coo.nnz) + 1_000,
        }
    )
    return df, [f"i{i}" for i in range(x.shape[1])]


def test_generator_switches_to_als_above_ease_max_items(caplog) -> None:  # type: ignore[no-untyped-def]
    x = two_groups()
    df, ids = _frame(x)
    vecs = np.eye(len(ids), 8, dtype=np.float32) + 0.1
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = NumpyIndex({"text": (ids, vecs)})
    cfg = HybridConfig(ease_max_items=10, mf_factors=8)
    with caplog.at_level(logging.INFO, logger="retrieval.factors"):
        gen = CandidateGenerator(index, config=cfg).fit(df, ids)
    assert "als" in gen.models and "ease" not in gen.models
    assert "20 items > ease_max_items = 10" in caplog.text
    user0 = df[df.user_id == "u0"]
    cands = gen.generate(History(user0.item_id.tolist(), None, user0.timestamp.tolist()), n=5)
    assert cands and all("als" in c.sources for c in cands)
    assert sum(int(c.item_id[1:]) % 2 == 0 for c in cands[:3]) >= 2


def test_generator_with_a_chosen_model_too_big_raises() -> None:
    x = two_groups()
    df, ids = _frame(x)
    index = NumpyIndex({"text": (ids, np.eye(len(ids), 4, dtype=np.float32) + 0.1)})
    cfg = HybridConfig(cf_model="ease", cf_memory_gb=1e-6)
    with pytest.raises(ModelTooLargeError, match="ease"):
        CandidateGenerator(index, config=cfg).fit(df, ids)
    with pytest.raises(ValueError, match="valid"):
        CandidateGenerator(index, config=HybridConfig(cf_model="svd")).fit(df, ids)
