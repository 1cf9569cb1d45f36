"""One chat turn's list, driven by the conversation state: candidates, filters, LLM re-rank.

`recommend_for_state` is what `RecommendationAgent.recommend_conversation` runs:

1. **Candidates** from the agent's hybrid retriever: the user's stored history plus the titles
   liked in the conversation and the "like X" anchors (as fresh likes), the disliked ones pushed
   away, and a query made of what was asked for (moods, genres, attributes, people, "but Y",
   the request's content words) whose weight is multiplied by `[hybrid] chat_query_boost`.
2. **Filters** as exclusions before ranking, so they cannot be drowned by the history: titles
   mentioned in the conversation, "not that one", "no horror" (title/tag match, like the
   chat's older "not into X"), the kind of thing wanted (a photo needs an image, "to listen
   to" needs audio) and the era (items with a known year outside it). A filter that would
   leave fewer than `k` items is dropped and the result's note says so.
3. **LLM re-rank** by `agent.rerank.conversation.ConversationReranker` over the top
   `[llm] chat_top` candidates when the request has words and `[llm] chat_alpha` > 0, inside
   `[llm] time_budget_s`; past it the retriever's list is shown and the note says why.

Between 2 and 3, a request for a mood of something to listen to ("calm music", "nothing
energetic") is matched against what the audio measured (`agent.chat.moods`): such a request
wants music (when the catalogue has at least `k` tracks), and the candidates' order is fused
with the measured mood fit at `[hybrid] chat_mood_weight`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agent.chat.moods import (
    MOOD_EVIDENCE,
    MUSIC_WORDS,
    is_music,
    measured,
    mood_scores,
    taste_scores,
)
from agent.chat.state import ConversationState, describe_state
from agent.records import RecommendResult, recommendations
from agent.rerank.base import RankedResults, final_order, retriever_order
from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from retrieval.fusion import fuse_scores
from retrieval.profiles import History, profile_weights

logger = logging.getLogger(__name__)

__all__ = ["item_year", "recommend_for_state", "retrieval_query"]

_YEAR_IN_TITLE = re.compile(r"\(((?:18|19|20)\d\d)\)\s*$")
MAX_QUERY_WORDS = 40  # words of the retrieval query built from the state
# "a sound for my kids", "the sound of a violin": a clip of a thing, not listening by mood
SOUND_WORDS = re.compile(r"\bsounds?\b", re.I)
MOOD_POOL = 300  # candidates a measured-mood request is chosen from (all tracks of a demo)
# A mood as the retrieval query spells it: the words item texts and labels use for it
MOOD_WORDS = {
    "calm": "calm relaxing peaceful gentle",
    "happy": "happy cheerful upbeat",
    "energetic": "energetic upbeat fast",
    "exciting": "exciting thrilling action",
    "sad": "sad melancholy",
    "tender": "tender sweet gentle",
    "scary": "scary horror frightening",
    "funny": "funny comedy hilarious",
    "dark": "dark gritty",
    "nostalgic": "nostalgic",
    "epic": "epic heroic",
    "romantic": "romantic love",
    "thoughtful": "thought-provoking",
}


def item_year(item: Item) -> int | None:
    """Release year from metadata ("year") or a trailing "(1995)" in the title."""
    meta = item.metadata if isinstance(item.metadata, Mapping) else {}
    try:
        if meta.get("year") not in (None, ""):
            return int(meta["year"])
    except (TypeError, ValueError):
        pass
    m = _YEAR_IN_TITLE.search(item.title)
    return int(m.group(1)) if m else None


def retrieval_query(state: ConversationState, items: Mapping[str, Item]) -> str:
    """The text the hybrid retriever's `query` source matches: what was asked for, in words."""
    r = state.request
    parts: list[str] = [MOOD_WORDS.get(m, m) for m in r.moods]
    parts += [*r.genres, *r.attributes, *r.people]
    if r.but:
        parts.append(r.but)
    # "like X" anchors are not in the query: they join the history (content and co-ratings),
    # so the query carries what should differ ("but funnier") instead of repeating X
    parts.append(r.words)
    words = " ".join(p for p in parts if p).split()
    return " ".join(list(dict.fromkeys(words))[:MAX_QUERY_WORDS])


