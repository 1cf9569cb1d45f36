"""Collaborative and sequence-aware item scorers with implicit's API.

Every model follows `implicit`: `fit(user_items)` on a users x items `csr_matrix`,
`recommend(userid, user_items, *, n=10, filter_liked=True, items=None) -> (ids, scores)`,
`save(path)` / `load(path)` as `.npz` with `allow_pickle=False`. `score(user_items)` returns
dense `(n_users, n_items)` float32 scores for a batch of users and is what the hybrid uses.

The values in the `user_items` rows given to `score`/`recommend` are the weights of each
history item: 1 for plain history, or rating/recency weights (see `history_weights`), so
"recency-weighted EASE" is just EASE scored with recency-weighted rows.

Scale (docs/scale.md): every fit first estimates its peak memory and raises
`ModelTooLargeError` (naming the model and the limit) instead of being OOM-killed;
`recommend` scores users in bounded chunks, so no users x items array is ever built;
`choose_cf_model` keeps EASE for small catalogues and switches to matrix factorisation
(`implicit` ALS) where EASE's items^2 memory would not fit.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from retrieval.errors import FusionrecError

logger = logging.getLogger(__name__)

GIB = 2**30
# floats per scoring chunk in `recommend`: 4M float32 = 16 MB, whatever the user count
CHUNK_FLOATS = 1 << 22


class ModelTooLargeError(FusionrecError, MemoryError):
    """A collaborative model would need more memory than allowed for this catalogue."""


def available_memory() -> int:
    """Bytes the kernel can hand out without swapping (MemAvailable), read at call time."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # pragma: no cover


def memory_limit(limit_bytes: int | None = None) -> int:
    """The memory a fit may use: `limit_bytes`, or 80% of what is available right now."""
    return int(limit_bytes) if limit_bytes else int(0.8 * available_memory())


def check_memory(model: str, need: int, limit_bytes: int | None, what: str) -> None:
    """Raise `ModelTooLargeError` when `need` bytes exceed the limit; the message says why."""
    limit = memory_limit(limit_bytes)
    if need > limit:
        raise ModelTooLargeError(
            f"{model}: {what} needs about {need / GIB:.1f} GiB, over the limit of "
            f"{limit / GIB:.1f} GiB (hybrid.cf_memory_gb, or 80% of available memory); "
            "use cf_model = 'auto' or 'als', or a factors file from a distributed engine "
            "(docs/scale.md)"
        )


