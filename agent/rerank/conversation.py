"""An LLM re-ranker conditioned on the conversation: does this candidate fit what was asked?

Pointwise P(Yes), like `llm-pointwise`, but the shared prefix is the conversation state, not a
rating history: the titles the user liked and disliked, their own recent words (quoted as data,
cut to `MAX_REQUEST_WORDS` words, instruction-like sentences dropped by `sanitize_text`) and
what the rules understood (kinds, genres, moods, era, "like X but Y", exclusions). Each
candidate is quoted as `"Title (year). Genres: a, b. <= 12 words of description. Photo shows:
... Sounds like: ..."`, so for media items the model reads what the encoders saw and heard.
The prefix is computed once (`LLM.choice_logprobs`), each candidate costs only its own text.

Budget, fallback and fusion are those of every LLM re-ranker (`agent.rerank.llm`): a per-call
`Budget`, the retriever's order with a reason past it, and
`alpha * minmax(llm) + (1 - alpha) * minmax(retriever)` (`retrieval.fusion.fuse_scores`), with
alpha tuned by `agent.rerank.tuning.tune_alpha`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agent.prompting import load_prompt
from agent.rerank.base import UserContext
from agent.rerank.llm import (
    YES_NO,
    Budget,
    _LLMReranker,
    prompt_title,
    sanitize_text,
    yes_probability,
)
from retrieval.candidates import Candidate
from retrieval.catalogue import Item

__all__ = ["ConversationContext", "ConversationReranker", "candidate_text"]

MAX_REQUEST_WORDS = 60  # the user's words in the prompt (newest kept)
MAX_TITLES = 6  # liked titles in the prompt (most recent), and at most 3 disliked
MAX_DISLIKED = 3
MAX_DESC_WORDS = 12  # words of each candidate's description
MAX_GENRES = 3  # tags (genres) per candidate
# tags per candidate with a sound: the catalogue's measured ones ("slow tempo", "quiet",
# "tender music") come after its own, and a mood request is judged by exactly those
MAX_AUDIO_TAGS = 7
MAX_LABELS = 3  # encoder labels per modality per candidate
_YEAR_IN_TITLE = re.compile(r"\((?:18|19|20)\d\d\)\s*$")


class StateLike(Protocol):
    """What this module reads of `agent.chat.state.ConversationState` (not imported: chat
    already imports from rerank, and sibling packages must not import each other both ways)."""

    request: Any

    def liked_ids(self) -> list[str]: ...

    def disliked_ids(self) -> list[str]: ...

    def title_of(self, item_id: str) -> str: ...


@dataclass(frozen=True)
class ConversationContext:
    """What the conversation re-ranker reads about the user (titles and words, no ids).

    Attributes:
        liked: titles the user liked, oldest first.
        disliked: titles the user disliked.
        request: the user's own recent words.
        understood: what the rules read from them, in a few words ("moods: calm; kind: audio").
        labels: item id -> {"image": [...], "audio": [...]} labels the encoders gave (optional).
        user_id: for logs only.
    """

    liked: tuple[str, ...] = ()
    disliked: tuple[str, ...] = ()
    request: str = ""
    understood: str = ""
    labels: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    user_id: str | None = None

    @classmethod
    def from_state(
        cls,
        state: StateLike,
        *,
        labels: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        user_id: str | None = None,
    ) -> ConversationContext:
        """The context of a conversation state (titles from the state's own title map)."""
        r = state.request
        parts: list[str] = []
        if r.kinds:
            parts.append("kind: " + ", ".join(r.kinds))
        for name, values in (("genres", r.genres), ("mood", r.moods), ("also", r.attributes)):
            if values:
                parts.append(f"{name}: " + ", ".join(values))
        if r.era:
            lo, hi = r.era
            parts.append(
                f"released {lo}-{hi}"
                if lo > 1870 and hi < 2100
                else (f"released before {hi + 1}" if lo <= 1870 else f"released from {lo}")
            )
        if r.people:
            parts.append("with: " + ", ".join(r.people))
        if r.like_ids:
            like = ", ".join(state.title_of(i) for i in r.like_ids)
            parts.append(f"like {like}" + (f" but {r.but}" if r.but else ""))
        excluded = [*r.exclude_terms, *(state.title_of(i) for i in r.exclude_ids)]
        if excluded:
            parts.append("not: " + ", ".join(excluded))
        return cls(
            liked=tuple(state.title_of(i) for i in state.liked_ids()),
            disliked=tuple(state.title_of(i) for i in state.disliked_ids()),
            request=r.text,
            understood="; ".join(parts),
            labels=dict(labels or {}),
            user_id=user_id,
        )

    @classmethod
    def from_user(cls, user: UserContext) -> ConversationContext:
        """A rating-history context read as a conversation (for the shared evaluation code)."""
        return cls(
            liked=tuple(t for t, _ in user.liked),
            disliked=tuple(user.disliked),
            request=user.request or "",
            user_id=user.user_id,
        )


def _as_context(context: Any) -> ConversationContext:
    if isinstance(context, ConversationContext):
        return context
    if isinstance(context, UserContext):
        return ConversationContext.from_user(context)
    if hasattr(context, "request") and callable(getattr(context, "liked_ids", None)):
        return ConversationContext.from_state(context)
    raise TypeError(
        "context must be a ConversationContext, ConversationState or UserContext, "
        f"got {type(context).__name__}"
    )


def _year(item: Item) -> int | None:
    year = item.metadata.get("year") if isinstance(item.metadata, Mapping) else None
    try:
        return int(year) if year not in (None, "") else None
    except (TypeError, ValueError):
        return None


def candidate_text(
    item: Item | None,
    *,
    item_id: str = "",
    labels: Mapping[str, Sequence[str]] | None = None,
    desc_words: int = MAX_DESC_WORDS,
) -> str:
    """One candidate as quoted data: `"Title (year). Genres: a, b. Description... Photo shows:
    x, y. Sounds like: z."`; every piece sanitized (see `agent.rerank.llm.sanitize_text`)."""
    if item is None:
        return '"' + sanitize_text(item_id, max_chars=80) + '"'
    title = item.title
    year = _year(item)
    if year and not _YEAR_IN_TITLE.search(title):
        title = f"{title} ({year})"
    parts = [sanitize_text(prompt_title(title, short=False), max_chars=120) + "."]
    if item.tags:
        n, label = (MAX_AUDIO_TAGS, "Tags") if item.audio else (MAX_GENRES, "Genres")
        parts.append(f"{label}: " + sanitize_text(", ".join(item.tags[:n]), max_chars=n * 24) + ".")
    if item.description and desc_words > 0:
        words = item.description.split()
        desc = " ".join(words[:desc_words]) + (" ..." if len(words) > desc_words else "")
        parts.append(sanitize_text(desc, max_chars=desc_words * 12))
    for modality, name in (("image", "Photo shows"), ("audio", "Sounds like")):
        seen = list((labels or {}).get(modality, ()))[:MAX_LABELS]
        if seen:
            parts.append(f"{name}: " + sanitize_text("; ".join(seen), max_chars=100) + ".")
    return '"' + " ".join(p for p in parts if p.strip(" .")) + '"'


def prompt_fields(ctx: ConversationContext) -> dict[str, str]:
    """The `liked`, `disliked`, `request` and `understood` fields, quoted and bounded."""

    def titles(values: Sequence[str], n: int) -> str:
        kept = list(values)[-n:]
        return ", ".join('"' + sanitize_text(t, max_chars=80) + '"' for t in kept) or "(none)"

    words = ctx.request.split()
    request = " ".join(words[-MAX_REQUEST_WORDS:])
    request = sanitize_text(request, max_chars=MAX_REQUEST_WORDS * 10) if request else ""
    return {
        "liked": titles(ctx.liked, MAX_TITLES),
        "disliked": titles(ctx.disliked, MAX_DISLIKED),
        "request": f'"{request}"' if request else "(none)",
        "understood": sanitize_text(ctx.understood, max_chars=300) or "(nothing specific)",
    }


class ConversationReranker(_LLMReranker):
    """P(Yes: this candidate fits what the person asks for now), the conversation computed once.

    Args (beyond `agent.rerank.llm`'s: llm, model, llm_kwargs, alpha, time_budget_s,
    batch_size):
        desc_words: words of each candidate's description quoted (0 = none).
        prompt: template name in prompts/ (variables liked, disliked, request, understood).
    """

    name = "llm-conversation"

    def __init__(
        self, *, desc_words: int = MAX_DESC_WORDS, prompt: str = "rerank_conversation", **kw: Any
    ) -> None:
        kw.setdefault("system_prompt", "rerank_system")
        for unused in ("max_history", "max_desc_chars", "max_tags", "short_titles"):
            kw.pop(unused, None)  # the conversation prompt has its own bounds (module constants)
        super().__init__(**kw)
        self.desc_words = desc_words
        self.prompt = load_prompt(prompt)

    def prefix(self, context: Any) -> str:
        """The shared prompt text (chat template applied) for a context."""
        ctx = _as_context(context)
        return self.llm.chat_text(self.prompt.render(**prompt_fields(ctx)), system=self.system)

    def suffixes(
        self, context: Any, candidates: Sequence[Candidate], items: Mapping[str, Item]
    ) -> list[str]:
        """Per-candidate continuations: the quoted candidate and a colon."""
        ctx = _as_context(context)
        return [
            candidate_text(
                items.get(c.item_id),
                item_id=c.item_id,
                labels=ctx.labels.get(c.item_id),
                desc_words=self.desc_words,
            )
            + ":"
            for c in candidates
        ]

    def _scores(
        self,
        user: Any,
        candidates: Sequence[Candidate],
        items: Mapping[str, Item],
        budget: Budget,
    ) -> tuple[np.ndarray, int]:
        out = self.llm.choice_logprobs(
            self.prefix(user),
            self.suffixes(user, candidates, items),
            YES_NO,
            batch_size=self.batch_size,
            on_progress=budget.check,
        )
        return yes_probability(out.logprobs), out.computed_tokens
