"""Records the agent returns: what was recommended, why, and how the answer was produced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from retrieval.catalogue import Item


@dataclass(frozen=True)
class HistoryLink:
    """A history item that pulled a recommendation up, in one modality.

    `contribution` is this item's exact share of the fused content score: the per-item
    terms of all links plus nothing else sum to `Evidence.content_score`.
    """

    item_id: str
    title: str
    modality: str
    cosine: float
    contribution: float
    rating: float | None = None  # the user's rating of `item_id`, when known


@dataclass
class Evidence:
    """Every fact an explanation may use; the faithfulness check accepts nothing else."""

    item_id: str
    title: str
    history: list[HistoryLink] = field(default_factory=list)
    modality_scores: dict[str, float] = field(default_factory=dict)  # modality -> weighted cosine
    content_score: float = 0.0  # sum of modality_scores
    co_liked: list[tuple[str, str, int]] = field(default_factory=list)  # (item_id, title, n users)
    matched_tags: list[str] = field(default_factory=list)
    item_tags: list[str] = field(default_factory=list)  # tags, genres, image/sound labels
    request: str | None = None
    request_score: float | None = None  # cosine of the request with the item (best text space)
    labels: dict[str, list[str]] = field(default_factory=dict)  # "image"/"audio" -> item's labels
    disliked_tags: list[str] = field(default_factory=list)  # item tags the user tends to dislike
    rank: int | None = None  # position in the user's current recommendations; None = not listed
    retriever_score: float | None = None
    llm_score: float | None = None
    sources: dict[str, float] = field(default_factory=dict)
    # "image"/"audio" -> label -> the encoder's probability (what was seen/heard, and how surely)
    label_scores: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Explanation:
    """Text shown to the user; `path` says whether the LLM text passed the check."""

    text: str
    evidence: Evidence
    path: str  # "llm" (passed the faithfulness check) or "template"
    rejected: str | None = None  # the LLM text that failed the check, kept for audit
    reason: str | None = None  # why it failed
    rule: str | None = None  # the faithfulness rule that rejected it (agent.explain.faithfulness)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "path": self.path,
            "rejected": self.rejected,
            "reason": self.reason,
            "rule": self.rule,
            "evidence": self.evidence.to_dict(),
        }


@dataclass
class Recommendation:
    """One recommended item with the scores that placed it."""

    item: Item
    score: float
    rank: int
    sources: dict[str, float] = field(default_factory=dict)
    llm_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.item.id,
            "title": self.item.title,
            "score": self.score,
            "llm_score": self.llm_score,
            "sources": self.sources,
            "image": self.item.image,
            "audio": self.item.audio,
        }


@dataclass
class RecommendResult:
    """A ranked list plus how it was produced (re-ranked, or why the retriever order stands)."""

    user_id: str
    items: list[Recommendation]
    reranked: bool
    note: str | None = None  # e.g. "LLM over its 15 s budget; retriever order shown"
    query: str | None = None
    understood: str | None = None  # chat: what the conversation state read (agent/chat/state.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "query": self.query,
            "reranked": self.reranked,
            "note": self.note,
            "understood": self.understood,
            "items": [r.to_dict() for r in self.items],
        }


def recommendations(
    items: Mapping[str, Item], scored: Sequence[tuple[Any, float, float | None]], k: int
) -> list[Recommendation]:
    """`Recommendation`s (ranks from 1) for the first `k` of (candidate, score, LLM score)."""
    return [
        Recommendation(
            item=items[c.item_id],
            score=float(s),
            rank=n,
            sources=dict(c.sources),
            llm_score=None if llm is None else float(llm),
        )
        for n, (c, s, llm) in enumerate(scored[:k], start=1)
    ]