class ItemScorer:
    """Base class: `score` is implemented by subclasses; the rest is shared."""

    kind: ClassVar[str] = "base"
    _arrays: ClassVar[tuple[str, ...]] = ()
    _params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, random_state: int | None = None) -> None:
        self.random_state = random_state  # kept for API parity; these models are deterministic
        self.n_items = 0
        self.memory_limit_bytes: int | None = None  # None = 80% of available memory at fit

    def fit(self, user_items: sp.csr_matrix) -> ItemScorer:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:  # pragma: no cover - abstract
        """Scores for each row of `user_items`: `(n_rows, n_items)` float32, higher is better."""
        raise NotImplementedError

    def recommend(
        self,
        userid: int | np.ndarray,
        user_items: sp.csr_matrix,
        *,
        n: int = 10,
        filter_liked: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items for one user (or a batch of users).

        Args:
            userid: row index (or array of row indices) into `user_items`.
            user_items: users x items csr; row values are history weights.
            n: how many items to return.
            filter_liked: drop items already in the user's row.
            items: restrict the ranking to these item indices.

        Returns:
            `(ids, scores)`: int64 item indices and float32 scores, best first; `(n,)` for one
            user, `(n_users, n)` for a batch (padded with -1 / -inf when fewer items remain).
        """
        single = np.isscalar(userid)
        rows = np.atleast_1d(np.asarray(userid, dtype=np.int64))
        allowed = None
        if items is not None:
            allowed = np.full(max(self.n_items, user_items.shape[1]), False)
            allowed[np.asarray(items, dtype=np.int64)] = True
        # score a bounded chunk of users at a time: never a dense users x items array
        step = max(1, CHUNK_FLOATS // max(1, user_items.shape[1]))
        ids_out, top_out = [], []
        for a in range(0, len(rows), step):
            sub = user_items[rows[a : a + step]]
            scores = np.array(self.score(sub), dtype=np.float32)  # a writable copy
            if allowed is not None:
                scores[:, ~allowed[: scores.shape[1]]] = -np.inf
            if filter_liked:
                r, c = sub.nonzero()
                scores[r, c] = -np.inf
            ids, top = top_k(scores, n)
            ids_out.append(ids)
            top_out.append(top)
        ids = np.concatenate(ids_out) if ids_out else np.zeros((0, n), np.int64)
        top = np.concatenate(top_out) if top_out else np.zeros((0, n), np.float32)
        if single:
            return ids[0], top[0]
        return ids, top

    def estimate_bytes(self, user_items: sp.csr_matrix) -> int:
        """Peak extra memory `fit` needs for this input, in bytes (0 = small enough to ignore)."""
        return 0

    def _guard(self, user_items: sp.csr_matrix, what: str) -> None:
        check_memory(self.kind, self.estimate_bytes(user_items), self.memory_limit_bytes, what)

    def _check(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        if not sp.issparse(user_items):
            raise TypeError(
                f"user_items must be a scipy.sparse csr_matrix, got {type(user_items).__name__}"
            )
        ui = sp.csr_matrix(user_items, dtype=np.float32)
        if self.n_items and ui.shape[1] != self.n_items:
            raise ValueError(
                f"user_items has {ui.shape[1]} item columns; the model was fit on {self.n_items}"
            )
        return ui

    def save(self, path: str | Path) -> None:
        """Write arrays and parameters to an `.npz` (no pickles)."""
        payload: dict[str, Any] = {"kind": np.array(self.kind), "n_items": np.array(self.n_items)}
        for name in self._params:
            payload[f"param_{name}"] = np.array(getattr(self, name))
        for name in self._arrays:
            value = getattr(self, name)
            if sp.issparse(value):
                value = sp.csr_matrix(value)
                payload[f"{name}__data"] = value.data
                payload[f"{name}__indices"] = value.indices
                payload[f"{name}__indptr"] = value.indptr
                payload[f"{name}__shape"] = np.array(value.shape)
            else:
                payload[name] = np.asarray(value)
        np.savez(path, **payload)

    @classmethod
    def load(cls, path: str | Path) -> ItemScorer:
        """Read a model written by `save`; the class is checked against the stored kind."""
        with np.load(path, allow_pickle=False) as f:
            kind = str(f["kind"])
            target = MODELS.get(kind)
            if target is None or (cls is not ItemScorer and target is not cls):
                raise ValueError(f"{path} holds a '{kind}' model; valid kinds: {', '.join(MODELS)}")
            # a parameter added later (e.g. ItemKNN.max_row) keeps its default in older files
            obj = target(**{p: f[f"param_{p}"].item() for p in target._params if f"param_{p}" in f})
            obj.n_items = int(f["n_items"])
            for name in target._arrays:
                if f"{name}__shape" in f:
                    shape = tuple(int(x) for x in f[f"{name}__shape"])
                    value = sp.csr_matrix(
                        (f[f"{name}__data"], f[f"{name}__indices"], f[f"{name}__indptr"]),
                        shape=shape,
                    )
                else:
                    value = f[name]
                setattr(obj, name, value)
        return obj


def top_k(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a `(rows, items)` array; -inf entries come last. Returns (ids, scores)."""
    scores = np.atleast_2d(scores)
    n = min(n, scores.shape[1])
    part = (
        np.argpartition(-scores, n - 1, axis=1)[:, :n]
        if n < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    )
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)  # by score desc, then id asc: deterministic ties
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    ids[~np.isfinite(vals)] = -1
    return ids, vals


def ease_bytes(n_items: int) -> int:
    """EASE's peak fit memory for `n_items`: 4 dense items x items arrays (3 float64, 1 float32)."""
    return 28 * n_items * n_items + 4 * n_items * n_items


