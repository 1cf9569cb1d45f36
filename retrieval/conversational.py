"""Candidates for a conversation: what the user said, not a rating history.

A chat gives liked/disliked films (linked to catalogue ids), the user's own words and a few
parsed attributes (genres, moods, era, people). Each source scores every catalogue item:

  - `itemknn` / `ease`: item-to-item collaborative signal from the liked films (disliked
    ones pull away), fit on co-ratings (for ReDial: MovieLens latest-small mapped to its ids);
  - `content`: cosine between each item's text vector and the liked films' profile;
  - `query`: cosine between the request text (plus moods) and each item's text vector;
  - `attributes`: share of the asked genres / people / era an item matches;
  - `popularity`: a prior from outside the conversation; `prior`: an optional second prior
    (the evaluation passes counts of films in its validation dialogues and reports both).

Sources are merged like the hybrid retriever's (`retrieval.fusion.merge_scores`: per-row
min-max over allowed items, weighted sum); a source a query lacks (no liked film, no request)
is NaN and adds nothing. Liked, disliked and excluded films never come back. This module
imports no agent code: the agent turns its `ConversationState` into a `ConversationQuery`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from retrieval.cf import EASE, ItemKNN, top_k
from retrieval.config import ConversationConfig
from retrieval.fusion import merge_scores
from retrieval.numpy_index import NumpyIndex

logger = logging.getLogger(__name__)

SOURCES = ("itemknn", "ease", "content", "query", "attributes", "popularity", "prior")
_GENRE_ALIASES = {"children": "family", "kids": "family", "science fiction": "sci-fi"}


@dataclass(frozen=True)
class ConversationQuery:
    """What the retriever needs from a conversation state.

    Attributes:
        liked_ids: catalogue ids of films the user liked (or named as "like X").
        disliked_ids: catalogue ids the user disliked; never returned, pull CF/content away.
        request_text: the user's own words (recent turns), matched against item text.
        genres, moods, era, people: parsed request attributes; era is (from_year, to_year).
        exclude_ids: further ids never to return (already mentioned or shown).
    """

    liked_ids: tuple[str, ...] = ()
    disliked_ids: tuple[str, ...] = ()
    request_text: str = ""
    genres: tuple[str, ...] = ()
    moods: tuple[str, ...] = ()
    era: tuple[int, int] | None = None
    people: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()

    def has_attributes(self) -> bool:
        return bool(self.genres or self.people or self.era)

    def query_text(self) -> str:
        """The text encoded for the `query` source: the request plus mood words."""
        parts = [self.request_text.strip(), *self.moods]
        return " ".join(p for p in parts if p)


def _genre_key(genre: str) -> str:
    g = genre.strip().lower()
    return _GENRE_ALIASES.get(g, g)


@dataclass
class _ItemFacts:
    """Per-item metadata arrays for attribute matching (aligned with the retriever's ids)."""

    genres: list[frozenset[str]] = field(default_factory=list)
    people: list[str] = field(default_factory=list)  # lower-cased "director; cast" text
    years: np.ndarray = field(default_factory=lambda: np.zeros(0))  # NaN where unknown


class ConversationRetriever:
    """Scores every catalogue item for a conversation and merges the sources into Candidates.

    Args:
        items: the catalogue (order fixes the columns of `score_sources`).
        index: item text vectors: a `VectorStore` or `NumpyIndex` with a `text` space. The
            vectors are read once into an exact in-memory index.
        text_encoder: encodes request text (`encode_query`); None disables `query`.
        interactions: `user_id, item_id, rating` co-ratings for the CF sources (ids of
            `items`); None or empty disables them.
        popularity: id -> outside popularity (any scale); missing ids count 0.
        prior: id -> optional in-domain prior (any scale); None disables `prior`.
        config: hyper-parameters and merge weights.
    """

    def __init__(
        self,
        items: Sequence[Item],
        index: Any,
        *,
        text_encoder: Any | None = None,
        interactions: pd.DataFrame | None = None,
        popularity: Mapping[str, float] | None = None,
        prior: Mapping[str, float] | None = None,
        config: ConversationConfig | None = None,
    ) -> None:
        self.config = config or ConversationConfig()
        self.items = {it.id: it for it in items}
        self.item_ids = [it.id for it in items]
        self._pos = {i: k for k, i in enumerate(self.item_ids)}
        self.text_encoder = text_encoder
        ids, vecs, _ = index.get("text", self.item_ids)
        self.index = NumpyIndex({"text": (ids, vecs)}) if len(ids) else None
        if len(ids) < len(self.item_ids):
            logger.warning(
                "%d of %d items have no text vector; content/query cannot reach them",
                len(self.item_ids) - len(ids),
                len(self.item_ids),
            )
        self._vec_cols = np.array([self._pos[i] for i in ids], dtype=np.int64)
        self.popularity = self._column(popularity or {})
        self.prior = self._column(prior) if prior is not None else None
        self.facts = self._facts(items)
        self.models: dict[str, Any] = {}
        self._rated = np.zeros(0, np.int64)
        if interactions is not None and len(interactions):
            self._fit_cf(interactions)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def _column(self, values: Mapping[str, float]) -> np.ndarray:
        out = np.zeros(self.n_items, np.float32)
        for i, v in values.items():
            if i in self._pos and v is not None and math.isfinite(float(v)):
                out[self._pos[i]] = float(v)
        return out

    @staticmethod
    def _facts(items: Sequence[Item]) -> _ItemFacts:
        genres, people, years = [], [], []
        for it in items:
            meta = it.metadata or {}
            gs = list(meta.get("genres") or []) + list(it.tags)
            genres.append(frozenset(_genre_key(g) for g in gs))
            names = list(meta.get("directors") or []) + list(meta.get("cast") or [])
            people.append("; ".join(str(n) for n in names).lower())
            y = meta.get("year")
            years.append(float(y) if isinstance(y, (int, float)) and y else np.nan)
        return _ItemFacts(genres, people, np.array(years, dtype=np.float64))

    def _fit_cf(self, interactions: pd.DataFrame) -> None:
        cfg = self.config
        df = interactions[interactions["item_id"].isin(self._pos)]
        users = pd.factorize(df["user_id"])[0]
        cols = df["item_id"].map(self._pos).to_numpy(np.int64)
        rated = np.unique(cols)  # CF is fit on rated films only (EASE is cubic in items)
        local = np.searchsorted(rated, cols)
        x = sp.csr_matrix(
            (np.ones(len(df), np.float32), (users, local)),
            shape=(int(users.max()) + 1 if len(users) else 0, len(rated)),
        )
        self._rated = rated
        self.models["itemknn"] = ItemKNN(cfg.knn_k, cfg.knn_shrink).fit(x)
        if cfg.weights.get("ease", 0.0) and len(rated) <= cfg.ease_max_items:
            self.models["ease"] = EASE(cfg.ease_l2).fit(x)
        logger.info("conversational CF fit on %d ratings of %d films", len(df), len(rated))

    # -- sources -----------------------------------------------------------------------------

    def _cf_rows(self, queries: Sequence[ConversationQuery]) -> sp.csr_matrix:
        local = {int(c): k for k, c in enumerate(self._rated)}
        rows, cols, vals = [], [], []
        for r, q in enumerate(queries):
            for ids, w in ((q.liked_ids, 1.0), (q.disliked_ids, -self.config.negative_weight)):
                for i in dict.fromkeys(ids):
                    c = local.get(self._pos.get(i, -1))
                    if c is not None:
                        rows.append(r)
                        cols.append(c)
                        vals.append(w)
        return sp.csr_matrix(
            (vals, (rows, cols)), shape=(len(queries), len(self._rated)), dtype=np.float32
        )

    def _content(self, queries: Sequence[ConversationQuery]) -> np.ndarray:
        out = np.full((len(queries), self.n_items), np.nan, np.float32)
        if self.index is None:
            return out
        ids, vecs, _ = self.index.get("text")
        pos = {i: k for k, i in enumerate(ids)}
        profiles, rows = [], []
        for r, q in enumerate(queries):
            liked = [pos[i] for i in dict.fromkeys(q.liked_ids) if i in pos]
            if not liked:
                continue
            p = vecs[liked].sum(0)
            bad = [pos[i] for i in dict.fromkeys(q.disliked_ids) if i in pos]
            if bad:
                p = p - self.config.negative_weight * vecs[bad].sum(0)
            norm = float(np.linalg.norm(p))
            if norm > 0:
                profiles.append(p / norm)
                rows.append(r)
        if rows:
            _, s = self.index.scores("text", np.stack(profiles))
            block = np.full((len(rows), self.n_items), np.nan, np.float32)
            block[:, self._vec_cols] = s
            out[rows] = block
        return out

    def encode_requests(self, queries: Sequence[ConversationQuery]) -> np.ndarray | None:
        """`(m, dim)` float32 unit vectors of each query's text (zeros where empty), or None."""
        if self.text_encoder is None or self.index is None:
            return None
        texts = [q.query_text() for q in queries]
        rows = [r for r, t in enumerate(texts) if t]
        dim = self.index.get("text")[1].shape[1]
        out = np.zeros((len(queries), dim), np.float32)
        if rows:
            out[rows] = self.text_encoder.encode_query([texts[r] for r in rows])
        return out

    def _query(self, query_vectors: np.ndarray) -> np.ndarray:
        out = np.full((len(query_vectors), self.n_items), np.nan, np.float32)
        rows = np.flatnonzero(np.abs(query_vectors).sum(1) > 0)
        if len(rows) and self.index is not None:
            _, s = self.index.scores("text", query_vectors[rows])
            block = np.full((len(rows), self.n_items), np.nan, np.float32)
            block[:, self._vec_cols] = s
            out[rows] = block
        return out

    def _attributes(self, queries: Sequence[ConversationQuery]) -> np.ndarray:
        out = np.full((len(queries), self.n_items), np.nan, np.float32)
        f = self.facts
        for r, q in enumerate(queries):
            if not q.has_attributes():
                continue
            parts: list[np.ndarray] = []
            if q.genres:
                wanted = {_genre_key(g) for g in q.genres}
                parts.append(np.array([len(wanted & g) / len(wanted) for g in f.genres]))
            if q.people:
                names = [p.strip().lower() for p in q.people if p.strip()]
                parts.append(np.array([float(any(n in p for n in names)) for p in f.people]))
            if q.era:
                lo, hi = q.era
                with np.errstate(invalid="ignore"):
                    parts.append(((f.years >= lo) & (f.years <= hi)).astype(np.float64))
            out[r] = np.mean(parts, axis=0)
        return out

    def score_sources(
        self,
        queries: Sequence[ConversationQuery],
        *,
        query_vectors: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw scores of every source for a batch of queries.

        Args:
            queries: one per conversation.
            query_vectors: precomputed `encode_requests(queries)` (the evaluation caches them).

        Returns:
            {source: `(len(queries), n_items)` float32}; NaN = the source has nothing for that
            query (no liked film, no request, no attribute) or for that item.
        """
        m = len(queries)
        out: dict[str, np.ndarray] = {}
        if self.models:
            rows = self._cf_rows(queries)
            has = np.asarray(rows.getnnz(axis=1) > 0)
            for name, model in self.models.items():
                s = np.full((m, self.n_items), np.nan, np.float32)
                s[:, self._rated] = model.score(rows)
                s[~has] = np.nan
                out[name] = s
        out["content"] = self._content(queries)
        vecs = query_vectors if query_vectors is not None else self.encode_requests(queries)
        if vecs is not None:
            out["query"] = self._query(vecs)
        out["attributes"] = self._attributes(queries)
        out["popularity"] = np.tile(self.popularity, (m, 1))
        if self.prior is not None:
            out["prior"] = np.tile(self.prior, (m, 1))
        return out

    def excluded_mask(self, queries: Sequence[ConversationQuery]) -> np.ndarray:
        """`(m, n_items)` bool: liked, disliked and excluded ids (never recommended)."""
        mask = np.zeros((len(queries), self.n_items), bool)
        for r, q in enumerate(queries):
            cols = [
                self._pos[i]
                for i in (*q.liked_ids, *q.disliked_ids, *q.exclude_ids)
                if i in self._pos
            ]
            mask[r, cols] = True
        return mask

    def generate(
        self,
        query: ConversationQuery,
        *,
        n: int | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[Candidate]:
        """Top-n merged candidates for one conversation, each with its per-source scores.

        Args:
            query: the conversation's liked/disliked films, request and attributes.
            n: how many; default `config.n_candidates`.
            weights: merge weights; default `config.weights`.

        Returns:
            Candidates best first; never a liked, disliked or excluded id. With nothing known
            about the user, the popularity (and prior) order.
        """
        raw = self.score_sources([query])
        seen = self.excluded_mask([query])
        merged, contrib = merge_scores(raw, seen, weights or self.config.weights)
        if not np.any(merged[0][~seen[0]]):  # every source empty: fall back to the priors
            merged, contrib = merge_scores(raw, seen, {"popularity": 1.0, "prior": 1.0})
        ids, _ = top_k(merged, n or self.config.n_candidates)
        top = ids[0][ids[0] >= 0]
        out: list[Candidate] = []
        for r, j in enumerate(top.tolist()):
            sources = {k: float(v[0, j]) for k, v in raw.items() if math.isfinite(v[0, j])}
            parts = {k: float(v[0, j]) for k, v in contrib.items() if v[0, j] != 0.0}
            out.append(Candidate(self.item_ids[j], float(merged[0, j]), sources, r + 1, parts))
        return out


__all__ = ["ConversationQuery", "ConversationRetriever", "SOURCES"]
