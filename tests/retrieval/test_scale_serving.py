"""Per-request cost at 1M items, round 3 (docs/scale.md): ItemKNN rows capped, the merge in
cache-sized blocks with parts for the top n only, and an HNSW search_ef that grows with the
collection. Each keeps small catalogues (ML-100K) bit-identical."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from retrieval import fusion
from retrieval.candidates import CandidateGenerator, HybridConfig
from retrieval.cf import ItemKNN, ItemScorer, cap_rows, top_k
from retrieval.config import FusionrecConfig
from retrieval.errors import StoreError
from retrieval.fusion import merge_scores, merge_top, normalise
from retrieval.numpy_index import NumpyIndex
from retrieval.profiles import History
from retrieval.store import HNSW_SEARCH_EF, VectorStore, auto_search_ef

# ---------------------------------------------------------------- ItemKNN row cap


def hub_interactions(n_users: int = 200, n_items: int = 60, seed: int = 0) -> sp.csr_matrix:
    """Item 0 is in every history (a hub: a neighbour of every target); items 1 and 2 always
    come together; the rest are random."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        items = {0, *rng.choice(np.arange(3, n_items), size=int(rng.integers(2, 8)), replace=False)}
        if u % 3 == 0:
            items |= {1, 2}
        rows += [u] * len(items)
        cols += sorted(items)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


def test_cap_rows_keeps_each_rows_strongest_entries() -> None:
    m = sp.csr_matrix(
        np.array(
            [[0, 0.5, 0.75, 0.5, 0.1], [0.25, 0, 0, 0, 0], [0.125, 0.125, 0.125, 0, 0]],
            np.float32,
        )
    )
    capped = cap_rows(m, 2).toarray()
    # row 0: 0.75 and the first of the tied 0.5s; row 1 untouched; row 2: the lower columns
    assert capped.tolist() == [
        [0.0, 0.5, 0.75, 0.0, 0.0],
        [0.25, 0.0, 0.0, 0.0, 0.0],
        [0.125, 0.125, 0.0, 0.0, 0.0],
    ]
    assert np.array_equal(cap_rows(m, 4).toarray(), m.toarray())


def test_capped_itemknn_bounds_rows_and_still_ranks_the_co_occurring_item_first() -> None:
    x = hub_interactions()
    full = ItemKNN(k=20, shrink=1.0).fit(x)
    capped = ItemKNN(k=20, shrink=1.0, max_row=5).fit(x)
    lens = np.diff(capped.W.indptr)
    assert np.diff(full.W.indptr)[0] > 5 and lens.max() <= 5  # the hub's row was long
    # every kept entry is one of the full row's entries, at the same value
    kept = capped.W.toarray()
    assert np.array_equal(full.W.toarray()[kept > 0], kept[kept > 0])
    # a user who had item 1 is sent to item 2, its constant companion, capped or not
    user = sp.csr_matrix(([1.0], ([0], [1])), shape=(1, x.shape[1]), dtype=np.float32)
    for model in (full, capped):
        ids, _ = model.recommend(0, user, n=1)
        assert ids.tolist() == [2]


def test_a_cap_above_every_row_changes_nothing(tmp_path: Path) -> None:
    """Why ML-100K (1,682 items, cap 2,000) is bit-identical: no row can be longer."""
    x = hub_interactions()
    full = ItemKNN(k=20, shrink=1.0).fit(x)
    capped = ItemKNN(k=20, shrink=1.0, max_row=x.shape[1] - 1).fit(x)
    assert (full.W != capped.W).nnz == 0 and full.W.nnz == capped.W.nnz
    u = x[:7]
    assert np.array_equal(full.score(u), capped.score(u))
    assert HybridConfig().knn_max_row >= 1682 - 1


def test_max_row_survives_save_and_old_files_load(tmp_path: Path) -> None:
    model = ItemKNN(k=20, shrink=1.0, max_row=5).fit(hub_interactions())
    model.save(tmp_path / "knn.npz")
    back = ItemScorer.load(tmp_path / "knn.npz")
    assert isinstance(back, ItemKNN) and back.max_row == 5 and (back.W != model.W).nnz == 0
    # a file written before max_row existed loads with no cap
    with np.load(tmp_path / "knn.npz") as f:
        old = {k: f[k] for k in f.files if k != "param_max_row"}
    np.savez(tmp_path / "old.npz", **old)
    assert ItemScorer.load(tmp_path / "old.npz").max_row == 0


