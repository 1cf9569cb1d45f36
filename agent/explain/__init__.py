"""Explanations: evidence records, the explainer (LLM + template fallback), rendering and the
faithfulness check that rejects any sentence naming what the evidence does not hold."""

from __future__ import annotations

from agent.explain.evidence import build_evidence
from agent.explain.explainer import Explainer
from agent.explain.faithfulness import check_faithfulness

__all__ = ["Explainer", "build_evidence", "check_faithfulness"]
