"""Re-ranking's base types: the user context, ranked results, the Reranker Protocol, identity.

A `Reranker` takes a user's context, the retriever's `Candidate`s and the catalogue items,
and returns `RankedResults` built only from those candidates (after AnswerDotAI
`rerankers`' `BaseRanker.rank/score`). Kinds, chosen explicitly with `create_reranker`:

- `identity`: the retriever's order (tests, and the fallback of every other kind);
- `llm-pointwise`: log P(Yes) of "Would this person enjoy X? Answer Yes or No.", the shared
  prefix (the user's history) computed once, its KV cache reused across batched candidates;
- `llm-listwise`: one forward pass per permutation, next-token log-probs over candidate letters,
  averaged over cyclic shifts of the order against position bias.

The final score is `alpha * minmax(llm) + (1 - alpha) * minmax(retriever)`, with `alpha` tuned
on validation users by `tune_alpha` (alpha = 0 is in the grid, so on validation the fusion is
never worse than the retriever). Past the request's time budget, or when the LLM cannot load,
the retriever's order is returned and `RankedResults.fallback_reason` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from retrieval.fusion import fuse_scores, minmax  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

DEFAULT_ALPHA = 0.5  # weight of the LLM score in the fusion until tuned (see docs/rerank_eval.md)


@dataclass(frozen=True)
class UserContext:
    """What the re-ranker knows about the user (text only; no ids reach the prompt).

    Attributes:
        liked: (title, rating or None) pairs, most recent LAST; ratings on a 1-5 scale.
        disliked: titles the user disliked or rejected in chat.
        request: what the user asked for in chat, if anything.
        user_id: for logs and reports only.
    """

    liked: tuple[tuple[str, float | None], ...] = ()
    disliked: tuple[str, ...] = ()
    request: str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:  # accept lists and bare titles
        liked = tuple((t, None) if isinstance(t, str) else (str(t[0]), t[1]) for t in self.liked)
        object.__setattr__(self, "liked", liked)
        object.__setattr__(self, "disliked", tuple(self.disliked))


@dataclass(frozen=True)
class RankedEntry:
    """One re-ranked candidate.

    Attributes:
        candidate: the retriever's candidate, unchanged (so only candidates can come back).
        llm_score: the LLM's raw score (log-prob; higher is better) or None when not scored.
        final_score: the fused score the order is sorted by (in [0, 1] when fused).
        rank: 1-based position after re-ranking.
    """

    candidate: Candidate
    llm_score: float | None
    final_score: float
    rank: int

    @property
    def item_id(self) -> str:
        return self.candidate.item_id


@dataclass
class RankedResults:
    """The re-ranked list plus what it cost.

    Attributes:
        entries: best first.
        reranker: the kind that produced it.
        alpha: the LLM weight used in the fusion (0 when the retriever order stands).
        fallback_reason: None when the LLM scores were used; otherwise a sentence saying why the
            retriever order stands (time budget, LLM unavailable, error).
        timings: seconds per stage, e.g. {"llm": 3.2, "total": 3.3}.
        tokens_processed: positions run through the LLM (shared prefix once, padding included).
    """

    entries: list[RankedEntry]
    reranker: str
    alpha: float = 0.0
    fallback_reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    tokens_processed: int = 0

    def __iter__(self) -> Iterator[RankedEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def item_ids(self) -> list[str]:
        """Item ids, best first."""
        return [e.candidate.item_id for e in self.entries]

    def top_k(self, k: int) -> list[RankedEntry]:
        return self.entries[:k]


@runtime_checkable
class Reranker(Protocol):
    """What every re-ranker provides."""

    name: str

    def score(
        self, user: UserContext, candidates: Sequence[Candidate], items: Mapping[str, Item]
    ) -> np.ndarray:
        """Raw scores, `(len(candidates),)` float64, higher is better; raises on failure."""
        ...

    def rank(
        self,
        user: UserContext,
        candidates: Sequence[Candidate],
        items: Mapping[str, Item] | Sequence[Item],
        *,
        top_k: int | None = None,
    ) -> RankedResults:
        """Candidates re-ordered; never raises for LLM trouble (falls back, says why)."""
        ...


def order_by(scores: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Indices sorting `scores` descending; ties keep `tiebreak` ascending (e.g. retriever rank)."""
    s = np.asarray(scores, dtype=np.float64)
    tb = np.arange(len(s)) if tiebreak is None else np.asarray(tiebreak)
    return np.lexsort((tb, -s))


def as_item_map(items: Mapping[str, Item] | Sequence[Item]) -> Mapping[str, Item]:
    """Accept a mapping id -> Item or a list of Items."""
    return items if isinstance(items, Mapping) else {it.id: it for it in items}


def dedupe(candidates: Sequence[Candidate]) -> list[Candidate]:
    """First occurrence of each item id, in the given order."""
    seen: set[str] = set()
    out: list[Candidate] = []
    for c in candidates:
        if c.item_id not in seen:
            seen.add(c.item_id)
            out.append(c)
    return out


def retriever_order(
    candidates: Sequence[Candidate],
    *,
    name: str,
    top_k: int | None = None,
    reason: str | None = None,
    timings: dict[str, float] | None = None,
    tokens: int = 0,
) -> RankedResults:
    """The candidates in the retriever's order (by score, ties by retriever rank)."""
    cands = dedupe(candidates)
    scores = np.array([c.score for c in cands], dtype=np.float64)
    idx = order_by(scores, np.array([c.rank for c in cands]))
    entries = [RankedEntry(cands[i], None, float(scores[i]), r + 1) for r, i in enumerate(idx)]
    return RankedResults(
        entries[:top_k] if top_k else entries, name, 0.0, reason, timings or {}, tokens
    )


class IdentityReranker:
    """Keeps the retriever's order. Used in tests and as the fallback of the LLM kinds."""

    name = "identity"

    def score(
        self, user: UserContext, candidates: Sequence[Candidate], items: Mapping[str, Item]
    ) -> np.ndarray:
        return np.array([c.score for c in candidates], dtype=np.float64)

    def rank(
        self,
        user: UserContext,
        candidates: Sequence[Candidate],
        items: Mapping[str, Item] | Sequence[Item],
        *,
        top_k: int | None = None,
    ) -> RankedResults:
        return retriever_order(candidates, name=self.name, top_k=top_k)


FinalEntry = tuple[Candidate, float, float | None]  # (candidate, final score, LLM score)


def final_order(
    ranked: RankedResults, candidates: Sequence[Candidate], top: int
) -> list[FinalEntry]:
    """The list a user sees: the re-ranked top `top` candidates, then the rest in the
    retriever's order, as (candidate, final score, LLM score or None)."""
    head = [(e.candidate, e.final_score, e.llm_score) for e in ranked.entries]
    return head + [(c, c.score, None) for c in candidates[top:]]
