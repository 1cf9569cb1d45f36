"""Candidate-generation latency per user, and Chroma HNSW against exact numpy top-k.

Two catalogues in one run:
  - MovieLens-100K (1,682 items, real MiniLM text vectors from the eval cache);
  - synthetic: `--items` (default 100,000) clustered random 384-d unit vectors with
    clustered synthetic interactions.
For each: p50/p99 of `CandidateGenerator.generate(history)` per user with the exact numpy
index and with a Chroma (HNSW) store; p50/p99 of one content query (top-50) in each; the
HNSW/exact latency ratio; and HNSW recall@50 against the exact top-50.

Usage: python -m bench.retrieval [--items 100000] [--users 200] [--out bench/retrieval.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval.candidates import CandidateGenerator, HybridConfig, NumpyIndex  # noqa: E402
from retrieval.profiles import History  # noqa: E402
from retrieval.store import VectorStore  # noqa: E402


def pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
    }


def movielens() -> tuple[list[str], np.ndarray, pd.DataFrame]:
    from evaluation.retrieval import text_vectors
    from retrieval.datasets.movielens import load_movielens
    from retrieval.encoders import create_encoder

    data = load_movielens()
    vecs = text_vectors(data.items, create_encoder("minilm", num_threads=1))
    return [it.id for it in data.items], vecs, data.interactions


def synthetic(
    n_items: int, n_users: int, per_user: int, *, dim: int = 384, seed: int = 0
) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_clusters = 200
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    cluster = rng.integers(n_clusters, size=n_items)
    vecs = centres[cluster] + 0.8 * rng.standard_normal((n_items, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    members = [np.flatnonzero(cluster == c) for c in range(n_clusters)]
    rows = []
    for u in range(n_users):
        pool = np.concatenate([members[c] for c in rng.integers(n_clusters, size=3)])
        pop = rng.zipf(1.5, size=len(pool)).astype(np.float64)
        picks = rng.choice(pool, size=min(per_user, len(pool)), replace=False, p=pop / pop.sum())
        rows += [(f"u{u}", f"s{i}", 4.0, 1_000_000 + 3600 * u + k) for k, i in enumerate(picks)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return [f"s{i}" for i in range(n_items)], vecs.astype(np.float32), inter


def histories(inter: pd.DataFrame, n: int) -> list[History]:
    out = []
    for _, g in list(inter.groupby("user_id", sort=False))[:n]:
        out.append(History(g["item_id"].tolist(), g["rating"].tolist(), g["timestamp"].tolist()))
    return out


def bench(
    name: str, ids: list[str], vecs: np.ndarray, inter: pd.DataFrame, n_users: int, store_dir: Path
) -> dict:
    print(f"[{name}] {len(ids):,} items, {len(inter):,} interactions", flush=True)
    cfg = HybridConfig()
    exact = NumpyIndex({"text": (ids, vecs)})
    t0 = time.perf_counter()
    store = VectorStore.open(store_dir / name)
    for a in range(0, len(ids), 5000):
        store.upsert("text", ids[a : a + 5000], vecs[a : a + 5000], [{} for _ in ids[a : a + 5000]])
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gens = {"exact": CandidateGenerator(exact, config=cfg).fit(inter, ids)}
    fit_s = time.perf_counter() - t0
    gens["hnsw"] = gens["exact"].with_index(store)
    hs = histories(inter, n_users)
    res: dict = {
        "items": len(ids),
        "interactions": len(inter),
        "users_timed": len(hs),
        "chroma_ingest_s": round(ingest_s, 1),
        "fit_s": round(fit_s, 1),
    }
    for kind, gen in gens.items():
        gen.generate(hs[0])  # warm-up
        lat = []
        for h in hs:
            t = time.perf_counter()
            gen.generate(h, n=50)
            lat.append(time.perf_counter() - t)
        res[f"generate_{kind}"] = pct(lat)
    # content query alone: exact numpy top-50 vs HNSW top-50 on the same profile vectors
    rng = np.random.default_rng(1)
    q = vecs[rng.integers(len(ids), size=(len(hs), 3))].sum(1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    lat_e, lat_h, recall = [], [], []
    for v in q:
        t = time.perf_counter()
        ex = exact.query("text", v[None], n=50)[0]
        lat_e.append(time.perf_counter() - t)
        t = time.perf_counter()
        hn = store.query("text", v[None], n=50)[0]
        lat_h.append(time.perf_counter() - t)
        recall.append(len({h.id for h in ex} & {h.id for h in hn}) / 50)
    res["query_exact_numpy"] = pct(lat_e)
    res["query_chroma_hnsw"] = pct(lat_h)
    res["hnsw_over_exact_p50_ratio"] = round(
        res["query_chroma_hnsw"]["p50_ms"] / res["query_exact_numpy"]["p50_ms"], 2
    )
    res["hnsw_recall@50_vs_exact"] = round(float(np.mean(recall)), 4)
    print(json.dumps(res, indent=1), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000, help="synthetic catalogue size")
    ap.add_argument("--synthetic-users", type=int, default=5_000, help="synthetic users")
    ap.add_argument("--per-user", type=int, default=30, help="synthetic interactions per user")
    ap.add_argument("--users", type=int, default=200, help="users timed per catalogue")
    ap.add_argument("--out", default="bench/retrieval.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        report["ml-100k"] = bench("ml-100k", *movielens(), args.users, Path(tmp))
        report[f"synthetic-{args.items}"] = bench(
            f"synthetic-{args.items}",
            *synthetic(args.items, args.synthetic_users, args.per_user),
            args.users,
            Path(tmp),
        )
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