def _history(
    base: History, state: ConversationState, items: Mapping[str, Item], like: float
) -> History:
    liked = [i for i in dict.fromkeys([*state.liked_ids(), *state.request.like_ids]) if i in items]
    liked = [i for i in liked if i not in base.item_ids]
    now = int(time.time())
    disliked = [i for i in state.disliked_ids() if i in items]
    return History(
        [*base.item_ids, *liked],
        [*base.ratings, *([like] * len(liked))],
        [*base.timestamps, *([now] * len(liked))],
        list(dict.fromkeys([*base.disliked, *disliked])),
    )


def _kind_and_era_filters(
    state: ConversationState,
    items: Mapping[str, Item],
    excluded: set[str],
    k: int,
    *,
    music: bool = False,
) -> tuple[set[str], list[str]]:
    """Ids the wanted kind and era rule out, and notes for the filters that had to be dropped.
    `music`: the user's listening is music (`_sound_taste`), so audio means tracks."""
    r = state.request
    notes: list[str] = []
    out: set[str] = set()
    need = {"image": lambda it: bool(it.image), "audio": lambda it: bool(it.audio)}
    wanted = [kind for kind in r.kinds if kind in need]
    if music or wants_music(state):  # "calm music", "something calm to listen to": tracks
        need["audio"] = is_music
    if wanted:
        off = {i for i, it in items.items() if not any(need[kind](it) for kind in wanted)}
        if len(items) - len(off | excluded) >= k:
            out |= off
        else:
            notes.append(f"too few items with {' or '.join(wanted)} here; showing any kind")
    if r.era:
        lo, hi = r.era
        years = {i: item_year(it) for i, it in items.items()}
        off = {i for i, y in years.items() if y is not None and not lo <= y <= hi}
        if len(items) - len(off | out | excluded) >= k:
            out |= off
        else:
            notes.append("too few items from that time here; showing any year")
    return out, notes


def _mood_terms(state: ConversationState) -> tuple[list[str], list[str]]:
    """Moods (and "fast"/"slow") asked for, and moods ruled out ("nothing energetic"), that
    the audio can measure."""
    r = state.request
    wanted = [m for m in [*r.moods, *r.attributes] if m in MOOD_EVIDENCE]
    return wanted, [t for t in r.exclude_terms if t in MOOD_EVIDENCE and t not in wanted]


def wants_music(state: ConversationState) -> bool:
    """Something to listen to, with a mood ("calm", "not energetic") or named as music."""
    r = state.request
    return "audio" in r.kinds and (any(_mood_terms(state)) or bool(MUSIC_WORDS.search(r.text)))


def _sound_taste(
    state: ConversationState, history: History, items: Mapping[str, Item], hybrid: Any
) -> tuple[list[Item], list[Item]]:
    """The measured items the user liked and disliked, when they ask for something to listen
    to without naming a mood: what they liked sounding is then the mood ("something to listen
    to" from a fan of calm tracks). Empty lists otherwise, and for "a sound of ..." (a clip of
    a thing, whose mood is not the point). Likes and dislikes as the content profile reads
    them (`retrieval.profiles.profile_weights`)."""
    r = state.request
    if list(r.kinds) != ["audio"] or any(_mood_terms(state)) or SOUND_WORDS.search(r.text):
        return [], []
    ids, w = profile_weights(history, half_life=None, like_threshold=hybrid.content_like_threshold)
    heard = {i: float(x) for i, x in zip(ids, w, strict=True) if i in items and measured(items[i])}
    liked = [items[i] for i, x in heard.items() if x > 0]
    return (liked, [items[i] for i, x in heard.items() if x < 0]) if liked else ([], [])


def _mood_fused(
    cands: list[Candidate],
    state: ConversationState,
    items: Mapping[str, Item],
    weight: float,
    taste: tuple[list[Item], list[Item]] = ([], []),
) -> list[Candidate]:
    """The candidates re-ordered by the retriever's score fused with the measured mood fit: the
    moods asked for, or else the sound of what the user liked (`_sound_taste`)."""
    wanted, ruled_out = _mood_terms(state)
    if weight <= 0 or len(cands) < 2 or not (wanted or ruled_out or taste[0]):
        return cands
    pool = [items[c.item_id] for c in cands]
    if wanted or ruled_out:
        fit, source = mood_scores(pool, wanted, ruled_out), "mood"
    else:
        fit, source = taste_scores(pool, *taste), "taste"
    if fit is None:
        return cands
    fused = fuse_scores(np.asarray([c.score for c in cands]), fit, min(weight, 1.0))
    order = np.argsort(-fused, kind="stable")
    return [
        dataclasses.replace(
            cands[j],
            score=float(fused[j]),
            rank=n + 1,
            sources={**cands[j].sources, source: round(float(fit[j]), 4)},
        )
        for n, j in enumerate(order)
    ]


