"""The conversation state: every title mentioned, how the user feels about it, what they ask for.

One typed record over the whole dialogue, updated turn by turn (`update_state`) or for a whole
dialogue at once (`track_dialogue`). The app's chat, the ReDial benchmark and the request
benchmark all read it; the UI shows `to_dict()`.

Turn by turn:

1. titles are linked to catalogue ids (`TitleLinker`); unknown titles stay as text;
2. the rules of `agent.chat.request` give each mention a sentiment and read the request;
3. where the rules are silent about a user's mention, the LLM (when given) picks among
   liked / disliked / not seen / no opinion by token probabilities (`llm_sentiments`), and a
   choice below `LLM_MIN_PROB` stays "neutral" — never free text parsed by hope;
4. "the first", "#2", "that one", "it" are resolved: an ordinal points into the titles of the
   user's previous message when it named two or more (so "something like the first" after "I
   loved Heat and hated Titanic" means Heat), otherwise into the list last shown; "#2" always
   points into the list shown; a pronoun points at the top of the list shown, else the first
   title of the last system message, else the user's last title;
5. the request accumulates across turns (genres, moods, exclusions add up; a new "like X"
   replaces the old anchor; a new kind of thing, or "start over" / "instead", starts afresh;
   "older" / "recent" are relative to the title pointed at, else the "like" anchor).

Bounds: a message is read up to `MAX_TURN_CHARS`; the request text keeps the last
`REQUEST_TURNS` user messages within `MAX_REQUEST_CHARS`; `MAX_MENTIONS` mentions are kept.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agent.chat.linking import Link, TitleLinker
from agent.chat.request import (
    DEFAULT_OLD_BEFORE,
    ERA_MAX,
    ERA_MIN,
    RECENT_YEARS,
    Ref,
    TurnParse,
    parse_turn,
)
from agent.llm.base import LLM

logger = logging.getLogger(__name__)

__all__ = [
    "ConversationState",
    "Mention",
    "Request",
    "describe_state",
    "llm_sentiments",
    "record_shown",
    "track_dialogue",
    "update_state",
]

MAX_TURN_CHARS = 4_000  # characters of one message read (a 100 KB paste is cut, and logged)
MAX_REQUEST_CHARS = 500  # the request text (the user's recent words) is cut to this
REQUEST_TURNS = 3  # user messages the request text spans
MAX_HISTORY = 40  # turns kept for references and the request text
MAX_MENTIONS = 300  # mentions kept (oldest dropped) in very long dialogues
MAX_WORDS = 30  # content words kept in `Request.words`
MAX_LIST = 6  # genres / moods / attributes / people / exclusions kept (newest first)
LLM_MIN_PROB = 0.5  # an LLM sentiment is taken only with at least this probability
LLM_BUDGET_S = 5.0  # seconds the LLM may spend on one message's sentiments
LLM_MAX_MENTIONS = 8  # mentions per message the LLM is asked about (the rest stay neutral)
_LLM_CHOICES = (("A", " A"), ("B", " B"), ("C", " C"), ("D", " D"))
_LLM_LABELS = ("liked", "disliked", "not_seen", "neutral")


@dataclass(frozen=True)
class Mention:
    """One title named in one turn.

    Attributes:
        text: the span as written ("Dark Knight, The (2008)", or "that one" for a pointer).
        item_id: catalogue id, or None for a title not in the catalogue.
        title: the catalogue title, or None when unknown.
        sentiment: "liked" | "disliked" | "not_seen" | "asked" | "neutral".
        turn: 1-based turn number.
        speaker: "user" | "system".
    """

    text: str
    item_id: str | None
    title: str | None
    sentiment: str
    turn: int
    speaker: str


@dataclass(frozen=True)
class Request:
    """What the user asks for, accumulated over the dialogue.

    Attributes:
        text: the user's own words (recent user turns, bounded length), verbatim.
        kinds: wanted modalities: "image" | "audio" | "text" (empty: anything).
        genres: MovieLens-style genre names, lowercase ("comedy", "sci-fi", "film-noir").
        moods: canonical moods ("calm", "happy", "energetic", "scary", "funny", ...).
        attributes: e.g. "for kids", "true story", "instrumental", "short".
        era: inclusive (from, to) release years, or None.
        people: names asked for ("Tom Hanks").
        like_ids: "like X" anchors; but: what should differ ("funnier").
        exclude_ids: items ruled out ("not that one", "not Titanic").
        exclude_terms: genres, moods, names or words ruled out ("horror", "Jim Carrey").
    """

    text: str = ""
    kinds: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    moods: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    era: tuple[int, int] | None = None
    people: tuple[str, ...] = ()
    like_ids: tuple[str, ...] = ()
    but: str | None = None
    exclude_ids: tuple[str, ...] = ()
    exclude_terms: tuple[str, ...] = ()
    has_words: bool = False  # the user asked for something in words beyond titles
    words: str = ""  # content words of recent requests (no titles, filler or exclusions)

    def is_empty(self) -> bool:
        """True when nothing beyond titles was asked for."""
        return not (
            self.kinds
            or self.genres
            or self.moods
            or self.attributes
            or self.era
            or self.people
            or self.like_ids
            or self.but
            or self.exclude_ids
            or self.exclude_terms
            or self.has_words
        )


@dataclass
class ConversationState:
    """The whole dialogue so far, as the recommender understands it.

    Attributes:
        mentions: every title named, in order (bounded by `MAX_MENTIONS`).
        request: what the user asks for.
        turns: messages read so far.
        history: the last `MAX_HISTORY` (speaker, text) turns, each cut to `MAX_TURN_CHARS`.
        shown: the list last shown to the user (item ids, best first), for "#2" / "that one".
        notes: what was cut or ignored, in words (shown to the user by the UI).
        titles: catalogue titles of every id the state refers to (for `to_dict`).
        last_request: the latest user message that asked for something in words (bounded).
    """

    mentions: list[Mention] = field(default_factory=list)
    request: Request = field(default_factory=Request)
    turns: int = 0
    history: list[tuple[str, str]] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    last_request: str = ""

    def _latest(self) -> dict[str, str]:
        """item id -> the user's latest non-neutral feeling (in order of first mention)."""
        out: dict[str, str] = {}
        for m in self.mentions:
            if m.item_id is None or m.speaker != "user":
                continue
            if m.sentiment != "neutral" or m.item_id not in out:
                out[m.item_id] = m.sentiment
        return out

    def ids_with(self, sentiment: str) -> list[str]:
        """Ids whose latest user sentiment is `sentiment`, in order of first mention."""
        return [i for i, s in self._latest().items() if s == sentiment]

    def liked_ids(self) -> list[str]:
        return self.ids_with("liked")

    def disliked_ids(self) -> list[str]:
        return self.ids_with("disliked")

    def mentioned_ids(self) -> list[str]:
        """Every linked id named by anyone, in order of first mention."""
        return list(dict.fromkeys(m.item_id for m in self.mentions if m.item_id))

    def unknown_titles(self) -> list[str]:
        """Titles named that are not in the catalogue (kept as text)."""
        return list(dict.fromkeys(m.text for m in self.mentions if m.item_id is None))

    def title_of(self, item_id: str) -> str:
        """The catalogue title of an id the state refers to (the id itself if unknown)."""
        return self.titles.get(item_id, item_id)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the UI and reports (titles, not only ids; nothing escaped here)."""

        def titled(ids: Sequence[str]) -> list[dict[str, str]]:
            return [{"id": i, "title": self.title_of(i)} for i in ids]

        req = asdict(self.request)
        req["era"] = list(self.request.era) if self.request.era else None
        req["like"] = titled(self.request.like_ids)
        req["exclude"] = titled(self.request.exclude_ids)
        for k in ("kinds", "genres", "moods", "attributes", "people", "exclude_terms"):
            req[k] = list(req[k])
        del req["like_ids"], req["exclude_ids"]
        return {
            "turns": self.turns,
            "liked": titled(self.liked_ids()),
            "disliked": titled(self.disliked_ids()),
            "not_seen": titled(self.ids_with("not_seen")),
            "asked": titled(self.ids_with("asked")),
            "unknown": self.unknown_titles(),
            "request": req,
            "notes": list(self.notes),
        }


def _dedupe(*groups: Sequence[str], drop: Sequence[str] = ()) -> tuple[str, ...]:
    seen = dict.fromkeys(x for g in groups for x in g if x not in drop)
    return tuple(list(seen)[:MAX_LIST])


def llm_sentiments(
    llm: LLM, message: str, titles: Sequence[str], *, time_budget_s: float | None = LLM_BUDGET_S
) -> list[str | None]:
    """The LLM's reading of how the writer of `message` feels about each title, by token
    probabilities over four lettered answers; None where no answer reaches `LLM_MIN_PROB`.

    The message and titles are quoted as data (`sanitize_text`); the message is shared by all
    titles (one prefix), each title costs only its own tokens. Past `time_budget_s` it raises
    `agent.rerank.llm.BudgetExceeded` (`update_state` then keeps the mentions neutral).
    """
    from agent.prompting import load_prompt
    from agent.rerank.llm import Budget, sanitize_text

    if not titles:
        return []
    prompt = load_prompt("chat_sentiment").render(
        message='"' + sanitize_text(message, max_chars=600) + '"'
    )
    prefix = llm.chat_text(prompt, system=load_prompt("rerank_system").render())
    suffixes = ['"' + sanitize_text(t, max_chars=120) + '": ' for t in titles]
    out = llm.choice_logprobs(
        prefix, suffixes, _LLM_CHOICES, on_progress=Budget(time_budget_s).check
    )
    lp = np.asarray(out.logprobs, dtype=np.float64)
    probs = np.exp(lp - np.logaddexp.reduce(lp, axis=1, keepdims=True))
    answers: list[str | None] = []
    for row in probs:
        j = int(np.argmax(row))
        answers.append(_LLM_LABELS[j] if row[j] >= LLM_MIN_PROB else None)
    return answers


def _turn_links(state: ConversationState, speaker: str, before: int | None = None) -> list[str]:
    """Linked ids of the most recent turn by `speaker` that named any (before turn `before`)."""
    by_turn: dict[int, list[str]] = {}
    for m in state.mentions:
        if m.speaker == speaker and m.item_id and (before is None or m.turn < before):
            if m.text not in ("it", "that", "that one", "this one", "them", "those"):
                by_turn.setdefault(m.turn, []).append(m.item_id)
    if not by_turn:
        return []
    return list(dict.fromkeys(by_turn[max(by_turn)]))


def _resolve(state: ConversationState, ref: Ref, turn: int) -> list[str]:
    """Item ids a reference points at (empty when it points at nothing known)."""
    shown = state.shown
    system = _turn_links(state, "system", before=turn)
    user = _turn_links(state, "user", before=turn)
    if ref.ordinal is not None:
        if ref.shown:
            pool = shown or system
        elif len(user) >= 2:
            pool = user
        else:
            pool = shown or system or user
        index = len(pool) - 1 if ref.ordinal == -1 else ref.ordinal - 1
        return [pool[index]] if 0 <= index < len(pool) else []
    plural = ref.pointer in ("those", "them", "those ones", "both", "either")
    if plural:
        return system or shown[:1] or user
    for pool in (shown, system, user):
        if pool:
            return [pool[0]]
    return []


def _request_text(state: ConversationState, reset: bool) -> str:
    users = [t for s, t in state.history if s == "user"]
    recent = users[-1:] if reset else users[-REQUEST_TURNS:]
    text = " / ".join(" ".join(t.split()) for t in recent if t.strip())
    return text[-MAX_REQUEST_CHARS:].lstrip() if len(text) > MAX_REQUEST_CHARS else text


def _recent_words(new: str, old: str) -> str:
    """The newest request words first, then older ones, `MAX_WORDS` words at most."""
    words = list(dict.fromkeys([*new.split(), *old.split()]))
    return " ".join(words[:MAX_WORDS])


def _starts_afresh(parse: TurnParse, base: Request) -> bool:
    """A message that asks for something of its own (genres, moods, another kind) without
    building on the request so far ("but", "also", "older", "like X", "that one") replaces it:
    "a scary movie from the 80s" after "like Heat but funnier" is not a funny scary Heat."""
    if parse.kinds and base.kinds and set(parse.kinds) != set(base.kinds):
        return True
    return bool(parse.genres or parse.moods) and not parse.refines


def _merge_request(
    state: ConversationState,
    parse: TurnParse,
    links: Sequence[Link],
    refs: list[tuple[Ref, list[str]]],
    linker: TitleLinker,
) -> Request:
    base = Request() if parse.reset else state.request
    if _starts_afresh(parse, base):  # a new request: only the exclusions carry over
        base = Request(exclude_ids=base.exclude_ids, exclude_terms=base.exclude_terms)
    new_like = [links[k].item_id for k in parse.like_links if links[k].item_id]
    new_like += [i for r, ids in refs if r.role == "like" for i in ids]
    excluded_now = [links[k].item_id for k in parse.exclude_links if links[k].item_id]
    excluded_now += [i for r, ids in refs if r.role == "exclude" for i in ids]
    like_ids = _dedupe(new_like) if new_like else base.like_ids
    but = parse.but if (new_like or parse.but) else base.but
    wanted = [*parse.genres, *parse.moods]
    exclude_terms = _dedupe(parse.exclude_terms, base.exclude_terms, drop=wanted)
    era = base.era
    if parse.era is not None:
        era = parse.era
    elif parse.era_relative:
        anchors = [*excluded_now, *like_ids]
        years = [y for y in (linker.year(i) for i in anchors) if y]
        if parse.era_relative == "older":
            era = (ERA_MIN, (years[0] if years else DEFAULT_OLD_BEFORE) - 1)
        else:
            latest = linker.max_year or DEFAULT_OLD_BEFORE + 25
            era = (max(latest - RECENT_YEARS, years[0] + 1 if years else 0), ERA_MAX)
    return Request(
        text=_request_text(state, parse.reset or _starts_afresh(parse, state.request)),
        kinds=_dedupe(parse.kinds or base.kinds),
        genres=_dedupe(parse.genres, base.genres, drop=parse.exclude_terms),
        moods=_dedupe(parse.moods, base.moods, drop=parse.exclude_terms),
        attributes=_dedupe(parse.attributes, base.attributes),
        era=era,
        people=_dedupe(parse.people, base.people, drop=parse.exclude_terms),
        like_ids=like_ids,
        but=but,
        exclude_ids=tuple(dict.fromkeys([*base.exclude_ids, *excluded_now])),
        exclude_terms=exclude_terms,
        has_words=parse.has_words or (base.has_words and not parse.reset),
        words=_recent_words(parse.words, base.words),
    )


def update_state(
    state: ConversationState | None,
    speaker: str,
    text: str,
    *,
    linker: TitleLinker,
    llm: LLM | None = None,
) -> ConversationState:
    """A new state with one more turn read (the given state is not changed).

    Args:
        state: the state so far, or None to start.
        speaker: "user" or "system" (system turns add mentions, not requests).
        text: the message; anything (empty, 100 KB, any language) is accepted.
        linker: the catalogue's title linker.
        llm: when given, asked about user mentions the rules leave undecided.

    Raises:
        ValueError: an unknown speaker (the message lists the valid ones).
    """
    if speaker not in ("user", "system"):
        raise ValueError(f"speaker must be 'user' or 'system', got {speaker!r}")
    new = copy.copy(state) if state is not None else ConversationState()
    new.mentions = list(new.mentions)
    new.history = list(new.history)
    new.notes = []
    new.shown = list(new.shown)
    new.titles = dict(new.titles)
    new.turns += 1
    turn = new.turns
    text = text if isinstance(text, str) else str(text)
    if len(text) > MAX_TURN_CHARS:
        new.notes.append(f"only the first {MAX_TURN_CHARS:,} of {len(text):,} characters were read")
        logger.info("message of %d characters cut to %d", len(text), MAX_TURN_CHARS)
        text = text[:MAX_TURN_CHARS]
    links = linker.find(text)
    new.history = [*new.history, (speaker, text)][-MAX_HISTORY:]

    def add(link_text: str, item_id: str | None, sentiment: str) -> None:
        title = linker.title(item_id) if item_id else None
        if item_id and title:
            new.titles[item_id] = title
        new.mentions.append(Mention(link_text, item_id, title, sentiment, turn, speaker))

    if speaker == "system":
        for ln in links:
            add(ln.text, ln.item_id, "neutral")
        new.mentions = new.mentions[-MAX_MENTIONS:]
        return new

    parse = parse_turn(text, links)
    sentiments = list(parse.sentiments)
    undecided = [k for k, s in enumerate(sentiments) if s is None and links[k].item_id]
    if llm is not None and undecided:
        asked = undecided[:LLM_MAX_MENTIONS]
        try:
            answers = llm_sentiments(llm, text, [links[k].text for k in asked])
            for k, a in zip(asked, answers, strict=True):
                sentiments[k] = a
        except Exception as e:  # noqa: BLE001 - the rules' reading stands if the LLM fails
            logger.warning(
                "sentiment LLM failed (%s: %s); mentions stay neutral", type(e).__name__, e
            )
    for ln, s in zip(links, sentiments, strict=True):
        add(ln.text, ln.item_id, s or "neutral")
    refs = [(r, _resolve(new, r, turn)) for r in parse.refs]
    for _, ids in refs:
        new.titles.update({i: t for i in ids if (t := linker.title(i))})
    for r, ids in refs:
        if r.role == "sentiment" and r.sentiment:
            for i in ids:
                add(r.pointer or f"#{r.ordinal}", i, r.sentiment)
    new.request = _merge_request(new, parse, links, refs, linker)
    if parse.has_words:
        new.last_request = " ".join(text.split())[:MAX_REQUEST_CHARS]
    new.mentions = new.mentions[-MAX_MENTIONS:]
    return new


def record_shown(
    state: ConversationState, item_ids: Sequence[str], titles: Sequence[str] | None = None
) -> ConversationState:
    """Remember the list just shown to the user ("#2", "that one" point into it)."""
    state.shown = [str(i) for i in item_ids]
    if titles is not None:
        state.titles.update(zip(state.shown, (str(t) for t in titles), strict=False))
    return state


def track_dialogue(
    turns: Sequence[tuple[str, str]],
    *,
    linker: TitleLinker,
    llm: LLM | None = None,
) -> ConversationState:
    """The state after a whole dialogue of (speaker, text) turns, in order."""
    state = ConversationState()
    for speaker, text in turns:
        state = update_state(state, speaker, text, linker=linker, llm=llm)
    return state


def describe_state(d: Mapping[str, Any]) -> str:
    """One line of what was understood, from `ConversationState.to_dict()` (plain text: the
    caller escapes it for Markdown/HTML). Empty when nothing was understood."""

    def names(rows: Sequence[Mapping[str, str]]) -> str:
        return ", ".join(str(r.get("title", r.get("id", ""))) for r in rows)

    r = d.get("request", {})
    parts: list[str] = []
    for key, label in (("liked", "liked"), ("disliked", "disliked"), ("not_seen", "not seen")):
        if d.get(key):
            parts.append(f"{label}: {names(d[key])}")
    if d.get("unknown"):
        parts.append("not in the catalogue: " + ", ".join(map(str, d["unknown"][:5])))
    if r.get("kinds"):
        parts.append("kind: " + ", ".join(r["kinds"]))
    for key, label in (("genres", "genre"), ("moods", "mood"), ("attributes", "also")):
        if r.get(key):
            parts.append(f"{label}: " + ", ".join(r[key]))
    if r.get("people"):
        parts.append("with: " + ", ".join(r["people"]))
    if r.get("era"):
        lo, hi = r["era"]
        parts.append(
            f"years {lo}-{hi}"
            if lo > ERA_MIN and hi < ERA_MAX
            else (f"before {hi + 1}" if lo <= ERA_MIN else f"from {lo}")
        )
    if r.get("like"):
        parts.append("like " + names(r["like"]) + (f" but {r['but']}" if r.get("but") else ""))
    excluded = [*map(str, r.get("exclude_terms", [])), names(r.get("exclude", []))]
    excluded = [x for x in excluded if x]
    if excluded:
        parts.append("not: " + ", ".join(excluded))
    return " · ".join(parts)
