"""Spark MLlib ALS in local mode (loopback only) -> factors file -> fusionrec serves from it.

Needs `pip install -r requirements-scale.txt` (pyspark) and a Java 17+ runtime (Debian's
openjdk-17-jre-headless); skipped with the reason otherwise. Slow: a JVM starts.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from retrieval.candidates import CandidateGenerator, HybridConfig, NumpyIndex
from retrieval.factors import FactorScorer, export_spark_als, load_factors
from retrieval.profiles import History

pytestmark = pytest.mark.slow

N_USERS, N_ITEMS = 40, 24
REG, ALPHA, RANK = 0.1, 5.0, 4


@pytest.fixture(scope="module")
def spark():  # type: ignore[no-untyped-def]
    pytest.importorskip("pyspark", reason="pip install -r requirements-scale.txt")
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime: apt-get install openjdk-17-jre-headless")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("fusionrec-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def three_groups() -> sp.csr_matrix:
    """Users of group g (u % 3) like most items of group g (i % 3), never the others."""
    rng = np.random.default_rng(0)
    m = np.zeros((N_USERS, N_ITEMS), np.float32)
    for u in range(N_USERS):
        own = np.arange(u % 3, N_ITEMS, 3)
        m[u, rng.choice(own, size=len(own) - 2, replace=False)] = 1.0
    return sp.csr_matrix(m)


def test_spark_als_factors_are_served(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pyspark.ml.recommendation import ALS

    x = three_groups()
    coo = sp.coo_matrix(x)
    ratings = spark.createDataFrame(
        [(int(u), int(i), float(v)) for u, i, v in zip(coo.row, coo.col, coo.data, strict=True)],
        ["user", "item", "rating"],
    )
    model = ALS(
        rank=RANK,
        maxIter=15,
        regParam=REG,
        alpha=ALPHA,
        implicitPrefs=True,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        seed=0,
    ).fit(ratings)
    item_ids = [f"m{i}" for i in range(N_ITEMS)]
    path = tmp_path / "spark.npz"
    export_spark_als(
        model,
        path,
        item_ids=item_ids,
        user_ids=[f"u{u}" for u in range(N_USERS)],
        regularization=REG,
        alpha=ALPHA,
    )
    served = load_factors(path, item_ids=item_ids)
    assert isinstance(served, FactorScorer) and served.item_factors.shape == (N_ITEMS, RANK)

    # Spark updates users last, from the final item factors: folding a training user's
    # history in must give back Spark's own user vector (same normal equations)
    np.testing.assert_allclose(served.user_vectors(x), served.user_factors, rtol=0.02, atol=2e-3)

    # and the served top-2 is what Spark itself recommends (unseen items only)
    ids, _ = served.recommend(np.arange(N_USERS), x, n=2)
    assert ((ids % 3) == (np.arange(N_USERS) % 3)[:, None]).all()
    spark_top = {
        r["user"]: [rec["item"] for rec in r["recommendations"]]
        for r in model.recommendForAllUsers(N_ITEMS).collect()
    }
    for u in range(N_USERS):
        unseen = [i for i in spark_top[u] if x[u, i] == 0][:2]
        assert set(unseen) == set(ids[u].tolist()), (u, unseen, ids[u])

    # the hybrid generator serves from the file in place of EASE
    rows = [
        (f"u{u}", item_ids[i], k) for k, (u, i) in enumerate(zip(coo.row, coo.col, strict=True))
    ]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    index = NumpyIndex({"text": (item_ids, np.eye(N_ITEMS, dtype=np.float32))})
    cfg = HybridConfig(cf_model="factors", cf_factors_path=str(path))
    gen = CandidateGenerator(index, config=cfg).fit(df, item_ids)
    history = [item_ids[i] for i in x[1].indices]
    cands = gen.generate(History(history, None, list(range(len(history)))), n=2)
    assert [c.item_id for c in cands] and all(int(c.item_id[1:]) % 3 == 1 for c in cands)
    assert all("factors" in c.sources for c in cands)