def _labels(agent: Any, ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """Image/sound labels the encoders gave each candidate (from the store's metadata)."""
    from agent.explain.evidence import stored_labels

    found = stored_labels(agent.store, ids, purpose="the re-rank prompt")
    return {
        i: {m: [name for name, _ in pairs] for m, pairs in by.items()} for i, by in found.items()
    }


def _boosted(generator: Any, boost: float) -> Any:
    """The agent's candidate generator with the `query` weight multiplied by `boost`: a shallow
    copy sharing every fitted model (the shared instance is never changed)."""
    if boost == 1.0 or "query" not in generator.config.weights:
        return generator
    weights = dict(generator.config.weights)
    weights["query"] *= boost
    out = copy.copy(generator)
    out.config = dataclasses.replace(generator.config, weights=weights)
    return out


def recommend_for_state(
    agent: Any, user_id: str, state: ConversationState, *, k: int = 5
) -> RecommendResult:
    """The list for one chat turn (see the module docstring), remembered as the user's last."""
    from agent.rerank.conversation import ConversationContext

    cfg = agent.config
    items: Mapping[str, Item] = agent.items
    r = state.request
    user = agent.users.get(user_id)
    excluded = {i for i in state.mentioned_ids() if i in items} | set(r.exclude_ids)
    avoided = agent._avoided([*user.avoid, *r.exclude_terms])  # "no insects": a taste
    excluded |= set(avoided)
    history = _history(agent._history(user_id), state, items, cfg.ratings.like_value)
    history = dataclasses.replace(
        history, disliked=list(dict.fromkeys([*history.disliked, *avoided]))
    )
    taste = _sound_taste(state, history, items, cfg.hybrid)
    # most of what they liked to listen to was music: "something to listen to" means a track
    music = sum(map(is_music, taste[0])) * 2 > len(taste[0]) > 0
    filtered, notes = _kind_and_era_filters(state, items, excluded, k, music=music)  # hidden
    query = retrieval_query(state, items)
    generator = _boosted(agent.generator, cfg.hybrid.chat_query_boost if query else 1.0)
    # a mood of music is judged from the audio: the fit chooses among every track, not only
    # among the few whose text happens to match the words
    measured_mood = (wants_music(state) and any(_mood_terms(state))) or bool(taste[0])
    n = max(MOOD_POOL, generator.config.n_candidates) if measured_mood else None
    cands = generator.generate(
        history, query=query or None, n=n, exclude=sorted(excluded | filtered)
    )
    if len(cands) < k and (excluded - set(r.exclude_ids)):  # a tiny catalogue: allow mentions
        notes.append("few items left; titles you mentioned may appear")
        cands = generator.generate(
            history, query=query or None, n=n, exclude=sorted(set(r.exclude_ids) | filtered)
        )
    cands = _mood_fused(cands, state, items, cfg.hybrid.chat_mood_weight, taste)
    top = max(1, int(getattr(cfg.llm, "chat_top", cfg.llm.rerank_top)))
    reranker = getattr(agent, "chat_reranker", None)
    alpha = float(getattr(cfg.llm, "chat_alpha", 0.0))
    ranked: RankedResults
    if reranker is not None and alpha > 0 and r.has_words and len(cands) > 1:
        ctx = ConversationContext.from_state(
            state, labels=_labels(agent, [c.item_id for c in cands[:top]]), user_id=user_id
        )
        ranked = reranker.rank(ctx, cands[:top], items, alpha=alpha)
    else:
        ranked = retriever_order(cands[:top], name="identity")
    recs = recommendations(items, agent.diversify(final_order(ranked, cands, top), k), k)
    reranked = ranked.fallback_reason is None and ranked.reranker != "identity"
    note = "; ".join([*notes, *([ranked.fallback_reason] if ranked.fallback_reason else [])])
    result = RecommendResult(
        user_id=user_id,
        items=recs,
        reranked=reranked,
        note=note or None,
        query=state.last_request or None,
        understood=describe_state(state.to_dict()),
    )
    agent.remember_result(user_id, result, cands)
    return result