class EASE(ItemScorer):
    """EASE^R (Steck 2019): closed-form item-item weights B, diag(B) = 0.

    Args:
        l2: ridge strength lambda; larger means smoother weights. Tune on validation.
    """

    kind = "ease"
    _arrays = ("B",)
    _params = ("l2",)

    def __init__(self, l2: float = 500.0, *, random_state: int | None = None) -> None:
        super().__init__(random_state=random_state)
        self.l2 = float(l2)
        self.B = np.zeros((0, 0), np.float32)

    def estimate_bytes(self, user_items: sp.csr_matrix) -> int:
        """Dense float64 Gram + LAPACK's copy + its inverse + float32 B: ~32 bytes x items^2."""
        return ease_bytes(user_items.shape[1])

    def fit(self, user_items: sp.csr_matrix) -> EASE:
        """Fit on binary user x item interactions (values > 0 count as 1). O(items^3)."""
        ui = self._check(user_items)
        self._guard(ui, f"a dense {ui.shape[1]:,} x {ui.shape[1]:,} item-item inverse")
        x = (ui > 0).astype(np.float64)
        g = (x.T @ x).toarray()
        g[np.diag_indices_from(g)] += self.l2
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.B = b.astype(np.float32)
        self.n_items = ui.shape[1]
        return self

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self._check(user_items) @ self.B, dtype=np.float32)


