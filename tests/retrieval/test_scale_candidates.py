"""Per-request cost of candidate generation (docs/scale.md): popularity counted once per fit,
bit-identical to a full recount; the Chroma content path asks for ids and distances only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrieval import cf
from retrieval.candidates import CandidateGenerator, HybridConfig
from retrieval.cf import DecayedPopularity, time_decayed_popularity
from retrieval.numpy_index import NumpyIndex
from retrieval.profiles import History


def recount(items: np.ndarray, times: np.ndarray, at: np.ndarray, n: int, hl_days: float):
    """The original per-request recount: a bincount over every interaction up to each time."""
    order = np.argsort(times, kind="stable")
    t, it = times[order].astype(np.float64), items[order]
    hl = hl_days * 86400.0
    t_ref = float(t.max())
    w = np.exp2((t - t_ref) / hl)
    out = np.zeros((len(at), n), np.float32)
    for q, a in enumerate(np.asarray(at, dtype=np.float64)):
        end = np.searchsorted(t, a, side="right")
        out[q] = np.bincount(it[:end], weights=w[:end], minlength=n) * np.exp2((t_ref - a) / hl)
    return out


def random_log(m: int = 5000, n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = rng.integers(n, size=m)
    times = rng.integers(0, 200, size=m) * 3600 * 7  # many equal times
    return items, times


@pytest.mark.parametrize("min_step", [1, 7, 1 << 16])
def test_snapshots_are_bit_identical_to_a_recount(min_step: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cf, "POP_MIN_STEP", min_step)
    items, times = random_log()
    at = np.r_[-1, 0, np.unique(times)[::7], times.max(), times.max() + 86400 * 30]
    pop = DecayedPopularity(items, times, 40, half_life_days=3.0, snapshot_bytes=8 * 40 * 50)
    assert len(pop.snapshots) == (2 if min_step > len(items) else 50)
    got = pop.at(at)
    want = recount(items, times, at, 40, 3.0)
    assert np.array_equal(got, want)  # the same float64 sums, not merely close
    assert np.array_equal(time_decayed_popularity(items, times, at, 40, half_life_days=3.0), want)
    assert pop.latest == times.max()
    assert not got[0].any()  # before the first interaction nothing is popular


def test_empty_log() -> None:
    pop = DecayedPopularity(np.zeros(0, np.int64), np.zeros(0, np.int64), 3)
    assert pop.at(np.array([0, 10])).shape == (2, 3) and pop.latest == 0


def _log() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for u in range(30):
        for k, i in enumerate(rng.choice(20, size=6, replace=False)):
            rows.append({"user_id": u, "item_id": f"i{i}", "timestamp": 86400 * (u + k)})
    return pd.DataFrame(rows).sort_values(["user_id", "timestamp"], kind="stable")


def _index(n: int = 20, dim: int = 8) -> NumpyIndex:
    rng = np.random.default_rng(2)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return NumpyIndex(
        {"text": ([f"i{i}" for i in range(n)], v / np.linalg.norm(v, axis=1)[:, None])}
    )


def test_generator_counts_popularity_once_per_fit_and_half_life() -> None:
    df = _log()
    ids = [f"i{i}" for i in range(20)]
    gen = CandidateGenerator(_index(), config=HybridConfig(knn_k=5)).fit(df, ids)
    pop = gen._popularity
    hists = [History(["i1", "i2"], None, [86400 * 3, 86400 * 9]), History()]
    raw = gen.score_sources(hists)["popularity"]
    assert gen._popularity is pop  # not rebuilt per request
    items = df["item_id"].map({i: k for k, i in enumerate(ids)}).to_numpy()
    times = df["timestamp"].to_numpy()
    at = np.array([86400 * 9, times.max()])
    assert np.array_equal(raw, recount(items, times, at, 20, gen.config.pop_half_life_days))
    # a copy with another half-life (as a chat turn makes) gets its own counts
    other = gen.with_index(gen.index)
    other.config = dataclasses.replace(gen.config, pop_half_life_days=1.0)
    raw1 = other.score_sources(hists)["popularity"]
    assert np.array_equal(raw1, recount(items, times, at, 20, 1.0))
    assert gen.score_sources(hists)["popularity"].tolist() == raw.tolist()


def test_chroma_content_source_matches_exact_without_metadata(tmp_path: Path) -> None:
    from retrieval.store import VectorStore

    index = _index()
    ids, vecs, _ = index.get("text")
    store = VectorStore.open(tmp_path / "store")
    store.upsert("text", ids, vecs, [{"title": i.upper()} for i in ids])
    bare = store.query("text", vecs[:2], n=5, exclude_ids=["i0"], include_metadata=False)
    full = store.query("text", vecs[:2], n=5, exclude_ids=["i0"])
    assert [[h.id for h in r] for r in bare] == [[h.id for h in r] for r in full]
    assert all(h.metadata == {} for r in bare for h in r)
    assert full[1][0].metadata["title"] == full[1][0].id.upper()
    assert "i0" not in {h.id for r in bare for h in r} and len(bare[0]) == 5
    df = _log()
    cfg = HybridConfig(knn_k=5, content_pool=20)  # the whole catalogue: both see every item
    a = CandidateGenerator(store, config=cfg).fit(df, ids)
    b = CandidateGenerator(index, config=cfg).fit(df, ids)
    h = History(["i3", "i5", "i7"], None, [86400 * 2, 86400 * 4, 86400 * 6])
    sa, sb = a.score_sources([h])["content-text"], b.score_sources([h])["content-text"]
    seen = np.isin(ids, h.item_ids)
    assert np.allclose(sa[0, ~seen], sb[0, ~seen], atol=1e-5)
    assert [c.item_id for c in a.generate(h, n=8)] == [c.item_id for c in b.generate(h, n=8)]


def reference_normalise(scores: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The original `fusion.normalise` (temporaries per step), kept to pin the faster one."""
    import warnings

    s = np.where(seen, np.nan, scores.astype(np.float64))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanmin(np.where(np.isfinite(s), s, np.nan), axis=1, keepdims=True)
        hi = np.nanmax(np.where(np.isfinite(s), s, np.nan), axis=1, keepdims=True)
        out = (s - lo) / (hi - lo)
    return np.nan_to_num(np.where(np.isfinite(out), out, 0.0), nan=0.0)