# ---------------------------------------------------------------- the merge


def reference_merge(raw, seen, weights):  # type: ignore[no-untyped-def]
    """The round-2 `merge_scores`: one whole-row float64 normalise per source."""
    m, n = seen.shape
    merged = np.zeros((m, n))
    contrib = {}
    for name, s in raw.items():
        w = float(weights.get(name, 0.0))
        if w:
            shape = np.broadcast_shapes(np.shape(s), np.shape(seen))
            a = np.array(np.broadcast_to(s, shape), dtype=np.float64)
            a[np.broadcast_to(seen, shape)] = np.nan
            a[np.isinf(a)] = np.nan
            with np.errstate(all="ignore"):
                lo = np.fmin.reduce(a, axis=1, keepdims=True)
                hi = np.fmax.reduce(a, axis=1, keepdims=True)
                a -= lo
                a /= hi - lo
            a[~np.isfinite(a)] = 0.0
            contrib[name] = w * a
            merged += contrib[name]
    merged[seen] = -np.inf
    return merged, contrib


def _cases(rng: np.random.Generator):  # type: ignore[no-untyped-def]
    for n in (1, 2, 7, 40, 301):
        for m in (1, 3):
            raw = {}
            for k, name in enumerate("abcde"):
                a = rng.random((m, n), dtype=np.float32) * 3 - 1
                if k == 1:
                    a = np.round(a * 2) / 2  # ties
                for frac, value in ((0.3, np.nan), (0.05, np.inf), (0.05, -np.inf)):
                    a[rng.random((m, n)) < frac] = value
                raw[name] = a
            raw["c"] = np.full((m, n), 2.0, np.float32)  # constant
            raw["d"] = np.full((m, n), np.nan, np.float32)  # absent
            raw["e"] = np.broadcast_to(raw["a"][:1], (m, n))  # one row for all (popularity)
            weights = {"a": 1.0, "b": 0.3, "c": 0.5, "d": 1.0, "e": -0.2, "f": 1.0}
            for seen in (
                rng.random((m, n)) < 0.2,
                np.zeros((m, n), bool),
                np.ones((m, n), bool),
            ):
                yield raw, seen, weights
                yield raw, seen, {"b": 1.0, "a": 0.0}  # a zero weight is skipped


