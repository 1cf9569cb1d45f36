"""Candidate records and candidate generation: everything the re-ranker and explainer start from.

Generators, each scoring every catalogue item for a user:
  - `ease`: EASE item-item weights applied to the recency-weighted history;
  - `itemknn`: shrunk-cosine item kNN on the recency-weighted history;
  - `transitions`: "what people watched next" after the user's last few items;
  - `popularity`: causal, time-decayed popularity as of the user's latest interaction;
  - `content-<space>`: cosine between the user's profile vector and each item (per space);
  - `query`: cosine between the chat request and each item (text and label-bridged spaces).
The merger min-max-normalises each source over the items the user has not seen and sums
them with weights tuned on validation (`tune_weights`). Seen and disliked items never appear.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from retrieval.cf import DecayedPopularity, ItemKNN, Transitions, history_weights
from retrieval.config import DEFAULT_WEIGHTS, HybridConfig  # noqa: F401 (re-exported)
from retrieval.factors import fit_main_cf
from retrieval.fusion import merge_scores, merge_top, normalise  # noqa: F401 (re-exported)
from retrieval.interactions import user_item_matrix
from retrieval.numpy_index import NumpyIndex  # noqa: F401 (re-exported)
from retrieval.profiles import History, ItemIndex, build_profile
from retrieval.store import VectorStore

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One item proposed for a user.

    Attributes:
        item_id: catalogue id.
        score: merged retriever score; higher is better. Comparable within one request only.
        sources: per-generator scores that produced it, e.g. {"ease": 0.81, "content-text": 0.42}.
            Kept so explanations can cite them and the LLM fusion can be tuned.
        rank: 1-based position in the retriever's order.
        contributions: each source's share of `score` (weight x normalised score); they sum
            to `score`.
    """

    item_id: str
    score: float
    sources: dict[str, float] = field(default_factory=dict)
    rank: int = 0
    contributions: dict[str, float] = field(default_factory=dict)


