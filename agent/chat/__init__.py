"""Chat: intents (rules, and the LLM for ambiguous messages) and replies."""

from __future__ import annotations

from agent.chat.respond import format_list, respond

__all__ = ["format_list", "respond"]