def test_blocked_merge_is_identical_to_the_whole_row_merge(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    for block in (3, 64, 1 << 16):  # many blocks, some, one
        monkeypatch.setattr(fusion, "BLOCK", block)
        for raw, seen, weights in _cases(rng):
            got, parts = merge_scores(raw, seen, weights)
            want, want_parts = reference_merge(raw, seen, weights)
            assert np.array_equal(got, want)
            assert parts.keys() == want_parts.keys()
            assert all(np.array_equal(parts[k], want_parts[k]) for k in parts)
            for name, s in raw.items():
                ref, _ = reference_merge({name: s}, seen, {name: 1.0})
                ref[seen] = 0.0
                assert np.array_equal(normalise(s, seen), ref)


def test_merge_top_equals_merge_then_top_k(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(6)
    monkeypatch.setattr(fusion, "BLOCK", 16)
    for raw, seen, weights in _cases(rng):
        merged, parts = merge_scores(raw, seen, weights)
        for k in (1, 5, 400):
            ids, _ = top_k(merged, k)
            best = merge_top(raw, seen, weights, k)
            assert np.array_equal(best.ids, ids)
            cols, pad = np.maximum(ids, 0), ids < 0
            want = np.take_along_axis(merged, cols, axis=1)
            assert np.array_equal(best.scores[~pad], want[~pad])
            assert np.all(best.scores[pad] == -np.inf)
            assert best.parts.keys() == parts.keys()
            for name, p in parts.items():
                w = np.take_along_axis(p, cols, axis=1)
                assert np.array_equal(best.parts[name][~pad], w[~pad])
                assert np.all(best.parts[name][pad] == 0.0)


def test_sparse_sources_merge_on_their_few_items_bit_for_bit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """One request on a large catalogue: a source scoring few items adds only those."""
    monkeypatch.setattr(fusion, "SPARSE_MIN_ITEMS", 1)
    monkeypatch.setattr(fusion, "BLOCK", 32)
    rng = np.random.default_rng(8)
    for n in (1, 9, 300, 3000):
        for _ in range(20):
            raw = {"dense": rng.random((1, n), dtype=np.float32) - 0.5}
            few = np.zeros((1, n), np.float32)  # zeros with a few scores (transitions)
            few[0, rng.integers(0, n, max(1, n // 50))] = rng.random(max(1, n // 50))
            pool = np.full((1, n), np.nan, np.float32)  # NaN but a pool (a content search)
            pool[0, rng.integers(0, n, max(1, n // 40))] = rng.random(max(1, n // 40)) - 0.3
            pool[0, rng.integers(0, n, 2)] = [np.inf, -np.inf][: min(2, n)]
            raw |= {"few": few, "pool": pool, "dense2": np.round(raw["dense"] * 4) / 4}
            seen = rng.random((1, n)) < 0.1
            weights = {"dense": 1.0, "few": 0.3, "pool": -0.1, "dense2": 0.05}
            want, _ = reference_merge(raw, seen, weights)
            got, _, _ = fusion._merge(raw, seen, weights, keep_parts=False)
            assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))
            best = merge_top(raw, seen, weights, 10)
            assert np.array_equal(best.ids, top_k(want, 10)[0])


def test_merging_in_two_threads_is_bit_identical(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """One request on a large catalogue, merged and cut in two column halves at once: the
    same ids, scores and parts as one thread (sources summed in the same order)."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(fusion, "SPARSE_MIN_ITEMS", 1)
    monkeypatch.setattr(fusion, "BLOCK", 32)
    rng = np.random.default_rng(9)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for n in (100, 129, 1000, 5000):  # under 4 blocks (one thread) and over
            for _ in range(10):
                dense = rng.random((1, n), dtype=np.float32) - 0.5  # no ties at the cut
                few = np.zeros((1, n), np.float32)
                few[0, rng.integers(0, n, max(1, n // 50))] = rng.random(max(1, n // 50))
                part = np.full((1, n), np.nan, np.float32)
                part[0, rng.integers(0, n, max(1, n // 40))] = rng.random(max(1, n // 40))
                raw = {"dense": dense, "few": few, "pool": part}
                seen = rng.random((1, n)) < 0.1
                weights = {"dense": 1.0, "few": 0.3, "pool": 0.7}
                for k in (1, 10, n + 5):
                    one = merge_top(raw, seen, weights, k)
                    two = merge_top(raw, seen, weights, k, pool=pool)
                    assert np.array_equal(one.ids, two.ids), (n, k)
                    assert np.array_equal(one.scores, two.scores)
                    for name, p in one.parts.items():
                        assert np.array_equal(p, two.parts[name])


def test_one_requests_ranges_skip_seen_extremes_and_inf(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The quick min/max of one row gives way to the masked one whenever they could differ."""
    monkeypatch.setattr(fusion, "SPARSE_MIN_ITEMS", 1)
    row = np.array([[0.5, 0.1, 0.9, 0.1, 0.3]], np.float32)
    for seen_at, want in (
        ([], (0.1, 0.9)),
        ([2], (0.1, 0.5)),  # the only max is seen
        ([1], (0.1, 0.9)),  # a seen min tied with an unseen one
        ([1, 3], (0.3, 0.9)),  # both mins seen
    ):
        seen = np.zeros((1, 5), bool)
        seen[0, seen_at] = True
        lo, hi, has_inf = fusion._ranges(row, seen)
        assert (lo[0, 0], hi[0, 0]) == tuple(float(np.float32(v)) for v in want)
        assert not has_inf
    inf = row.copy()
    inf[0, 4] = np.inf
    lo, hi, has_inf = fusion._ranges(inf, np.zeros((1, 5), bool))
    assert has_inf and hi[0, 0] == np.float32(0.9)
    lo, hi, _ = fusion._ranges(np.full((1, 5), np.nan, np.float32), np.zeros((1, 5), bool))
    assert np.isnan(lo[0, 0]) and np.isnan(hi[0, 0])


def test_sparse_rows_dot_equals_scipy_bit_for_bit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from retrieval import cf

    rng = np.random.default_rng(9)
    m = sp.random(300, 300, density=0.05, format="csr", dtype=np.float32, random_state=1)
    m.data = (m.data * 10).astype(np.float32)  # values whose float32 sums round
    for rows in (1, 3):
        ui = sp.random(rows, 300, density=0.1, format="csr", dtype=np.float32, random_state=2)
        ui.data = np.exp2(-rng.random(ui.nnz) * 10).astype(np.float32)  # recency weights
        want = np.asarray((ui @ m).toarray(), np.float32)
        monkeypatch.setattr(cf, "DENSE_DOT_MIN_ITEMS", 0)
        got = cf.sparse_rows_dot(ui, m)
        assert got.dtype == np.float32 and np.array_equal(got, want)
        monkeypatch.setattr(cf, "DENSE_DOT_MIN_ITEMS", 10**9)  # scipy's path: the same
        assert np.array_equal(cf.sparse_rows_dot(ui, m), want)


def test_generate_reports_the_merge_scores_and_parts() -> None:
    rng = np.random.default_rng(2)
    ids = [f"i{i}" for i in range(30)]
    v = rng.standard_normal((30, 8)).astype(np.float32)
    index = NumpyIndex({"text": (ids, v / np.linalg.norm(v, axis=1)[:, None])})
    rows = []
    for u in range(40):
        for k, i in enumerate(rng.choice(30, size=6, replace=False)):
            rows.append({"user_id": u, "item_id": f"i{i}", "timestamp": 86400 * (u + k)})
    df = pd.DataFrame(rows)
    gen = CandidateGenerator(index, config=HybridConfig(knn_k=5)).fit(df, ids)
    h = History(["i3", "i5", "i7"], None, [86400 * 2, 86400 * 4, 86400 * 6])
    cands = gen.generate(h, n=10)
    raw = gen.score_sources([h])
    merged, parts = merge_scores(raw, gen.seen_mask([h]), dict(gen.config.weights))
    order, _ = top_k(merged, 10)
    assert [c.item_id for c in cands] == [ids[j] for j in order[0]]
    for c in cands:
        j = ids.index(c.item_id)
        assert c.score == merged[0, j]
        assert c.contributions == {k: p[0, j] for k, p in parts.items() if p[0, j] != 0.0}


def test_sources_scored_in_threads_give_the_same_list_and_timings() -> None:
    """A large catalogue scores its sources in two threads: same scores, same order of
    sources (the merge adds them in that order), same candidates, a time per source."""
    import dataclasses

    rng = np.random.default_rng(3)
    ids = [f"i{i}" for i in range(60)]
    v = rng.standard_normal((60, 8)).astype(np.float32)
    index = NumpyIndex({"text": (ids, v / np.linalg.norm(v, axis=1)[:, None])})
    rows = [
        {"user_id": u, "item_id": f"i{i}", "timestamp": 86400 * (u + k)}
        for u in range(50)
        for k, i in enumerate(rng.choice(60, size=8, replace=False))
    ]
    serial = CandidateGenerator(index, config=HybridConfig(knn_k=5)).fit(pd.DataFrame(rows), ids)
    threaded = serial.with_index(index)
    threaded.config = dataclasses.replace(serial.config, parallel_min_items=0)
    h = History(["i3", "i5", "i7", "i9"], None, [86400 * k for k in (2, 4, 6, 8)])
    a = serial.score_sources([h])
    timings: dict[str, float] = {}
    b = threaded.score_sources([h], timings=timings)
    assert list(a) == list(b) and set(timings) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert [(c.item_id, c.score) for c in serial.generate(h, n=10)] == [
        (c.item_id, c.score) for c in threaded.generate(h, n=10)
    ]


# ---------------------------------------------------------------- HNSW search_ef "auto"


def test_auto_search_ef_grows_with_size() -> None:
    sizes = [0, 10_000, 100_000, 100_001, 300_000, 1_000_000, 3_000_000, 10**8]
    efs = [auto_search_ef(n) for n in sizes]
    assert efs[:3] == [HNSW_SEARCH_EF] * 3  # 0.99 recall@50 up to 100k: unchanged there
    assert efs == sorted(efs) and efs[3] > HNSW_SEARCH_EF
    assert efs[5] == 3072  # the measured 1M point (docs/scale.md round 3)
    assert all(e % 64 == 0 for e in efs) and efs[-1] == 8192  # capped


def test_auto_search_ef_is_applied_to_an_existing_collection(
    tmp_path: Path, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    from retrieval import store as store_mod

    # a small stand-in for "past 100k items": the threshold is moved, not the data
    monkeypatch.setattr(store_mod, "AUTO_EF_BASE_ITEMS", 10)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((50, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = [f"i{i}" for i in range(50)]
    store = VectorStore.open(tmp_path, search_ef=256)
    store.upsert("text", ids, v, [{}] * 50)
    assert store.collection("text").configuration["hnsw"]["ef_search"] == 256
    cfg = FusionrecConfig.from_dict({"store": {"path": str(tmp_path)}})
    assert cfg.store.search_ef == "auto"
    with caplog.at_level(logging.INFO, logger="retrieval.store"):
        again = VectorStore.from_config(cfg)
        col = again.collection("text")
    want = store_mod.auto_search_ef(50)
    assert want > 256 and col.configuration["hnsw"]["ef_search"] == want
    assert "search_ef 256 -> " in caplog.text and "next process" in caplog.text
    hits = again.query("text", v[:1], n=5)[0]
    assert hits[0].id == "i0"  # still answers
    # an ingest that grows an "auto" store leaves the ef for its new size
    grown = VectorStore.open(tmp_path / "grown")
    grown.upsert("text", ids[:5], v[:5], [{}] * 5)
    assert grown.collection("text").configuration["hnsw"]["ef_search"] == 256  # 5 <= 10
    grown.upsert("text", ids, v, [{}] * 50)
    assert grown.collection("text").configuration["hnsw"]["ef_search"] == want


def test_auto_keeps_256_for_small_collections_and_bad_values_are_refused(tmp_path: Path) -> None:
    store = VectorStore.open(tmp_path / "a")  # "auto" is the default
    col = store.collection("text")
    assert col.metadata["hnsw:search_ef"] == 256
    assert col.configuration["hnsw"]["ef_search"] == 256
    for bad in ("fast", 0, -5, 2.5):
        with pytest.raises(StoreError, match="search_ef"):
            VectorStore.open(tmp_path / "b", search_ef=bad)  # type: ignore[arg-type]


def test_a_profile_reads_vectors_without_metadata(tmp_path: Path) -> None:
    """Profiles need only vectors: the store is asked for no metadata (half a 1M request's
    profile time), and the profile equals the one built from a metadata read."""
    from retrieval.profiles import History, build_profile

    store = VectorStore.open(tmp_path / "p")
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(4, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store.upsert("text", ["a", "b", "c", "d"], vecs, [{"title": t} for t in "ABCD"])
    ids, got, metas = store.get("text", ["b", "a"], include_metadata=False)
    assert sorted(ids) == ["a", "b"] and metas == [{}, {}] and got.shape == (2, 8)
    assert store.get("text", ["a"])[2][0]["title"] == "A"  # the default still reads it
    calls: list[dict] = []
    real = store.get

    def spy(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(k)
        return real(*a, **k)

    store.get = spy  # type: ignore[method-assign]
    profile = build_profile(History(["a", "b"]), store, half_life=None, like_threshold=None)["text"]
    assert calls and all(k.get("include_metadata") is False for k in calls)
    expected = vecs[0] + vecs[1]
    np.testing.assert_allclose(profile, expected / np.linalg.norm(expected), rtol=1e-5)
