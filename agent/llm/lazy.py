"""An LLM that loads on first use, so start-up and capability checks never load a model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from agent.llm.base import LLM, ChoiceScores, ProgressFn


class LazyLLM:
    """Satisfies the `LLM` Protocol; `load()` runs once, on the first call that needs the
    model, under a lock (the app serves several requests at once).

    Args:
        name: what will be loaded (shown in logs and the UI before loading).
        backend: the backend it will be loaded with (may be "auto").
        load: builds the real LLM (e.g. a `functools.partial` of `load_llm`).
    """

    def __init__(self, name: str, backend: str, load: Callable[[], LLM]) -> None:
        self.name, self.backend = name, backend
        self._load, self._llm, self._lock = load, None, threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory already."""
        return self._llm is not None

    def get(self) -> LLM:
        """The real LLM (loading it now if needed; raises ModelLoadError if it cannot)."""
        with self._lock:
            if self._llm is None:
                self._llm = self._load()
                self.backend = self._llm.backend
            return self._llm

    def chat_text(self, user: str, *, system: str | None = None) -> str:
        return self.get().chat_text(user, system=system)

    def count_tokens(self, text: str) -> int:
        return self.get().count_tokens(text)

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> str:
        return self.get().generate(
            prompt,
            max_new_tokens=max_new_tokens,
            system=system,
            chat=chat,
            temperature=temperature,
        )

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        return self.get().stream(
            prompt,
            max_new_tokens=max_new_tokens,
            system=system,
            chat=chat,
            temperature=temperature,
        )

    def choice_logprobs(
        self,
        prefix: str,
        suffixes: Sequence[str],
        choices: Sequence[Sequence[str]],
        *,
        batch_size: int = 20,
        on_progress: ProgressFn | None = None,
    ) -> ChoiceScores:
        return self.get().choice_logprobs(
            prefix, suffixes, choices, batch_size=batch_size, on_progress=on_progress
        )
