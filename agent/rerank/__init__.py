"""Re-ranking the retriever's candidates: the registry of re-ranker kinds.

A `Reranker` takes a user's context, the retriever's `Candidate`s and the catalogue items,
and returns `RankedResults` built only from those candidates (after AnswerDotAI
`rerankers`' `BaseRanker.rank/score`). Kinds, chosen explicitly with `create_reranker`:

- `identity`: the retriever's order (tests, and the fallback of every other kind);
- `llm-pointwise`: log P(Yes) of "Would this person enjoy X? Answer Yes or No.", the shared
  prefix (the user's history) computed once, its KV cache reused across batched candidates;
- `llm-listwise`: one forward pass per permutation, next-token log-probs over candidate letters,
  averaged over cyclic shifts of the order against position bias.

The final score is `alpha * minmax(llm) + (1 - alpha) * minmax(retriever)`
(`retrieval.fusion.fuse_scores`), with `alpha` tuned on validation users by
`agent.rerank.tuning.tune_alpha` (alpha = 0 is in the grid, so on validation the fusion is
never worse than the retriever). Past the request's time budget, or when the LLM cannot load,
the retriever's order is returned and `RankedResults.fallback_reason` says why.
Implementations are imported lazily, so no implementation imports this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.rerank.base import (
    IdentityReranker,
    RankedEntry,
    RankedResults,
    Reranker,
    UserContext,
)
from retrieval.errors import UnknownBackendError

__all__ = [
    "RankedEntry",
    "RankedResults",
    "Reranker",
    "UserContext",
    "create_reranker",
    "list_rerankers",
]


def _pointwise(**kw: Any) -> Reranker:
    from agent.rerank.llm import PointwiseLLMReranker

    return PointwiseLLMReranker(**kw)


def _listwise(**kw: Any) -> Reranker:
    from agent.rerank.llm import ListwiseLLMReranker

    return ListwiseLLMReranker(**kw)


def _conversation(**kw: Any) -> Reranker:
    from agent.rerank.conversation import ConversationReranker

    return ConversationReranker(**kw)


RERANKERS: dict[str, Callable[..., Reranker]] = {
    "identity": lambda **kw: IdentityReranker(**kw),
    "llm-pointwise": _pointwise,
    "llm-listwise": _listwise,
    "llm-conversation": _conversation,  # conditioned on the chat state (conversation.py)
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
