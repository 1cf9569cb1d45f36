"""How cost grows with catalogue size: 10k / 100k / 1M items, 10 interactions per item.

Parts, each size of each part in its own subprocess (peak RSS = that process's ru_maxrss):
  - `cf`: fit seconds, peak RSS and top-50 serve p50/p99 per collaborative model on
    synthetic interactions with power-law item popularity and user activity (10M at 1M
    items). EASE above its memory limit is refused with `ModelTooLargeError`; the message
    is recorded.
  - `vectors`: clustered random 384-d unit vectors (real MiniLM only at 10k, see `encode`):
    exact numpy top-50 p50/p99; Chroma ingest items/s through `VectorStore.upsert` and
    store size on disk; HNSW top-50 p50/p99 and recall@50 against exact at each `--efs` and
    at the ef `search_ef = "auto"` picks for the size (retrieval/store.py), also for the
    generator's pool query (content_pool hits past 20 excluded ids).
  - `encode`: 10k synthetic item texts through the packaged MiniLM: items/s, extrapolated
    to 1M; HNSW recall@50 on those real vectors.
  - `generate`: `CandidateGenerator.generate` per user (auto CF choice, exact numpy index vs
    the Chroma store the `vectors` part built).

  - `ingest-batch`: Chroma ingest CPU and bytes written per upsert size (`--batches 32,5000`).
  - `hnsw`: only the ef_search sweep of `vectors`, on the store a `vectors` run left in --work
    (e.g. `--sizes 1000000 --parts hnsw --efs 128,512` after a long build); earlier efs stay
    in the report. The auto ef runs last, so the store keeps it for `generate`.

Usage: python -m bench.scale [--sizes 10000,100000,1000000] [--parts cf,vectors,encode,generate]
       [--models ease,itemknn,als,bpr,transitions] [--out docs/scale.json] [--plot docs/scale.png]
       [--efs 256,512] [--kinds exact,hnsw] [--max-hnsw N]
Results merge into --out, so parts can be (re)run one at a time. Run it nice'd: the CPU is
shared (2 cores, several agents), so timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 384
N_QUERIES = 200
PER_ITEM = 10  # interactions per catalogue item: 10M at 1M items
PER_USER = 20  # mean interactions per user
MODELS = ("ease", "itemknn", "als", "bpr", "transitions")


def pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
    }


def cpu_s() -> float:
    """CPU seconds used by this process so far, all threads (robust to a busy machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_gb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


# ---------------------------------------------------------------- synthetic data


def interactions(n_items: int, *, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """`PER_ITEM x n_items` draws: items ~ (rank+1)^-0.9, users ~ (rank+1)^-0.3.

    Returns (binary, ordered): users x items csr, values 1 and 1-based position in the user's
    history (what `Transitions` fits on). Repeated (user, item) draws are merged.
    """
    rng = np.random.default_rng(seed)
    m = PER_ITEM * n_items
    n_users = max(1, m // PER_USER)
    p_item = (np.arange(n_items) + 1.0) ** -0.9
    p_user = (np.arange(n_users) + 1.0) ** -0.3
    items = rng.choice(n_items, size=m, p=p_item / p_item.sum()).astype(np.int32)
    items = rng.permutation(n_items).astype(np.int32)[items]  # popular ids spread out
    users = rng.choice(n_users, size=m, p=p_user / p_user.sum()).astype(np.int32)
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    _, first = np.unique(users.astype(np.int64) * n_items + items, return_index=True)
    first.sort()  # a repeated (user, item) draw keeps its first position
    users, items = users[first], items[first]
    starts = np.searchsorted(users, np.arange(n_users))
    pos = (np.arange(len(users)) - starts[users] + 1).astype(np.float32)
    shape = (n_users, n_items)
    binary = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    ordered = sp.csr_matrix((pos, (users, items)), shape=shape)
    return binary, ordered


def vectors(n: int, *, seed: int = 0, clusters: int = 1000) -> np.ndarray:
    """`(n, DIM)` float32 unit vectors around random centres (topics), made in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        v = centres[rng.integers(clusters, size=b - a)]
        v += 1.0 * rng.standard_normal((b - a, DIM)).astype(np.float32)
        out[a:b] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def profile_queries(vecs: np.ndarray, *, seed: int = 1) -> np.ndarray:
    """Profile-like queries: the normalised mean of 3 random items (as `build_profile` makes)."""
    rng = np.random.default_rng(seed)
    q = vecs[rng.integers(len(vecs), size=(N_QUERIES, 3))].sum(1)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- children


def child_cf(n_items: int, model_name: str) -> dict[str, Any]:
    from retrieval.cf import EASE, ItemKNN, ModelTooLargeError, Transitions
    from retrieval.config import HybridConfig
    from retrieval.factors import ALS, BPR

    cfg = HybridConfig()
    t0 = time.perf_counter()
    binary, ordered = interactions(n_items)
    res: dict[str, Any] = {
        "users": binary.shape[0],
        "interactions": int(binary.nnz),
        "data_s": round(time.perf_counter() - t0, 1),
        "rss_before_fit_gb": rss_gb(),
    }
    model = {
        "ease": lambda: EASE(cfg.ease_l2),
        "itemknn": lambda: ItemKNN(cfg.knn_k, cfg.knn_shrink, cfg.knn_max_row),
        "als": lambda: ALS(cfg.mf_factors, cfg.mf_regularization, cfg.mf_alpha, cfg.mf_iterations),
        "bpr": lambda: BPR(cfg.mf_factors, cfg.mf_regularization, iterations=4 * cfg.mf_iterations),
        "transitions": lambda: Transitions(
            cfg.trans_window, cfg.trans_step_decay, cfg.trans_smoothing
        ),
    }[model_name]()
    fit_on = ordered if model_name == "transitions" else binary
    res["estimate_gb"] = round(model.estimate_bytes(fit_on) / 2**30, 3)
    t0, c0 = time.perf_counter(), cpu_s()
    try:
        model.fit(fit_on)
    except ModelTooLargeError as e:
        res["refused"] = str(e)
        return res
    res["fit_s"] = round(time.perf_counter() - t0, 2)
    res["fit_cpu_s"] = round(cpu_s() - c0, 2)
    res["peak_rss_gb"] = rss_gb()
    rng = np.random.default_rng(2)
    active = np.flatnonzero(np.diff(binary.indptr) > 0)
    users = rng.choice(active, size=min(N_QUERIES, len(active)), replace=False)
    rows = ordered if model_name == "transitions" else binary
    model.recommend(int(users[0]), rows, n=50)  # warm-up
    lat = []
    for u in users:
        t = time.perf_counter()
        model.recommend(int(u), rows, n=50)
        lat.append(time.perf_counter() - t)
    res["serve_top50"] = pct(lat)
    return res


def _chroma_dir(work: Path, n: int) -> Path:
    return work / f"chroma-{n}"


def child_vectors(n: int, work: Path, max_hnsw: int = 10**9) -> dict[str, Any]:
    """Exact numpy top-50 timing and truth (saved for `child_hnsw`), then the Chroma ingest."""
    from retrieval.numpy_index import NumpyIndex

    t0 = time.perf_counter()
    vecs = vectors(n)
    ids = [f"s{i}" for i in range(n)]
    q = profile_queries(vecs)
    res: dict[str, Any] = {"data_s": round(time.perf_counter() - t0, 1)}
    exact = NumpyIndex({"text": (ids, vecs)})
    exact.query("text", q[:1], n=50)
    lat, truth = [], []
    for v in q:
        t = time.perf_counter()
        hits = exact.query("text", v[None], n=50)[0]
        lat.append(time.perf_counter() - t)
        truth.append([int(h.id[1:]) for h in hits])
    np.savez(work / f"truth-{n}.npz", queries=q, truth=np.array(truth, np.int64))
    res["exact_query_top50"] = pct(lat)
    res["exact_index_gb"] = round(vecs.nbytes / 2**30, 3)
    if n > max_hnsw:
        res["hnsw_skipped"] = f"{n:,} items > --max-hnsw {max_hnsw:,} (HNSW build time; see docs)"
        res["peak_rss_gb"] = rss_gb()
        return res
    res.update(_ingest(n, ids, vecs, _chroma_dir(work, n)))
    res["peak_rss_gb"] = rss_gb()
    return res


def _ingest(n: int, ids: list[str], vecs: np.ndarray, path: Path) -> dict[str, Any]:
    """Ingest into a Chroma store at `path` through `VectorStore.upsert` (reused if complete)."""
    from retrieval.store import VectorStore

    marker = path / "bench-ingest.json"
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(path, ignore_errors=True)
    store = VectorStore.open(path)
    t0, c0 = time.perf_counter(), cpu_s()
    batch = 5000
    for a in range(0, n, batch):
        chunk = ids[a : a + batch]
        store.upsert("text", chunk, vecs[a : a + batch], [{}] * len(chunk))
        if a and a % 100_000 == 0:
            logging.info(
                "ingested %d in %.0f s, %.0f CPU s, load %.1f",
                a,
                time.perf_counter() - t0,
                cpu_s() - c0,
                os.getloadavg()[0],
            )
    s, c = time.perf_counter() - t0, cpu_s() - c0
    res = {
        "chroma_ingest_s": round(s, 1),
        "chroma_ingest_items_per_s": round(n / s, 1),
        "chroma_ingest_cpu_s": round(c, 1),
        "chroma_ingest_items_per_cpu_s": round(n / c, 1),
        "chroma_disk_gb": round(
            sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30, 3
        ),
    }
    marker.write_text(json.dumps(res))
    return res


def child_hnsw(n: int, work: Path, ef: int | None, tag: str = "") -> dict[str, Any]:
    """HNSW top-50 p50/p99 and recall@50 against the saved exact truth, at `ef_search`.

    A fresh process each time: Chroma applies a changed `ef_search` only to an index that this
    process has not loaded yet. `tag` "minilm-" reads the real-text store of `child_encode`.
    """
    from retrieval.config import HybridConfig
    from retrieval.store import HNSW_SEARCH_EF, VectorStore

    f = np.load(work / f"truth-{tag}{n}.npz")
    q, truth = f["queries"], f["truth"]
    prefix = "t" if tag else "s"
    # a fixed ef, set once before anything loads the index: Chroma applies ef_search when a
    # process loads the index, and "auto" counts the vectors first, which loads it
    store = VectorStore.open(work / f"chroma-{tag}{n}", search_ef=ef or HNSW_SEARCH_EF)
    col = store.collection("text")
    if ef is not None:
        col.modify(configuration={"hnsw": {"ef_search": int(ef)}})
    res: dict[str, Any] = {
        "hnsw_config": {
            k: v
            for k, v in (store.collection("text").configuration.get("hnsw") or {}).items()
            if k != "num_threads"
        }
    }
    t = time.perf_counter()
    store.query("text", q[:1], n=50)
    res["first_query_s"] = round(time.perf_counter() - t, 2)  # loads the index from disk
    lat, rec = [], []
    for v, t_ids in zip(q, truth, strict=True):
        t = time.perf_counter()
        hits = store.query("text", v[None], n=50, include_metadata=False)[0]
        lat.append(time.perf_counter() - t)
        rec.append(len({f"{prefix}{i}" for i in t_ids} & {h.id for h in hits}) / 50)
    # ids + distances, as candidate generation asks (metadata: the next figure)
    res["hnsw_query_top50"] = pct(lat)
    res["hnsw_recall@50"] = round(float(np.mean(rec)), 4)
    res["hnsw_query_top50_metadata"] = pct(_timed(lambda v: store.query("text", v[None], n=50), q))
    # what the content source asks: content_pool hits past a 20-item history, no metadata
    pool, seen = HybridConfig().content_pool, [f"{prefix}{i}" for i in range(20)]
    res["content_pool"] = pool
    lat, rec = [], []
    for v, t_ids in zip(q, truth, strict=True):
        t = time.perf_counter()
        hits = store.query("text", v[None], n=pool, exclude_ids=seen, include_metadata=False)[0]
        lat.append(time.perf_counter() - t)
        rec.append(len({f"{prefix}{i}" for i in t_ids} & {h.id for h in hits[:50]}) / 50)
    res["hnsw_query_pool"] = pct(lat)
    # recall@50 of the pool's first 50 hits: ef is max(ef_search, hits asked for) in hnswlib
    res["hnsw_pool_recall@50"] = round(float(np.mean(rec)), 4)
    res["peak_rss_gb"] = rss_gb()
    return res


def _timed(fn: Any, queries: np.ndarray) -> list[float]:
    """Seconds of `fn(q)` for each query."""
    lat = []
    for v in queries:
        t = time.perf_counter()
        fn(v)
        lat.append(time.perf_counter() - t)
    return lat


def child_ingest_batch(n: int, work: Path, batch: int) -> dict[str, Any]:
    """Chroma ingest of `n` vectors in upsert calls of `batch` ids: CPU s and bytes written.

    Why ingest costs what it does: `retrieval/ingest.py` upserts one encoder batch (32) per
    call, the bench 5,000; the write volume shows what HNSW persistence (every
    `sync_threshold` = 1,000 items) adds. A fresh store each time, removed afterwards.
    """
    from retrieval.store import VectorStore

    def written() -> int:
        with open("/proc/self/io") as fh:  # Linux: bytes this process sent to the disk layer
            return int(dict(line.split(": ") for line in fh.read().splitlines())["write_bytes"])

    vecs = vectors(n)
    ids = [f"s{i}" for i in range(n)]
    path = work / f"chroma-batch{batch}-{n}"
    shutil.rmtree(path, ignore_errors=True)
    store = VectorStore.open(path)
    w0, t0, c0 = written(), time.perf_counter(), cpu_s()
    for a in range(0, n, batch):
        store.upsert(
            "text", ids[a : a + batch], vecs[a : a + batch], [{}] * len(ids[a : a + batch])
        )
    s, c = time.perf_counter() - t0, cpu_s() - c0
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    res = {
        "batch": batch,
        "ingest_s": round(s, 1),
        "ingest_cpu_s": round(c, 1),
        "items_per_cpu_s": round(n / c, 1),
        "written_gb": round((written() - w0) / 2**30, 3),
        "store_gb": round(disk / 2**30, 3),
    }
    shutil.rmtree(path, ignore_errors=True)
    return res


def child_encode(n: int, work: Path) -> dict[str, Any]:
    from retrieval.encoders import create_encoder
    from retrieval.numpy_index import NumpyIndex

    rng = np.random.default_rng(3)
    words = (
        "night city love war ocean machine ghost river summer winter crime family space "
        "robot island secret king queen road song dream fire shadow garden storm train "
        "letter mountain dance detective doctor school wolf star empire heart glass"
    ).split()
    genres = "drama comedy thriller horror romance documentary sci-fi western jazz folk".split()
    texts = [
        f"{' '.join(rng.choice(words, 3)).title()} ({1950 + i % 70}). "
        f"{rng.choice(genres)}, {rng.choice(genres)}. A story of "
        f"{' and '.join(rng.choice(words, 4))}."
        for i in range(n)
    ]
    enc = create_encoder("minilm", num_threads=2)
    enc.encode(texts[:32])
    t0, c0 = time.perf_counter(), cpu_s()
    vecs = enc.encode(texts, batch_size=64)
    s, c = time.perf_counter() - t0, cpu_s() - c0
    ids = [f"t{i}" for i in range(n)]
    q = profile_queries(vecs)
    exact = NumpyIndex({"text": (ids, vecs)})
    truth = [[int(h.id[1:]) for h in exact.query("text", v[None], n=50)[0]] for v in q]
    np.savez(work / f"truth-minilm-{n}.npz", queries=q, truth=np.array(truth, np.int64))
    res = {
        "encoder": "minilm (all-MiniLM-L6-v2, packaged)",
        "encode_s": round(s, 1),
        "encode_items_per_s": round(n / s, 1),
        "extrapolated_1m_hours": round(1_000_000 / (n / s) / 3600, 2),
        "encode_cpu_s": round(c, 1),
        "extrapolated_1m_cpu_hours": round(1_000_000 / (n / c) / 3600, 2),
    }
    res.update(_ingest(n, ids, vecs, work / f"chroma-minilm-{n}"))
    return res


def child_generate(n: int, work: Path, kinds: list[str]) -> dict[str, Any]:
    """`CandidateGenerator.generate` p50/p99 for 100 users, per index kind, and per-source ms.

    The users are the first 100 by id, which `interactions` makes the most active (hundreds of
    history items each at 1M): the Chroma path over-fetches content_pool + history hits.
    """
    import pandas as pd

    from retrieval.candidates import CandidateGenerator, HybridConfig
    from retrieval.numpy_index import NumpyIndex
    from retrieval.profiles import History
    from retrieval.store import VectorStore

    binary, ordered = interactions(n)
    coo = sp.coo_matrix(ordered)
    order = np.lexsort((coo.data, coo.row))
    item_ids = np.array([f"s{i}" for i in range(n)])
    df = pd.DataFrame(
        {
            "user_id": coo.row[order],
            "item_id": item_ids[coo.col[order]],
            "timestamp": (1_000_000 + coo.data[order]).astype(np.int64),
        }
    )
    del binary, ordered, coo, order
    indexes: dict[str, Any] = {}
    res: dict[str, Any] = {}
    if "exact" in kinds:
        indexes["exact"] = NumpyIndex({"text": (list(item_ids), vectors(n))})
    path = _chroma_dir(work, n)
    if "hnsw" in kinds and (path / "bench-ingest.json").exists():
        # search_ef "auto" (the default): the ef the store's last ingest or sweep left for its
        # size (a changed ef would serve from the next process: docs/scale.md, round 3)
        store = VectorStore.open(path)
        res["search_ef"] = store.collection("text").configuration["hnsw"]["ef_search"]
        indexes["hnsw"] = store
    if not indexes:
        return {"error": f"no index to time: kinds {kinds}, no store at {path}"}
    first = next(iter(indexes.values()))
    t0, c0 = time.perf_counter(), cpu_s()
    gen = CandidateGenerator(first, config=HybridConfig()).fit(df, list(item_ids))
    res |= {
        "fit_s": round(time.perf_counter() - t0, 1),
        "fit_cpu_s": round(cpu_s() - c0, 1),
        "models": list(gen.models),
        "rss_after_fit_gb": rss_gb(),
    }
    hist = []
    for _, g in list(df.groupby("user_id", sort=False))[: N_QUERIES // 2]:
        hist.append(History(g["item_id"].tolist(), None, g["timestamp"].tolist()))
    del df
    res["history_len_median"] = int(np.median([len(h) for h in hist]))
    for kind, index in indexes.items():
        g = gen.with_index(index)
        g.generate(hist[0])
        lat = []
        for h in hist:
            t = time.perf_counter()
            g.generate(h, n=50)
            lat.append(time.perf_counter() - t)
        res[f"generate_{kind}"] = pct(lat)
        # where the time goes: mean ms per source over the first 20 users; the rest of
        # `generate` (min-max merge, seen mask, top-k, Candidate records) is "merge+top-k"
        timings: dict[str, float] = {}
        total = sources_wall = 0.0
        for h in hist[:20]:
            t = time.perf_counter()
            g.score_sources([h], timings=timings)
            sources_wall += time.perf_counter() - t
            t = time.perf_counter()
            g.generate(h, n=50)
            total += time.perf_counter() - t
        per = {k: round(v / 20 * 1000, 1) for k, v in timings.items()}
        # the sources may run at once (parallel_min_items): their wall time, not their sum
        per["sources (wall)"] = round(sources_wall / 20 * 1000, 1)
        per["merge+top-k"] = round(max(0.0, (total - sources_wall) / 20 * 1000), 1)
        res[f"sources_mean_ms_{kind}"] = per
    res["peak_rss_gb"] = rss_gb()
    return res


# ---------------------------------------------------------------- parent


def run_child(part: str, size: int, model: str | None, work: Path, *extra: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    cmd = [sys.executable, "-m", "bench.scale", "--child", part, "--size", str(size)]
    cmd += ["--work", str(work), "--result", str(out), *extra]
    if model:
        cmd += ["--model", model]
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1])
    res = json.loads(out.read_text()) if out.stat().st_size else {}
    out.unlink()
    # the 1-minute load average before and after (2 cores: above 2, processes wait for a core)
    res["load_avg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    if proc.returncode != 0:
        res["error"] = f"exit status {proc.returncode}" + (
            " (killed: out of memory?)" if proc.returncode < 0 else ""
        )
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--parts", default="cf,vectors,encode,generate")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default="docs/scale.json")
    ap.add_argument("--plot", default="docs/scale.png")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "fusionrec-scale"))
    ap.add_argument("--encode-size", type=int, default=10_000, help="items encoded for real")
    ap.add_argument(
        "--max-hnsw", type=int, default=10**9, help="largest size ingested into Chroma (HNSW)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--ef", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=5000, help=argparse.SUPPRESS)
    ap.add_argument(
        "--batches", default="32,5000", help="upsert sizes the `ingest-batch` part compares"
    )
    ap.add_argument(
        "--efs", default="256,512", help="extra ef_search values to sweep (configured one too)"
    )
    ap.add_argument(
        "--kinds", default="exact,hnsw", help="indexes `generate` times (exact numpy, Chroma HNSW)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        fn = {
            "cf": lambda: child_cf(args.size, args.model),
            "vectors": lambda: child_vectors(args.size, work, args.max_hnsw),
            "encode": lambda: child_encode(args.size, work),
            "generate": lambda: child_generate(args.size, work, args.kinds.split(",")),
            "hnsw": lambda: child_hnsw(args.size, work, args.ef, args.tag),
            "ingest-batch": lambda: child_ingest_batch(args.size, work, args.batch),
        }[args.child]
        Path(args.result).write_text(json.dumps(fn()))
        return 0
    out = Path(args.out)
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("results", {})
    mem_gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    report["machine"] = (
        f"{os.cpu_count()} cores, {mem_gb:.0f} GiB; "
        "shared with other agents while measured (noisy timings)"
    )
    sizes = [int(s) for s in args.sizes.split(",")]
    for part in [p for p in args.parts.split(",") if p]:
        for size in [args.encode_size] if part == "encode" else sizes:
            for model in args.models.split(",") if part == "cf" else [None]:
                key = f"{part}/{size}" + (f"/{model}" if model else "")
                logging.info("--- %s", key)
                if part == "hnsw":  # re-query a store `vectors` built: the sweep only
                    key = f"vectors/{size}"
                    res = report["results"].get(key, {})
                    earlier = res.get("hnsw_sweep", {})
                    res.update(hnsw_sweep(size, work, args.efs, ""))
                    res["hnsw_sweep"] = {**earlier, **res["hnsw_sweep"]}  # keep other efs
                    report["results"][key] = res
                    out.write_text(json.dumps(report, indent=1) + "\n")
                    continue
                if part == "ingest-batch":  # one child per upsert size
                    res = {
                        b: run_child(part, size, None, work, "--batch", b)
                        for b in args.batches.split(",")
                    }
                    report["results"][key] = res
                    out.write_text(json.dumps(report, indent=1) + "\n")
                    logging.info("%s: %s", key, json.dumps(res))
                    continue
                extra: tuple[str, ...] = ()
                if part == "vectors":
                    extra = ("--max-hnsw", str(args.max_hnsw))
                elif part == "generate":
                    extra = ("--kinds", args.kinds)
                res = run_child(part, size, model, work, *extra)
                if part in ("vectors", "encode") and not {"error", "hnsw_skipped"} & set(res):
                    res.update(
                        hnsw_sweep(size, work, args.efs, "minilm-" if part == "encode" else "")
                    )
                logging.info("%s: %s", key, json.dumps(res))
                report["results"][key] = res
                out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    if args.plot:
        plot(report, Path(args.plot))
    return 0


def hnsw_sweep(size: int, work: Path, efs: str, tag: str) -> dict[str, Any]:
    """Query the store at each ef_search, the configured one ("auto" for this size) last."""
    from retrieval.store import auto_search_ef

    conf_ef = auto_search_ef(size)
    sweep = {}
    values = [int(e) for e in efs.split(",") if e and int(e) != conf_ef]
    for ef in [*values, conf_ef]:
        sweep[str(ef)] = run_child("hnsw", size, None, work, "--ef", str(ef), "--tag", tag)
    conf = sweep[str(conf_ef)]
    return {
        "search_ef": conf_ef,
        "hnsw_query_top50": conf.get("hnsw_query_top50"),
        "hnsw_recall@50": conf.get("hnsw_recall@50"),
        "hnsw_pool_recall@50": conf.get("hnsw_pool_recall@50"),
        "hnsw_sweep": sweep,
    }


def table(report: dict[str, Any]) -> str:
    """Markdown tables of the results in `report` (one row per size)."""
    r = report["results"]
    sizes = sorted({int(k.split("/")[1]) for k in r})
    lines = [
        "| model | items | users | interactions | fit s (wall) | fit CPU s | peak RSS GB "
        "| serve top-50 p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in MODELS:
        for n in sizes:
            x = r.get(f"cf/{n}/{m}")
            if not x:
                continue
            if "skipped" in x:
                lines.append(f"| {m} | {n:,} | | | not measured: {x['skipped']} | | | |")
                continue
            if "refused" in x or "error" in x:
                why = "refused: ModelTooLargeError" if "refused" in x else x["error"]
                row = (
                    f"| {m} | {n:,} | {x.get('users', 0):,} | {x.get('interactions', 0):,} "
                    f"| {why} (needs {x.get('estimate_gb', '?')} GB) | | | |"
                )
            else:
                s = x["serve_top50"]
                row = (
                    f"| {m} | {n:,} | {x['users']:,} | {x['interactions']:,} | {x['fit_s']} | "
                    f"{x.get('fit_cpu_s', '')} | {x['peak_rss_gb']} "
                    f"| {s['p50_ms']} / {s['p99_ms']} |"
                )
            lines.append(row)
    lines += [
        "",
        "| items | exact top-50 p50 / p99 ms | HNSW top-50 p50 / p99 ms | HNSW recall@50 | "
        "Chroma ingest items/s | store on disk GB | peak RSS GB |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        x = r.get(f"vectors/{n}")
        if not x or "exact_query_top50" not in x:
            continue
        if "hnsw_skipped" in x:
            e = x["exact_query_top50"]
            lines.append(
                f"| {n:,} | {e['p50_ms']} / {e['p99_ms']} | not measured | | "
                f"not measured | | {x.get('peak_rss_gb')} |"
            )
            continue
        e, h = x["exact_query_top50"], x.get("hnsw_query_top50", {})
        lines.append(
            f"| {n:,} | {e['p50_ms']} / {e['p99_ms']} | {h.get('p50_ms')} / {h.get('p99_ms')} | "
            f"{x.get('hnsw_recall@50')} | {x.get('chroma_ingest_items_per_s')} | "
            f"{x.get('chroma_disk_gb')} | {x.get('peak_rss_gb')} |"
        )
    lines += [
        "",
        "| items | vectors | ef_search | HNSW recall@50 | p50 / p99 ms "
        "| generator's pool: recall@50 | pool p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(k for k in r if k.startswith(("vectors/", "encode/"))):
        kind = "MiniLM text" if key.startswith("encode/") else "clustered random"
        for ef, x in sorted(r[key].get("hnsw_sweep", {}).items(), key=lambda kv: int(kv[0])):
            h, pool = x.get("hnsw_query_top50") or {}, x.get("hnsw_query_pool") or {}
            lines.append(
                f"| {int(key.split('/')[1]):,} | {kind} | {ef} | {x.get('hnsw_recall@50')} "
                f"| {h.get('p50_ms')} / {h.get('p99_ms')} | {x.get('hnsw_pool_recall@50', '')} "
                f"| {pool.get('p50_ms', '')} / {pool.get('p99_ms', '')} |"
            )
    for key in sorted(k for k in r if k.startswith("encode/")):
        x = r[key]
        lines.append(
            f"\nMiniLM encoding of {int(key.split('/')[1]):,} item texts: "
            f"{x.get('encode_items_per_s')} items/s, so 1M items would take "
            f"{x.get('extrapolated_1m_hours')} h at that pace ({x.get('encode_cpu_s')} CPU s: "
            f"{x.get('extrapolated_1m_cpu_hours')} CPU h for 1M); "
            f"Chroma ingest {x.get('chroma_ingest_items_per_s')} items/s."
        )
    batches = [(n, r[f"ingest-batch/{n}"]) for n in sizes if f"ingest-batch/{n}" in r]
    if batches:
        lines += [
            "",
            "| items | ids per upsert | ingest CPU s | items per CPU s | written GB | store GB |",
            "|---|---|---|---|---|---|",
        ]
        for n, per in batches:
            for b, x in per.items():
                lines.append(
                    f"| {n:,} | {b} | {x.get('ingest_cpu_s')} | {x.get('items_per_cpu_s')} "
                    f"| {x.get('written_gb')} | {x.get('store_gb')} |"
                )
    gen = [(n, r.get(f"generate/{n}")) for n in sizes if r.get(f"generate/{n}")]
    if gen:
        lines += [
            "",
            "| items | CF models | generator fit s | generate p50 / p99 ms (exact) | "
            "generate p50 / p99 ms (HNSW) | search_ef | peak RSS GB | load avg |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n, x in gen:
            if "models" not in x:
                lines.append(f"| {n:,} | {x.get('error')} | | | | | | |")
                continue
            e, h = x.get("generate_exact", {}), x.get("generate_hnsw", {})

            def ms(d: dict[str, Any]) -> str:
                return f"{d['p50_ms']} / {d['p99_ms']}" if d else "not run"

            lines.append(
                f"| {n:,} | {', '.join(x['models'])} | {x['fit_s']} | {ms(e)} | {ms(h)} "
                f"| {x.get('search_ef', '')} | {x['peak_rss_gb']} | {x.get('load_avg', '')} |"
            )
        # mean ms per source over 20 users: where the time of `generate` goes
        srcs = [(n, k, x.get(f"sources_mean_ms_{k}")) for n, x in gen for k in ("exact", "hnsw")]
        srcs = [t for t in srcs if t[2]]
        names = list(dict.fromkeys(name for *_, per in srcs for name in per))
        if srcs:
            lines += [
                "",
                "| items | index | " + " | ".join(names) + " |",
                "|---|---|" + "---|" * len(names),
            ]
            for n, k, per in srcs:
                cells = " | ".join(str(per.get(name, "")) for name in names)
                lines.append(f"| {n:,} | {k} | {cells} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Log-log cost against catalogue size: fit seconds, peak RSS, query p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = report["results"]
    sizes = sorted({int(k.split("/")[1]) for k in r})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))

    def series(key_fmt: str, get: Any) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for n in sizes:
            x = r.get(key_fmt.format(n=n))
            try:
                y = get(x) if x else None
            except KeyError:
                y = None
            if y:
                xs.append(n)
                ys.append(y)
        return xs, ys

    for m in MODELS:
        xs, ys = series(f"cf/{{n}}/{m}", lambda x: x.get("fit_cpu_s") or x["fit_s"])
        if xs:
            axes[0].plot(xs, ys, "o-", label=f"fit {m} (CPU s)")
        xs, ys = series(f"cf/{{n}}/{m}", lambda x: x["peak_rss_gb"])
        if xs:
            axes[1].plot(xs, ys, "o-", label=m)
    xs, ys = series("vectors/{n}", lambda x: x["chroma_ingest_s"])
    if xs:
        axes[0].plot(xs, ys, "s--", label="Chroma ingest (wall s, busy CPU)")
    xs, ys = series("vectors/{n}", lambda x: x["chroma_ingest_cpu_s"])
    if xs:
        axes[0].plot(xs, ys, "s-", label="Chroma ingest (CPU s)")
    xs, ys = series("vectors/{n}", lambda x: x["peak_rss_gb"])
    if xs:
        axes[1].plot(xs, ys, "s--", label="vectors: numpy + Chroma")
    xs, ys = series("vectors/{n}", lambda x: x["chroma_disk_gb"])
    if xs:
        axes[1].plot(xs, ys, "s:", label="Chroma on disk")
    for key, label in (("exact_query_top50", "exact numpy"), ("hnsw_query_top50", "Chroma HNSW")):
        xs, ys = series("vectors/{n}", lambda x, k=key: x[k]["p99_ms"])
        if xs:
            axes[2].plot(xs, ys, "o-", label=f"{label} top-50 p99")
    for m in MODELS:
        xs, ys = series(f"cf/{{n}}/{m}", lambda x: x["serve_top50"]["p99_ms"])
        if xs:
            axes[2].plot(xs, ys, ".:", label=f"{m} top-50 p99")
    for kind in ("exact", "hnsw"):
        xs, ys = series("generate/{n}", lambda x, k=kind: x[f"generate_{k}"]["p99_ms"])
        if xs:
            axes[2].plot(xs, ys, "D-", label=f"generate p99 ({kind})")
    axes[2].axhline(100, color="grey", lw=0.8, ls="--")
    titles = ("fit / ingest seconds", "peak RSS / disk GB", "latency p99 ms per user (busy CPU)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("catalogue items (10 interactions per item)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    logging.info("wrote %s", path)


if __name__ == "__main__":
    raise SystemExit(main())
