"""fusionrec's agent layer: `from agent import RecommendationAgent`."""

from __future__ import annotations

from typing import Any

__all__ = ["RecommendationAgent", "Recommendation", "Explanation", "Evidence"]


def __getattr__(name: str) -> Any:  # lazy: importing `agent` must not load the model stack
    if name == "RecommendationAgent":
        from agent.agent import RecommendationAgent

        return RecommendationAgent
    if name in ("Recommendation", "Explanation", "Evidence"):
        from agent import records

        return getattr(records, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
