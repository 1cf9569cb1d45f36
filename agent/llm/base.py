"""What every LLM backend offers the agent: chat text, generation, and scoring by choices.

Rerankers, the explainer and chat depend on this Protocol only, so any backend (transformers,
llama.cpp, an OpenAI-compatible server) can serve them. Scoring reads token probabilities,
never free text: `choice_logprobs` gives, after a shared prefix and each suffix, the
log-probability that the next token starts each of a few fixed answers ("Yes"/"No", letters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class ChoiceScores:
    """Next-token log-probabilities of fixed answers after `prefix + suffix`, per suffix.

    Attributes:
        logprobs: `(n_suffixes, n_choices)` float64; entry (i, j) is log P(the next token
            starts choice j) = logsumexp over the distinct first tokens of the words in
            `choices[j]` (e.g. ["Yes", " Yes", "yes"]). Not renormalised over the choices.
        prefix_tokens: tokens in the shared prefix (computed once).
        suffix_tokens: real (unpadded) suffix tokens over all suffixes.
        computed_tokens: positions actually run through the model.
    """

    logprobs: np.ndarray
    prefix_tokens: int
    suffix_tokens: int
    computed_tokens: int


@runtime_checkable
class LLM(Protocol):
    """A loaded instruction-tuned causal LM, whatever runs it."""

    name: str
    backend: str

    def chat_text(self, user: str, *, system: str | None = None) -> str:
        """The full prompt text for one user turn, ending where the assistant's answer starts."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` encodes to (no special tokens added)."""
        ...

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> str:
        """A completion (greedy unless `temperature > 0`), generated text only."""
        ...

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Like `generate`, but yields text pieces as they are produced."""
        ...

    def choice_logprobs(
        self,
        prefix: str,
        suffixes: Sequence[str],
        choices: Sequence[Sequence[str]],
        *,
        batch_size: int = 20,
        on_progress: ProgressFn | None = None,
    ) -> ChoiceScores:
        """Log-probabilities of each choice after `prefix + s` for every suffix `s`.

        Args:
            prefix: text shared by every prompt; its KV cache is computed once.
            suffixes: per-candidate continuations; each must encode to at least one token.
            choices: groups of answer words; a group's score is the logsumexp over the
                distinct first tokens of its words.
            batch_size: suffixes per forward pass (backends may ignore it).
            on_progress: called with the share of all tokens computed so far (0 < s <= 1);
                it may raise to stop early (the re-ranker's time budget does).
        """
        ...