def test_normalise_is_identical_to_the_original() -> None:
    import warnings

    from retrieval.fusion import normalise

    rng = np.random.default_rng(3)
    cases = []
    for n in (1, 2, 7, 500):
        for m in (1, 3):
            a = rng.random((m, n), dtype=np.float32) * 3 - 1
            seen = rng.random((m, n)) < 0.2
            for frac, value in ((0.2, np.nan), (0.05, np.inf), (0.05, -np.inf)):
                a[rng.random((m, n)) < frac] = value
            cases += [
                (a, seen),
                (np.round(a * 2) / 2, seen),  # ties
                (np.full((m, n), np.nan, np.float32), seen),  # source absent
                (np.full((m, n), 2.0, np.float32), seen),  # constant
                (a, np.ones((m, n), bool)),  # everything seen
                (np.broadcast_to(a[:1], (m, n)), seen),  # a read-only broadcast (Popularity)
                (a[:1], seen),  # one row for every user
                (a.astype(np.float64), seen[:1]),
            ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning escapes
        for a, seen in cases:
            before = a.copy()
            got, want = normalise(a, seen), reference_normalise(a, seen)
            assert got.dtype == want.dtype and np.array_equal(got, want)
            assert np.array_equal(a, before, equal_nan=True)  # the input is left alone


def test_upsert_splits_past_chromas_batch_limit(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from retrieval.store import VectorStore

    store = VectorStore.open(tmp_path / "store")
    calls: list[int] = []
    col = store.collection("text")
    real = col.upsert

    def spy(**kw):  # type: ignore[no-untyped-def]
        calls.append(len(kw["ids"]))
        return real(**kw)

    monkeypatch.setattr(col, "upsert", spy)
    monkeypatch.setattr(store, "_max_batch", lambda: 4)
    index = _index()
    ids, vecs, _ = index.get("text")
    store.upsert("text", ids, vecs, [{} for _ in ids])
    assert calls == [4, 4, 4, 4, 4] and store.count("text") == 20
    got_ids, got, metas = store.get("text", ["i7"])
    assert got_ids == ["i7"] and np.allclose(got[0], vecs[7], atol=1e-6) and metas[0]["id"] == "i7"
