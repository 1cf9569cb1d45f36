"""Factors files from external engines: round trip, catalogue order, refusals, Spark fold-in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from retrieval.candidates import CandidateGenerator, HybridConfig, NumpyIndex
from retrieval.factors import FactorScorer, FactorsError, load_factors, save_factors
from retrieval.profiles import History

IDS = [f"item{i}" for i in range(6)]


def group_factors() -> np.ndarray:
    """Two item groups (even / odd) on two axes, with a little noise."""
    rng = np.random.default_rng(0)
    f = np.zeros((6, 3), np.float32)
    f[0::2, 0] = 1.0
    f[1::2, 1] = 1.0
    return f + 0.05 * rng.standard_normal((6, 3)).astype(np.float32)


def write(path, **over) -> None:  # type: ignore[no-untyped-def]
    kw = dict(
        item_ids=IDS,
        item_factors=group_factors(),
        user_ids=["u0", "u1"],
        user_factors=np.ones((2, 3), np.float32),
        engine="test",
        regularization=0.1,
        alpha=5.0,
        confidence="spark",
    )
    kw.update(over)
    save_factors(path, kw.pop("item_ids"), kw.pop("item_factors"), **kw)


def test_round_trip_in_catalogue_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f.npz"
    write(path)
    shuffled = [IDS[i] for i in (3, 1, 5, 0, 2, 4)]
    model = load_factors(path, item_ids=shuffled)
    assert isinstance(model, FactorScorer) and model.n_items == 6
    np.testing.assert_array_equal(model.item_factors, group_factors()[[3, 1, 5, 0, 2, 4]])
    assert model.user_ids == ["u0", "u1"] and model.engine == "test"
    # a history of even items recommends the remaining even item, in the caller's order
    pos = {i: k for k, i in enumerate(shuffled)}
    hist = sp.csr_matrix(
        (np.ones(2, np.float32), ([0, 0], [pos["item0"], pos["item2"]])), shape=(1, 6)
    )
    ids, _ = model.recommend(0, hist, n=1)
    assert shuffled[ids[0]] == "item4"


def test_spark_fold_in_solves_sparks_normal_equations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f.npz"
    write(path)
    model = load_factors(path)
    y = group_factors().astype(np.float64)
    hist = sp.csr_matrix(np.array([[1, 0, 0.5, 0, 0, 2]], np.float32))
    # Spark MLlib implicit ALS: A = YtY + sum c1 y y^T + reg * n I, b = sum (1 + c1) y
    idx, r = hist.indices, hist.data.astype(np.float64)
    c1 = 5.0 * r
    a = y.T @ y + (y[idx].T * c1) @ y[idx] + 0.1 * len(idx) * np.eye(3)
    want = np.linalg.solve(a, y[idx].T @ (1 + c1))
    np.testing.assert_allclose(model.user_vectors(hist)[0], want, rtol=1e-5)
    np.testing.assert_allclose(model.score(hist)[0], y @ want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"item_factors": np.ones((5, 3), np.float32)}, "item_ids for 5 rows"),
        ({"item_factors": np.ones(6, np.float32)}, "2-D float array"),
        ({"user_factors": np.ones((2, 4), np.float32)}, "same number of factors"),
        ({"user_ids": ["u0"]}, "user_ids must name each row"),
        ({"item_ids": IDS[:5] + ["item0"]}, "duplicates"),
        ({"item_factors": np.full((6, 3), np.nan, np.float32)}, "NaN"),
        ({"confidence": "mllib"}, "valid: 'spark', 'implicit'"),
    ],
)
def test_inconsistent_arrays_are_refused(tmp_path, override, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FactorsError, match=message):
        write(tmp_path / "bad.npz", **override)  # refused on write as well as on read
    arrays = {
        "format": np.array("fusionrec-factors/1"),
        "engine": np.array("x"),
        "item_ids": np.array(override.get("item_ids", IDS)),
        "item_factors": np.asarray(override.get("item_factors", group_factors())),
        "user_ids": np.array(override.get("user_ids", ["u0", "u1"])),
        "user_factors": np.asarray(override.get("user_factors", np.ones((2, 3), np.float32))),
        "regularization": np.array(0.1),
        "alpha": np.array(1.0),
        "confidence": np.array(override.get("confidence", "spark")),
    }
    np.savez(tmp_path / "raw.npz", **arrays)
    with pytest.raises(FactorsError, match=message):
        load_factors(tmp_path / "raw.npz")


def test_another_item_set_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f.npz"
    write(path)
    with pytest.raises(FactorsError, match=r"another item set: 6 items in the file, 7 in"):
        load_factors(path, item_ids=IDS + ["item6"])
    with pytest.raises(FactorsError, match=r"1 catalogue items missing \(e.g. \['new'\]\)"):
        load_factors(path, item_ids=IDS[:5] + ["new"])


def test_unreadable_pickled_or_incomplete_files_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FactorsError, match="no factors file"):
        load_factors(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FactorsError, match="not a readable"):
        load_factors(tmp_path / "junk.npz")
    obj = np.empty(6, dtype=object)
    obj[:] = IDS
    np.savez(tmp_path / "pickled.npz", item_ids=obj, item_factors=group_factors())
    with pytest.raises(FactorsError, match="pickled"):
        load_factors(tmp_path / "pickled.npz")
    np.savez(tmp_path / "partial.npz", item_ids=np.array(IDS), item_factors=group_factors())
    with pytest.raises(FactorsError, match=r"missing \['format'"):
        load_factors(tmp_path / "partial.npz")


def test_generator_serves_from_a_factors_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f.npz"
    write(path)
    df = pd.DataFrame(
        {"user_id": ["a", "a", "b"], "item_id": ["item0", "item2", "item1"], "timestamp": [1, 2, 3]}
    )
    index = NumpyIndex({"text": (IDS, np.eye(6, dtype=np.float32))})
    cfg = HybridConfig(cf_model="factors", cf_factors_path=str(path))
    gen = CandidateGenerator(index, config=cfg).fit(df, IDS)
    assert "factors" in gen.models and "ease" not in gen.models
    cands = gen.generate(History(["item0", "item2"], None, [1, 2]), n=3)
    assert cands[0].item_id == "item4" and "factors" in cands[0].sources
    with pytest.raises(FactorsError, match="another item set"):
        CandidateGenerator(index, config=cfg).fit(df, IDS + ["item6"])
    with pytest.raises(FactorsError, match="needs hybrid.cf_factors_path"):
        CandidateGenerator(index, config=HybridConfig(cf_model="factors")).fit(df, IDS)