class CandidateGenerator:
    """Scores every item for a user from several sources and merges them into `Candidate`s.

    Args:
        index: item vectors (`VectorStore` or `NumpyIndex`).
        config: source hyper-parameters and merge weights.
        content_spaces: vector spaces that get a `content-<space>` source.
        query_spaces: spaces a chat request is matched against (text-encoded spaces only).
        text_encoder: encodes chat requests; required only when `query` is used.
    """

    def __init__(
        self,
        index: ItemIndex,
        *,
        config: HybridConfig | None = None,
        content_spaces: Sequence[str] = ("text",),
        query_spaces: Sequence[str] = ("text", "image-text", "audio-text"),
        text_encoder: Any | None = None,
    ) -> None:
        self.index = index
        self.config = config or HybridConfig()
        self.content_spaces = tuple(content_spaces)
        self.query_spaces = tuple(query_spaces)
        self.text_encoder = text_encoder
        self.item_ids: list[str] = []
        self._pos: dict[str, int] = {}
        self.models: dict[str, Any] = {}
        self._log: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        # popularity counted once per fit (and per half-life), not per request: docs/scale.md
        self._popularity: DecayedPopularity | None = None
        self._cols: dict[tuple[str, int, int], np.ndarray] = {}  # index ids -> item columns

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def fit(self, interactions: pd.DataFrame, item_ids: Sequence[str]) -> CandidateGenerator:
        """Fit the collaborative sources.

        Args:
            interactions: `user_id, item_id, timestamp` rows, each user's rows in time order.
            item_ids: the catalogue; items without interactions are reachable by content only.
        """
        cfg = self.config
        self.item_ids = [str(i) for i in item_ids]
        self._pos = {i: k for k, i in enumerate(self.item_ids)}
        self._cols = {}
        df = interactions[interactions["item_id"].isin(self._pos)]
        users = pd.factorize(df["user_id"])[0]
        items = df["item_id"].map(self._pos).to_numpy(np.int64)
        order = pd.Series(np.ones(len(df))).groupby(users).cumsum().to_numpy(np.float32)
        binary = user_item_matrix(df, self.item_ids, values=None).matrix
        ordered = user_item_matrix(df, self.item_ids, values=order).matrix
        self.models = {}
        cf_name, cf_model = fit_main_cf(binary, cfg, self.item_ids)  # EASE, or ALS at scale
        if cf_model is not None:
            self.models[cf_name] = cf_model
        self.models["itemknn"] = ItemKNN(cfg.knn_k, cfg.knn_shrink, cfg.knn_max_row).fit(binary)
        self.models["transitions"] = Transitions(
            cfg.trans_window, cfg.trans_step_decay, cfg.trans_smoothing
        ).fit(ordered)
        times = df["timestamp"].to_numpy(np.int64)
        order = np.argsort(times, kind="stable")
        self._log = (items[order], times[order])
        self._popularity = None
        self._popularity_model()
        return self

    def _popularity_model(self) -> DecayedPopularity:
        """The log's popularity counts, rebuilt only when the half-life or the log changed."""
        hl = self.config.pop_half_life_days
        pop = self._popularity
        if pop is None or pop.half_life_days != float(hl) or pop.n_items != self.n_items:
            items, times = self._log
            pop = DecayedPopularity(
                items, times, self.n_items, half_life_days=hl, assume_sorted=True
            )
            self._popularity = pop
        return pop

    def _pool(self) -> Executor | None:
        """The threads one request's work is split over on a large catalogue
        (`config.parallel_min_items`); None (one thread) below it."""
        return _POOL if self.n_items >= self.config.parallel_min_items else None

    def with_index(self, index: ItemIndex) -> CandidateGenerator:
        """A generator sharing this one's fitted models but reading vectors from `index`."""
        other = copy.copy(self)
        other.index = index
        return other

    def _weights_matrix(
        self, histories: Sequence[History], half_life: float | None, last_n: int | None
    ) -> sp.csr_matrix:
        rows, cols, vals = [], [], []
        for r, h in enumerate(histories):
            idx = [self._pos.get(i, -1) for i in h.item_ids]
            w = history_weights(np.arange(len(idx) - 1, -1, -1), half_life=half_life, last_n=last_n)
            for c, v in zip(idx, w, strict=True):
                if c >= 0 and v > 0:
                    rows.append(r)
                    cols.append(c)
                    vals.append(v)
        return sp.csr_matrix(
            (vals, (rows, cols)), shape=(len(histories), self.n_items), dtype=np.float32
        )

    def _space_scores(
        self, space: str, vectors: np.ndarray, exclude: Sequence[set[str]]
    ) -> np.ndarray:
        """`(m, n_items)` cosines; NaN where the index returned nothing for an item."""
        out = np.full((len(vectors), self.n_items), np.nan, np.float32)
        if hasattr(self.index, "scores"):
            ids, s = self.index.scores(space, vectors)
            key = (space, id(ids), len(ids))
            if key not in self._cols:
                self._cols = {key: np.array([self._pos.get(i, -1) for i in ids], dtype=np.int64)}
            cols = self._cols[key]
            keep = cols >= 0
            out[:, cols[keep]] = s[:, keep]
            return out
        # ids and scores are all a source needs: no metadata read per hit (docs/scale.md)
        bare = {"include_metadata": False} if isinstance(self.index, VectorStore) else {}
        hits = self.index.query(
            space,
            vectors,
            n=self.config.content_pool,
            exclude_ids=sorted(set().union(*exclude)),
            **bare,
        )
        for r, row in enumerate(hits):
            for hit in row:
                c = self._pos.get(hit.id)
                if c is not None:
                    out[r, c] = hit.score
        return out

    def score_sources(
        self,
        histories: Sequence[History],
        *,
        queries: Sequence[str | None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw scores of every source for a batch of users.

        Args:
            histories: one per user.
            queries: one chat request (or None) per user.
            timings: if given, each source's seconds are added to it.

        Returns:
            {source: `(len(histories), n_items)` float32}; NaN = not retrieved by that source.
            A source absent for a user (no history, no request) is all NaN in that row.
        """
        cfg = self.config
        has_hist = np.array([len(h) > 0 for h in histories])
        out: dict[str, np.ndarray] = {}
        cf_inputs = {
            "ease": (cfg.ease_half_life, None),
            **{k: (cfg.ease_half_life, None) for k in ("als", "bpr", "factors")},
            "itemknn": (cfg.knn_half_life, None),
            "transitions": (cfg.trans_half_life, cfg.trans_last_n),
        }
        clock = _Clock(timings)
        tasks: dict[str, Callable[[], np.ndarray]] = {}

        def cf(name: str, hl: float | None, last_n: int | None) -> np.ndarray:
            s = self.models[name].score(self._weights_matrix(histories, hl, last_n))
            s[~has_hist] = np.nan
            return s

        for name, (hl, last_n) in cf_inputs.items():
            if name in self.models:
                tasks[name] = partial(cf, name, hl, last_n)

        def popularity() -> np.ndarray:
            pop = self._popularity_model()
            at = np.array([h.last_time or pop.latest for h in histories], dtype=np.int64)
            return pop.at(at)

        tasks["popularity"] = popularity
        excl = [h.seen for h in histories]
        for space in self.content_spaces:
            if self.index.has(space):
                tasks[f"content-{space}"] = partial(self._content_scores, space, histories, excl)
        if queries is not None and any(queries):
            tasks["query"] = partial(self._query_scores, queries, excl)
        pool = self._pool()
        if pool is None:
            for name, task in tasks.items():
                with clock(name):
                    out[name] = task()
            return out
        # a large catalogue: the sources are independent, and numpy, BLAS and Chroma release
        # the GIL in their loops, so two threads overlap them (docs/scale.md). `out` keeps
        # the sources' order: the merge adds them in that order, bit for bit as before
        futures = {name: pool.submit(clock.timed, name, task) for name, task in tasks.items()}
        return {name: f.result() for name, f in futures.items()}

    def _content_scores(
        self, space: str, histories: Sequence[History], excl: Sequence[set[str]]
    ) -> np.ndarray:
        cfg = self.config
        profiles = [
            build_profile(
                h,
                self.index,
                spaces=(space,),
                half_life=cfg.content_half_life,
                like_threshold=cfg.content_like_threshold,
                negative_weight=cfg.negative_weight,
            ).get(space)
            for h in histories
        ]
        rows = [r for r, p in enumerate(profiles) if p is not None]
        if rows and len(rows) == len(histories):  # no second 1M-wide array per request
            return self._space_scores(space, np.stack([p for p in profiles if p is not None]), excl)
        s = np.full((len(histories), self.n_items), np.nan, np.float32)
        if rows:
            s[rows] = self._space_scores(
                space, np.stack([profiles[r] for r in rows]), [excl[r] for r in rows]
            )
        return s

    def _query_scores(self, queries: Sequence[str | None], excl: Sequence[set[str]]) -> np.ndarray:
        if self.text_encoder is None:
            raise ValueError(
                "a chat request needs a text encoder; pass text_encoder=... to CandidateGenerator"
            )
        s = np.full((len(queries), self.n_items), np.nan, np.float32)
        rows = [r for r, q in enumerate(queries) if q]
        vecs = self.text_encoder.encode_query([queries[r] for r in rows])
        own, labels = None, None  # the item's own words; the best of its label spaces
        for space in self.query_spaces:
            if self.index.has(space):
                part = self._space_scores(space, vecs, [excl[r] for r in rows])
                if space == "text":
                    own = part
                else:
                    labels = part if labels is None else np.fmax(labels, part)
        if own is None or labels is None:  # one kind of space: its cosine as it is
            part = own if labels is None else labels
            if part is not None:
                s[rows] = part
            return s
        # own words + a weighted label match (config.query_label_weight); NaN only where
        # neither search returned the item
        w = np.float32(self.config.query_label_weight)
        both = np.nan_to_num(own) + w * np.nan_to_num(labels)
        both[np.isnan(own) & np.isnan(labels)] = np.nan
        s[rows] = both
        return s

    def seen_mask(self, histories: Sequence[History]) -> np.ndarray:
        """`(m, n_items)` bool, True for items each user has seen or rejected."""
        mask = np.zeros((len(histories), self.n_items), bool)
        for r, h in enumerate(histories):
            cols = [self._pos[i] for i in h.seen if i in self._pos]
            mask[r, cols] = True
        return mask

    def generate(
        self,
        history: History | None = None,
        *,
        query: str | None = None,
        n: int | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Candidate]:
        """Top-n merged candidates for one user, with every source's score kept.

        Args:
            history: the user's interactions; None or empty for a cold-start user.
            query: the chat request, if any.
            n: how many; default `config.n_candidates`.
            exclude: further ids never to return (e.g. already shown).

        Returns:
            Candidates best first (fewer than n when the catalogue runs out). With no history
            and no request, the time-decayed popularity order.
        """
        h = history or History()
        # excluded ids are hidden, not disliked: a filter is not a taste (profiles.History)
        h = History(h.item_ids, h.ratings, h.timestamps, h.disliked, [*h.hidden, *exclude])
        raw = self.score_sources([h], queries=[query])
        seen = self.seen_mask([h])
        weights = dict(self.config.weights)
        if not len(h) and not query:
            weights = {"popularity": 1.0}
        # parts for the top n only: no 1M-wide array per source (docs/scale.md, round 3)
        best = merge_top(raw, seen, weights, n or self.config.n_candidates, pool=self._pool())
        keep = best.ids[0] >= 0
        top = best.ids[0][keep]
        scores = best.scores[0][keep].tolist()
        raw_top = {k: v[0, top].tolist() for k, v in raw.items()}
        parts_top = {k: v[0][keep].tolist() for k, v in best.parts.items()}
        out: list[Candidate] = []
        for r, j in enumerate(top.tolist()):
            sources = {k: v[r] for k, v in raw_top.items() if math.isfinite(v[r])}
            parts = {k: v[r] for k, v in parts_top.items() if v[r] != 0.0}
            out.append(Candidate(self.item_ids[j], scores[r], sources, r + 1, parts))
        return out


# threads that score one request's sources at once on a large catalogue (2: this project's
# reference machine has 2 cores; more threads than cores only add switching)
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fusionrec-sources")


class _Clock:
    """Adds the seconds spent in `with clock(name):` blocks to a dict (no-op without one)."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self._lock = threading.Lock()

    def timed(self, name: str, task: Callable[[], np.ndarray]) -> np.ndarray:
        """`task()` inside `with self(name):` (for a thread pool)."""
        with self(name):
            return task()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sink is not None:
                with self._lock:  # sources may be timed from several threads
                    self.sink[name] = self.sink.get(name, 0.0) + time.perf_counter() - t0