class ItemKNN(ItemScorer):
    """Item-based kNN with shrunk cosine similarity, `k` neighbours kept per item.

    W[i, j] is the similarity of history item i to target j, kept when i is among j's `k`
    nearest neighbours. A popular item is a neighbour of very many targets, so its row can be
    long (616k entries at 1M synthetic items), and scoring a history sums its rows:
    `max_row` keeps only each row's strongest entries (docs/scale.md, round 3).

    Args:
        k: neighbours kept per item.
        shrink: similarity shrinkage term (Bellogin et al.); damps pairs with little support.
        max_row: most targets one history item scores (its strongest similarities; ties to
            the lower item index); 0 = no cap.
    """

    kind = "itemknn"
    _arrays = ("W",)
    _params = ("k", "shrink", "max_row")

    def __init__(
        self,
        k: int = 100,
        shrink: float = 10.0,
        max_row: int = 0,
        *,
        random_state: int | None = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.k = int(k)
        self.shrink = float(shrink)
        self.max_row = int(max_row)
        self.W = sp.csr_matrix((0, 0), dtype=np.float32)

    # co-occurring (item, item) pairs computed per block of target items; bounds peak memory
    block_pairs: ClassVar[int] = 20_000_000

    def estimate_bytes(self, user_items: sp.csr_matrix) -> int:
        """One block of co-occurrence pairs (~40 B each) + the kept neighbours (~16 B each)."""
        pairs = _pair_counts(sp.csr_matrix(user_items))
        block = min(int(pairs.sum()), max(self.block_pairs, int(pairs.max(initial=0))))
        return 40 * block + 16 * user_items.shape[1] * self.k

    def fit(self, user_items: sp.csr_matrix) -> ItemKNN:
        """Sparse co-occurrence -> shrunk cosine -> top-k per item, one block of items at a time.

        Memory is one block's co-occurring pairs plus the kept neighbours, not all pairs, so a
        catalogue of 10^6 items fits; time grows with sum over users of history length^2.
        """
        ui = self._check(user_items)
        self._guard(ui, f"co-occurrence blocks of {ui.shape[1]:,} items")
        x = sp.csr_matrix((ui > 0).astype(np.float32))
        n = x.shape[1]
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        xc = sp.csc_matrix(x)
        xt = sp.csr_matrix(x.T)
        per_item = _pair_counts(x)
        rows_out, cols_out, vals_out = [], [], []
        start = 0
        while start < n:
            # as many target items as fit in one block (at least one)
            cum = np.cumsum(per_item[start:])
            stop = start + max(1, int(np.searchsorted(cum, self.block_pairs, side="right")))
            co = sp.coo_matrix(xt @ xc[:, start:stop])  # (n, block): co-occurrence counts
            rows, cols = co.row, co.col + start
            off = rows != cols
            rows, cols = rows[off], cols[off]
            vals = co.data[off] / (norms[rows] * norms[cols] + self.shrink + 1e-9)
            r, c, v = _top_k_per_column(rows, cols, vals.astype(np.float32), self.k)
            rows_out.append(r)
            cols_out.append(c)
            vals_out.append(v)
            start = stop
        self.W = sp.csr_matrix(
            (
                np.concatenate(vals_out) if vals_out else np.zeros(0, np.float32),
                (
                    np.concatenate(rows_out) if rows_out else np.zeros(0, np.int64),
                    np.concatenate(cols_out) if cols_out else np.zeros(0, np.int64),
                ),
            ),
            shape=(n, n),
            dtype=np.float32,
        )
        if self.max_row > 0:
            self.W = cap_rows(self.W, self.max_row)
        self.n_items = n
        return self

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        return sparse_rows_dot(self._check(user_items), self.W)


# `sparse_rows_dot` adds rows into a dense result for batches of at most this many users on
# catalogues of at least DENSE_DOT_MIN_ITEMS items (a request at scale); scipy otherwise
DENSE_DOT_MAX_ROWS = 16
DENSE_DOT_MIN_ITEMS = 50_000


def sparse_rows_dot(ui: sp.csr_matrix, m: sp.csr_matrix) -> np.ndarray:
    """`(ui @ m).toarray()` as float32, bit for bit, for float32 csr `ui` and `m`.

    For a request on a large catalogue it adds each history row of `m` straight into a dense
    result: scipy's product builds a sparse result first, which took twice as long at 1M
    items (docs/scale.md, round 3). The same float32 products are added in the same order
    (ui's stored order, starting from 0), so the values are identical. `m` must hold each
    (row, column) once, as scipy's constructors and products leave it (a row is one add).
    """
    if ui.shape[0] > DENSE_DOT_MAX_ROWS or m.shape[1] < DENSE_DOT_MIN_ITEMS:
        return np.asarray((ui @ m).toarray(), dtype=np.float32)
    out = np.zeros((ui.shape[0], m.shape[1]), np.float32)
    ip, ix, data = m.indptr, m.indices, m.data.astype(np.float32, copy=False)
    for r in range(ui.shape[0]):
        row = out[r]
        lo_u, hi_u = ui.indptr[r], ui.indptr[r + 1]
        for j, v in zip(ui.indices[lo_u:hi_u].tolist(), ui.data[lo_u:hi_u], strict=True):
            lo, hi = ip[j], ip[j + 1]
            row[ix[lo:hi]] += np.float32(v) * data[lo:hi]
    return out


def cap_rows(m: sp.csr_matrix, most: int) -> sp.csr_matrix:
    """`m` with each row cut to its `most` largest entries (ties: the lower column wins).

    Rows at or under the cap are kept as they are, so a matrix without longer rows comes back
    with the same entries, bit for bit.
    """
    m = sp.csr_matrix(m)
    lens = np.diff(m.indptr)
    long = np.flatnonzero(lens > most)
    if not len(long):
        return m
    keep = np.ones(m.nnz, bool)
    for i in long:
        lo, hi = m.indptr[i], m.indptr[i + 1]
        order = np.lexsort((m.indices[lo:hi], -m.data[lo:hi]))  # value desc, then column asc
        keep[lo + order[most:]] = False
    indptr = np.r_[0, np.cumsum(np.minimum(lens, most))].astype(m.indptr.dtype)
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def _pair_counts(x: sp.csr_matrix) -> np.ndarray:
    """Per item: co-occurring (user, other item) pairs = sum of its users' history lengths."""
    lengths = np.diff(x.indptr).astype(np.int64)
    return np.asarray((x > 0).T.astype(np.int64) @ lengths).ravel()


def _top_k_per_column(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the k largest positive entries of each column (the neighbours of each target item).

    Ties: among equal similarities the lower row index wins (deterministic).
    """
    order = np.lexsort((rows, -vals, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.r_[True, cols[1:] != cols[:-1]]
    starts = np.flatnonzero(first)
    rank = np.arange(len(cols)) - np.repeat(starts, np.diff(np.r_[starts, len(cols)]))
    keep = (rank < k) & (vals > 0)
    return rows[keep], cols[keep], vals[keep]


class Popularity(ItemScorer):
    """Number of users per item (log-scaled); the same ranking for everyone."""

    kind = "popularity"
    _arrays = ("counts",)

    def __init__(self, *, random_state: int | None = None) -> None:
        super().__init__(random_state=random_state)
        self.counts = np.zeros(0, np.float32)

    def fit(self, user_items: sp.csr_matrix) -> Popularity:
        ui = self._check(user_items)
        self.counts = np.asarray((ui > 0).sum(axis=0), dtype=np.float32).ravel()
        self.n_items = ui.shape[1]
        return self

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        """The same row for every user as a read-only broadcast view: no users x items copy."""
        ui = self._check(user_items)
        row = np.log1p(self.counts).astype(np.float32)
        return np.broadcast_to(row, (ui.shape[0], len(row)))


class Transitions(ItemScorer):
    """First-order "what comes next" model from ordered histories (a decayed Markov chain).

    `fit` takes a csr whose values are each interaction's 1-based position in its user's
    history (larger = later). T[i, j] counts j following i within `window` steps, weighted
    `step_decay ** (gap - 1)`, then rows are normalised by `count(i) + smoothing`, giving an
    estimate of P(next = j | i). `score` sums rows of T weighted by the user's history values,
    so score it with recency weights concentrated on the last few items.

    Args:
        window: how many following steps count as "next".
        step_decay: weight multiplier per extra step of distance.
        smoothing: added to each row's normaliser; damps rare source items.
    """

    kind = "transitions"
    _arrays = ("T",)
    _params = ("window", "step_decay", "smoothing")

    def __init__(
        self,
        window: int = 3,
        step_decay: float = 0.5,
        smoothing: float = 5.0,
        *,
        random_state: int | None = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.window = int(window)
        self.step_decay = float(step_decay)
        self.smoothing = float(smoothing)
        self.T = sp.csr_matrix((0, 0), dtype=np.float32)

    def estimate_bytes(self, user_items: sp.csr_matrix) -> int:
        """(source, next, weight) triples before merging: ~60 bytes per pair within `window`."""
        lengths = np.diff(sp.csr_matrix(user_items).indptr).astype(np.int64)
        pairs = sum(int(np.clip(lengths - g, 0, None).sum()) for g in range(1, self.window + 1))
        return 60 * pairs

    def fit(self, user_items: sp.csr_matrix) -> Transitions:
        ui = self._check(user_items)
        self._guard(ui, f"next-item pairs within {self.window} steps")
        n = ui.shape[1]
        src: list[np.ndarray] = []
        dst: list[np.ndarray] = []
        wts: list[np.ndarray] = []
        for u in range(ui.shape[0]):
            lo, hi = ui.indptr[u], ui.indptr[u + 1]
            if hi - lo < 2:
                continue
            seq = ui.indices[lo:hi][np.argsort(ui.data[lo:hi], kind="stable")]
            for gap in range(1, min(self.window, len(seq) - 1) + 1):
                src.append(seq[:-gap])
                dst.append(seq[gap:])
                wts.append(np.full(len(seq) - gap, self.step_decay ** (gap - 1), np.float32))
        if src:
            t = sp.csr_matrix(
                (np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))), shape=(n, n)
            )
        else:
            t = sp.csr_matrix((n, n), dtype=np.float32)
        out_deg = np.asarray((ui > 0).sum(axis=0)).ravel().astype(np.float32)
        denom = out_deg + self.smoothing
        inv = np.divide(1.0, denom, out=np.zeros_like(denom), where=denom > 0)
        self.T = sp.csr_matrix(sp.diags(inv) @ t, dtype=np.float32)
        self.n_items = n
        return self

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        return sparse_rows_dot(self._check(user_items), self.T)


# retrieval.factors adds "als", "bpr" and "factors" when imported (retrieval.candidates imports
# it; cf never does, so the two modules stay acyclic)
MODELS: dict[str, type[ItemScorer]] = {m.kind: m for m in (EASE, ItemKNN, Popularity, Transitions)}

# what `choose_cf_model` may pick for the hybrid's main collaborative source
CF_CHOICES = ("auto", "ease", "als", "bpr", "factors", "none")


def choose_cf_model(
    n_items: int,
    *,
    cf_model: str = "auto",
    ease_max_items: int = 5_000,
    memory_limit_bytes: int | None = None,
) -> tuple[str, str]:
    """The hybrid's main collaborative model for a catalogue size, and why (for the log).

    "auto" keeps EASE (best on small catalogues, docs/retrieval.md) while `n_items` is at most
    `ease_max_items` and its items^2 memory fits; otherwise ALS, whose memory is linear in
    items. An explicit choice is returned as is: a model that does not fit raises when fit.
    """
    if cf_model not in CF_CHOICES:
        raise ValueError(f"unknown cf_model {cf_model!r}; valid: {', '.join(CF_CHOICES)}")
    if cf_model != "auto":
        return cf_model, f"cf_model = {cf_model!r} in the config"
    need, limit = ease_bytes(n_items), memory_limit(memory_limit_bytes)
    if n_items > ease_max_items:
        return "als", (
            f"{n_items:,} items > ease_max_items = {ease_max_items:,} (EASE is O(items^3) "
            f"time and would need {need / GIB:.1f} GiB)"
        )
    if need > limit:
        return (
            "als",
            f"EASE needs {need / GIB:.1f} GiB for {n_items:,} items, over {limit / GIB:.1f} GiB",
        )
    return (
        "ease",
        f"{n_items:,} items <= ease_max_items = {ease_max_items:,}; "
        f"EASE needs {need / GIB:.2f} GiB",
    )


# prefix-count snapshots `DecayedPopularity` may keep: 256 MB = 32 snapshots of 1M float64
# counts, so a request at 1M items / 10M interactions re-adds at most ~310k of them (~3 ms; 8
# snapshots re-added 1.25M, 14 ms: docs/scale.md round 3). Smaller logs stop at POP_MIN_STEP
POP_SNAPSHOT_BYTES = 256 << 20
# fewest interactions between two snapshots (a request re-adds at most this many, ~4 ns each)
POP_MIN_STEP = 1 << 16


class DecayedPopularity:
    """Causal, time-decayed popularity of a fixed interaction log, counted once at fit.

    Re-counting the whole log for every request cost 79 ms at 1M interactions (docs/scale.md).
    This keeps the decay weights and the prefix counts at a few evenly spaced snapshots (the
    last one is the whole log), so a request adds only the interactions between the nearest
    snapshot and its own time. `np.add.at` adds them left to right in float64, exactly as
    `np.bincount` does, so the scores are bit-identical to a full recount.

    Args:
        item_idx: `(m,)` int item index of each training interaction.
        times: `(m,)` unix seconds of each interaction.
        n_items: catalogue size.
        half_life_days: an interaction's weight halves every this many days before the query.
        assume_sorted: `times` is already ascending (skips the stable sort).
        snapshot_bytes: memory the snapshots may take (at least two are kept: empty and full).
    """

    def __init__(
        self,
        item_idx: np.ndarray,
        times: np.ndarray,
        n_items: int,
        *,
        half_life_days: float = 14.0,
        assume_sorted: bool = False,
        snapshot_bytes: int = POP_SNAPSHOT_BYTES,
    ) -> None:
        if assume_sorted:
            t, it = np.asarray(times, dtype=np.float64), np.asarray(item_idx)
        else:
            order = np.argsort(times, kind="stable")
            t, it = np.asarray(times)[order].astype(np.float64), np.asarray(item_idx)[order]
        self.n_items = int(n_items)
        self.half_life_days = float(half_life_days)
        self._hl = self.half_life_days * 86400.0
        self.t = t
        self.items = it.astype(np.intp)
        # decayed counts via a reference time: w = 2**((t - t_ref)/hl), shifted per query
        self.t_ref = float(t.max()) if len(t) else 0.0
        self.w = np.exp2((t - self.t_ref) / self._hl)
        m = len(t)
        most = max(2, snapshot_bytes // max(1, 8 * self.n_items))
        step = max(POP_MIN_STEP, -(-m // (most - 1)))
        self.ends = np.unique(np.r_[np.arange(0, m, step), m]).astype(np.int64)
        self.snapshots = np.zeros((len(self.ends), self.n_items), np.float64)
        counts = np.zeros(self.n_items, np.float64)
        for k in range(1, len(self.ends)):
            a, b = self.ends[k - 1], self.ends[k]
            np.add.at(counts, self.items[a:b], self.w[a:b])  # the same running sums as bincount
            self.snapshots[k] = counts

    @property
    def latest(self) -> int:
        """The newest interaction's time (0 for an empty log)."""
        return int(self.t[-1]) if len(self.t) else 0

    def nbytes(self) -> int:
        return self.snapshots.nbytes + self.t.nbytes + self.w.nbytes + self.items.nbytes

    def at(self, at: np.ndarray) -> np.ndarray:
        """`(q, n_items)` float32: sum of 2**(-(a - t)/half_life) over interactions t <= a."""
        at = np.asarray(at, dtype=np.float64)
        out = np.zeros((len(at), self.n_items), np.float32)
        for q, a in enumerate(at):
            end = int(np.searchsorted(self.t, a, side="right"))
            k = int(np.searchsorted(self.ends, end, side="right")) - 1
            start = int(self.ends[k])
            if start == end:
                counts = self.snapshots[k]
            else:
                counts = self.snapshots[k].copy()
                np.add.at(counts, self.items[start:end], self.w[start:end])
            out[q] = counts * np.exp2((self.t_ref - a) / self._hl)
        return out


def time_decayed_popularity(
    item_idx: np.ndarray,
    times: np.ndarray,
    at: np.ndarray,
    n_items: int,
    *,
    half_life_days: float = 14.0,
    assume_sorted: bool = False,
) -> np.ndarray:
    """Causal popularity of every item as seen at each time in `at` (only past interactions).

    One-off form of `DecayedPopularity` (which a server keeps, to count the log once).

    Args:
        item_idx: `(m,)` int item index of each training interaction.
        times: `(m,)` unix seconds of each interaction.
        at: `(q,)` unix seconds to evaluate at (e.g. each user's latest history timestamp).
        n_items: catalogue size.
        half_life_days: an interaction's weight halves every this many days before `at`.
        assume_sorted: `times` is already ascending (skips the sort; the generator pre-sorts).

    Returns:
        `(q, n_items)` float32: sum of 2**(-(at - t)/half_life) over interactions with t <= at.
    """
    return DecayedPopularity(
        item_idx,
        times,
        n_items,
        half_life_days=half_life_days,
        assume_sorted=assume_sorted,
        snapshot_bytes=0,  # one use: only the empty and the full counts
    ).at(at)


def history_weights(
    positions: np.ndarray,
    ratings: np.ndarray | None = None,
    *,
    half_life: float | None = None,
    last_n: int | None = None,
    like_threshold: float | None = None,
    negative_weight: float = 0.0,
) -> np.ndarray:
    """Per-history-item weights: recency decay, an optional last-N cut, optional rating signs.

    Args:
        positions: `(h,)` steps back from the most recent item (0 = newest).
        ratings: `(h,)` ratings, used only with `like_threshold`.
        half_life: weight halves every this many steps back; None = no decay.
        last_n: keep only the `last_n` newest items (others get 0).
        like_threshold: ratings below it count as dislikes, weighted `-negative_weight`.
        negative_weight: magnitude of a dislike's weight relative to a like.

    Returns:
        `(h,)` float32 weights.
    """
    pos = np.asarray(positions, dtype=np.float64)
    w = np.ones_like(pos) if half_life is None else np.exp2(-pos / half_life)
    if last_n is not None:
        w = np.where(pos < last_n, w, 0.0)
    if like_threshold is not None and ratings is not None:
        w = np.where(np.asarray(ratings) >= like_threshold, w, -negative_weight * w)
    return w.astype(np.float32)
