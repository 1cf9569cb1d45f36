"""Candidate records and candidate generation: everything the re-ranker and explainer start from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Candidate:
    """One item proposed for a user.

    Attributes:
        item_id: catalogue id.
        score: merged retriever score; higher is better. Comparable within one request only.
        sources: per-generator scores that produced it, e.g. {"ease": 0.81, "content-text": 0.42}.
            Kept so explanations can cite them and the LLM fusion can be tuned.
        rank: 1-based position in the retriever's order.
    """

    item_id: str
    score: float
    sources: dict[str, float] = field(default_factory=dict)
    rank: int = 0
