"""Re-ranking the retriever's candidates: the protocol, the factory, score fusion and its tuning.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from retrieval.errors import UnknownBackendError

logger = logging.getLogger(__name__)

__all__ = [
    "RankedEntry",
    "RankedResults",
    "Reranker",
    "UserContext",
    "create_reranker",
    "fuse_scores",
    "list_rerankers",
    "tune_alpha",
]

ALPHA_GATE_Z = 1.645  # standard errors a validation gain must clear (one-sided 95%)
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


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] within one request; a constant vector becomes all 0.5."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    lo, hi = float(np.min(s)), float(np.max(s))
    return np.full_like(s, 0.5) if hi - lo < 1e-12 else (s - lo) / (hi - lo)


def fuse_scores(retriever: np.ndarray, llm: np.ndarray, alpha: float) -> np.ndarray:
    """`alpha * minmax(llm) + (1 - alpha) * minmax(retriever)`; `(n,)` in, `(n,)` float64 out."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * minmax(llm) + (1.0 - alpha) * minmax(retriever)


def order_by(scores: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Indices sorting `scores` descending; ties keep `tiebreak` ascending (e.g. retriever rank)."""
    s = np.asarray(scores, dtype=np.float64)
    tb = np.arange(len(s)) if tiebreak is None else np.asarray(tiebreak)
    return np.lexsort((tb, -s))


def _ndcg_of_order(order: np.ndarray, relevant: np.ndarray, k: int) -> float:
    rel = relevant[order][:k].astype(np.float64)
    dcg = float(np.sum(rel / np.log2(np.arange(2, len(rel) + 2))))
    n_rel = int(min(relevant.sum(), k))
    idcg = float(np.sum(1.0 / np.log2(np.arange(2, n_rel + 2))))
    return dcg / idcg if idcg > 0 else 0.0


def tune_alpha(
    retriever_scores: Sequence[np.ndarray],
    llm_scores: Sequence[np.ndarray],
    relevant: Sequence[np.ndarray],
    *,
    grid: Sequence[float] | None = None,
    k: int = 10,
    z: float = ALPHA_GATE_Z,
) -> tuple[float, dict[float, float]]:
    """Pick the LLM weight for the fusion from validation users, and keep 0 unless it clearly
    helps: the best alpha is taken only if its per-user NDCG@k gain over alpha = 0 is above
    zero by `z` standard errors (one-sided 95% by default). With a few dozen validation users
    the arg-max alone picks noise: on MovieLens it chose 0.15 from a +0.016 validation gain
    that became -0.007 on test (docs/rerank.md). The LLM must not make rankings worse.

    Args:
        retriever_scores: per user, `(n_candidates,)` retriever scores.
        llm_scores: per user, `(n_candidates,)` LLM scores, aligned.
        relevant: per user, `(n_candidates,)` bool, True for held-out (relevant) candidates.
        grid: alphas to try; default 0, 0.05, ..., 1 (0 is always tried). Ties go to the
            smaller alpha.
        k: NDCG cut-off.
        z: standard errors the gain must clear; 0 = plain arg-max.

    Returns:
        (chosen alpha, {alpha: mean NDCG@k}).
    """
    alphas = [round(float(a), 4) for a in (grid if grid is not None else np.linspace(0, 1, 21))]
    alphas = sorted(set(alphas) | {0.0})
    per_user: dict[float, np.ndarray] = {}
    for a in alphas:
        per_user[a] = np.array(
            [
                _ndcg_of_order(order_by(fuse_scores(r, s, a)), np.asarray(rel, dtype=bool), k)
                for r, s, rel in zip(retriever_scores, llm_scores, relevant, strict=True)
            ]
        )
    table = {a: float(v.mean()) if len(v) else 0.0 for a, v in per_user.items()}
    best = best_alpha(table)
    gain = per_user[best] - per_user[0.0]
    if best != 0.0 and len(gain) > 1:
        stderr = float(gain.std(ddof=1) / np.sqrt(len(gain)))
        if gain.mean() - z * stderr <= 0:
            return 0.0, table
    return best, table


def best_alpha(table: Mapping[float, float]) -> float:
    """The arg-max of a `tune_alpha` table, ties to the smaller alpha (no significance gate)."""
    return max(table, key=lambda a: (round(table[a], 12), -a))


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


def _pointwise(**kw: Any) -> Reranker:
    from agent.rerank_llm import PointwiseLLMReranker

    return PointwiseLLMReranker(**kw)


def _listwise(**kw: Any) -> Reranker:
    from agent.rerank_llm import ListwiseLLMReranker

    return ListwiseLLMReranker(**kw)


RERANKERS: dict[str, Callable[..., Reranker]] = {
    "identity": lambda **kw: IdentityReranker(**kw),
    "llm-pointwise": _pointwise,
    "llm-listwise": _listwise,
}


def list_rerankers() -> list[str]:
    """Registered re-ranker kinds."""
    return sorted(RERANKERS)


def create_reranker(kind: str, **kwargs: Any) -> Reranker:
    """Build a re-ranker of an explicit kind (no guessing from model names).

    Args:
        kind: one of `list_rerankers()`.
        **kwargs: passed to the kind's constructor, e.g. `llm=`, `model=`, `alpha=`,
            `time_budget_s=`, `batch_size=` for the LLM kinds.

    Raises:
        UnknownBackendError: unknown kind; the message lists the valid ones.
    """
    if kind not in RERANKERS:
        raise UnknownBackendError(
            f"unknown reranker '{kind}'; valid: {', '.join(list_rerankers())}"
        )
    return RERANKERS[kind](**kwargs)
