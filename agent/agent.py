"""`RecommendationAgent`: the one entry point the CLI, the UI and Python callers share."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agent.llm.base import LLM
from agent.records import Evidence, Explanation, RecommendResult, recommendations
from agent.rerank.base import FinalEntry, Reranker, final_order
from agent.streams import drain
from agent.users import Interaction, UserStore
from retrieval.catalogue import Item
from retrieval.config import FusionrecConfig
from retrieval.errors import CatalogueError, FusionrecError
from retrieval.ingest import Encoders, IngestReport, ingest_catalogue, items_from_store
from retrieval.store import VectorStore

logger = logging.getLogger(__name__)

CONTENT_SPACES = ("text", "image", "audio")
ALL_SPACES = ("text", "image", "audio", "image-text", "audio-text")


class RecommendationAgent:
    """Recommend, explain, chat and take feedback over one catalogue.

    Build it with `from_config()`; the constructor takes ready parts so tests and other
    front ends can swap any of them.
    """

    def __init__(
        self,
        *,
        config: FusionrecConfig,
        store: VectorStore,
        encoders: Encoders,
        users: UserStore,
        reranker: Reranker,
        llm: LLM | None = None,
        interactions: Any | None = None,
        chat_reranker: Reranker | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.encoders = encoders
        self.users = users
        self.reranker = reranker
        self.llm = llm  # shared by the explainer (when [llm] explain) and chat intent parsing
        self._base = interactions  # DataFrame user_id, item_id, rating, timestamp (or None)
        self._lock = threading.RLock()
        self._last: dict[str, RecommendResult] = {}
        self._last_candidates: dict[str, dict[str, Any]] = {}
        # chat: one conversation state per user session (agent/chat/state.py), the re-ranker
        # conditioned on it, and the title linker (built on first use, per catalogue)
        self.chat_reranker = chat_reranker
        self._conversations: dict[str, Any] = {}
        self._linker: Any | None = None
        self._refresh()

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: FusionrecConfig | str | Path | None = None) -> RecommendationAgent:
        """Open the store, text encoder, interactions; image/audio encoders, LLM load on use."""
        if config is None:
            cfg = FusionrecConfig()
        elif isinstance(config, FusionrecConfig):
            cfg = config
        else:
            cfg = FusionrecConfig.from_toml(config)
        store = VectorStore.from_config(cfg)
        encoders = Encoders.from_config(cfg.encoders)
        interactions = _load_interactions(cfg)
        users_path = cfg.data.users_path or cfg.store_path() / "users.jsonl"
        users = UserStore(users_path)
        if interactions is not None:
            users.load_history(
                Interaction(str(r.user_id), str(r.item_id), float(r.rating), float(r.timestamp))
                for r in interactions.itertuples(index=False)
            )
        from agent.llm import lazy_llm
        from agent.rerank import create_reranker

        # one lazily loaded LLM for re-ranking, explanations and chat (none with reranker =
        # "identity" or model = "none"); with alpha = 0 it takes no part in ranking, so the
        # re-ranker is the identity and no 15 s are spent for nothing
        use_llm = cfg.llm.reranker != "identity" and cfg.llm.model != "none"
        llm = lazy_llm(cfg.llm, cfg.model_cache()) if use_llm else None
        if llm is None or cfg.llm.alpha == 0:
            reranker = create_reranker("identity")
        else:
            reranker = create_reranker(
                cfg.llm.reranker,
                llm=llm,
                alpha=cfg.llm.alpha,
                time_budget_s=cfg.llm.time_budget_s,
                batch_size=cfg.llm.batch_size,
                max_history=cfg.llm.max_history,
                max_desc_chars=cfg.llm.max_desc_chars,
                max_tags=cfg.llm.max_tags,
                short_titles=cfg.llm.short_titles,
            )
        chat_reranker = None
        if llm is not None and cfg.llm.chat_alpha > 0:
            chat_reranker = create_reranker(
                "llm-conversation",
                llm=llm,
                alpha=cfg.llm.chat_alpha,
                time_budget_s=cfg.llm.time_budget_s,
                batch_size=cfg.llm.batch_size,
            )
        return cls(
            config=cfg,
            store=store,
            encoders=encoders,
            users=users,
            reranker=reranker,
            llm=llm,
            interactions=interactions,
            chat_reranker=chat_reranker,
        )

    def _refresh(self) -> None:
        """(Re)build everything derived from the catalogue: items, candidate generator, co-likes."""
        import pandas as pd

        from agent.explain.evidence import CoLikes
        from agent.explain.explainer import Explainer
        from retrieval.candidates import CandidateGenerator
        from retrieval.fusion import space_weights
        from retrieval.interactions import user_item_matrix

        self.items: dict[str, Item] = items_from_store(self.store)
        ids = sorted(self.items)
        base = (
            self._base
            if self._base is not None
            else pd.DataFrame({"user_id": [], "item_id": [], "rating": [], "timestamp": []})
        )
        spaces = tuple(s for s in CONTENT_SPACES if self.store.count(s) > 0)
        hybrid = self.config.hybrid
        weights = space_weights(hybrid.weights, dataclasses.asdict(self.config.fusion), spaces)
        hybrid = dataclasses.replace(hybrid, weights=weights)
        self.generator = CandidateGenerator(
            self.store,
            config=hybrid,
            content_spaces=spaces,
            query_spaces=tuple(
                s for s in ("text", "image-text", "audio-text") if self.store.count(s) > 0
            ),
            text_encoder=self.encoders.text,
        ).fit(base, ids)
        ratings = user_item_matrix(base, ids)
        self._user_rows = ratings.user_rows
        self.co_likes = CoLikes(ratings.matrix, ids)
        self.explainer = Explainer(self.llm if self.config.llm.explain else None, items=self.items)
        self._linker = None  # titles changed: the chat's title linker is rebuilt on next use

    # ---- public API --------------------------------------------------------------------------
    def ingest(
        self, path: str | Path, *, show_progress: bool = False, media_root: Path | None = None
    ) -> IngestReport:
        """Add or update catalogue items from a JSONL/CSV/Parquet file; bad rows are reported.

        `media_root` (uploads): media paths outside it are not opened and are reported.
        """
        report = ingest_catalogue(
            path,
            self.store,
            self.encoders,
            batch_size=self.config.encoders.batch_size,
            show_progress=show_progress,
            limits=self.config.ingest,
            media_root=media_root,
        )
        with self._lock:
            self._refresh()
        return report

    def recommend(self, user_id: str, k: int = 10, query: str | None = None) -> RecommendResult:
        """Top-k items for a user, re-ranked by the LLM when it fits its time budget.

        Unknown users start cold (popularity, or the query) and are remembered.
        """
        if not self.items:
            raise CatalogueError("the catalogue is empty; run `fusionrec ingest FILE` first")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        from agent.rerank import UserContext

        user_id = str(user_id)
        state = self.users.get(user_id)
        history = self._history(user_id)
        avoided = self._avoided(state.avoid)  # "not into horror": a taste, so pushed away too
        if avoided:
            history = dataclasses.replace(history, disliked=[*history.disliked, *avoided])
        cands = self.generator.generate(history, query=query or None)
        top = self.config.llm.rerank_top
        ctx = UserContext(
            liked=[
                (self.items[i].title, r)
                for i, r in zip(history.item_ids, history.ratings, strict=True)
                if i in self.items
            ][-20:],
            disliked=[self.items[i].title for i in history.disliked if i in self.items][-10:],
            request=query or None,
            user_id=user_id,
        )
        ranked = self.reranker.rank(ctx, cands[:top], self.items)
        recs = recommendations(self.items, self.diversify(final_order(ranked, cands, top), k), k)
        reranked = ranked.fallback_reason is None and ranked.reranker != "identity"
        note = ranked.fallback_reason
        result = RecommendResult(
            user_id=user_id, items=recs, reranked=reranked, note=note, query=query
        )
        with self._lock:
            state.last_shown = [r.item.id for r in recs]
            state.last_query = query
            self._last[user_id] = result
            self._last_candidates[user_id] = {c.item_id: c for c in cands}
            if (conv := self._conversations.get(user_id)) is not None:  # "that one" = this list
                from agent.chat.state import record_shown

                record_shown(conv, state.last_shown, [r.item.title for r in recs])
        return result

    def diversify(self, final: list[FinalEntry], k: int) -> list[FinalEntry]:
        """`final` (the order a user would see) with its first `k` picked by MMR (`[diversity]`:
        no near-copies side by side), the rest after them in their order.

        Relevance keeps `final`'s order and the retriever's score gaps: the i-th item gets the
        i-th highest retriever score of the pool (the LLM-fused head and the retriever tail have
        scores on different scales), so a clear favourite is not traded for variety.
        Similarity is `similarity`.
        """
        from retrieval.diversity import mmr_order

        cfg = self.config.diversity
        pool = final[: max(k, cfg.pool)]
        if cfg.weight <= 0 or len(pool) < 2:
            return final
        sim = self.similarity([c.item_id for c, _, _ in pool])
        relevance = np.sort(np.asarray([c.score for c, _, _ in pool], dtype=np.float64))[::-1]
        picked = mmr_order(relevance, sim, cfg.weight, k)
        chosen = set(picked)
        return [pool[j] for j in picked] + [e for n, e in enumerate(final) if n not in chosen]

    def similarity(self, ids: list[str]) -> np.ndarray:
        """`(n, n)` similarity of stored items: their vectors' cosine per space, averaged with
        the `[fusion]` weights over the spaces both have (`retrieval.diversity`)."""
        from retrieval.diversity import fused_similarity

        vectors: dict[str, dict[str, np.ndarray]] = {}
        for space in ("text", "image", "audio"):
            got, vecs, _ = self.store.get(space, ids)
            vectors[space] = dict(zip(got, vecs, strict=False))
        return fused_similarity(ids, vectors, dataclasses.asdict(self.config.fusion))

    def explain(self, user_id: str, item_id: str) -> Explanation:
        """Why this item for this user, from evidence only (works for items not recommended)."""
        return drain(self.explain_stream(user_id, item_id))

    def explain_stream(self, user_id: str, item_id: str) -> Iterator[str]:
        """Stream the explanation (whole text so far); the generator returns the Explanation."""
        evidence = self.evidence(user_id, item_id)
        return (yield from self.explainer.stream(evidence))

    def evidence(self, user_id: str, item_id: str) -> Evidence:
        """The `Evidence` record behind `item_id` for `user_id`."""
        from agent.explain.evidence import build_evidence, history_entries, scored_labels

        user_id, item_id = str(user_id), str(item_id)
        if item_id not in self.items:
            raise CatalogueError(f"unknown item id '{item_id}'")
        state = self.users.get(user_id)
        entries = history_entries(self._history(user_id), self.generator.config, self.items)
        wanted = list(dict.fromkeys([e.item_id for e in entries] + [item_id]))
        vectors: dict[str, dict[str, np.ndarray]] = {}
        for space in ALL_SPACES:
            got, vecs, _ = self.store.get(space, wanted)
            vectors[space] = {i: v for i, v in zip(got, vecs, strict=False)}
        _, _, metas = self.store.get("text", wanted, include_vectors=False)
        labels = {m.get("id", ""): scored_labels(m) for m in metas}  # with probabilities
        request = getattr(state, "last_query", None)
        request_vector = self.encoders.text.encode_query([request])[0] if request else None
        last = self._last.get(user_id)
        rec = next((r for r in last.items if r.item.id == item_id), None) if last else None
        return build_evidence(
            item_id,
            entries,
            items=self.items,
            vectors=vectors,
            weights=dataclasses.asdict(self.config.fusion),
            labels=labels,
            co_likes=self.co_likes,
            user_index=self._user_rows.get(user_id),
            request=request,
            request_vector=request_vector,
            disliked_topics=state.avoid,
            candidate=self._last_candidates.get(user_id, {}).get(item_id),
            llm_score=rec.llm_score if rec else None,
            rank=rec.rank if rec else None,
        )

    def feedback(self, user_id: str, item_id: str, liked: bool) -> None:
        """Record a like/dislike; the next `recommend` call reflects it."""
        if str(item_id) not in self.items:
            raise CatalogueError(f"unknown item id '{item_id}'")
        self.users.add_feedback(str(user_id), str(item_id), bool(liked))

    def refresh_after_feedback(self, user_id: str, *, k: int = 10) -> RecommendResult:
        """The user's list again after feedback, for the request they last made.

        The one place chat ("loved #1") and the UI's like buttons refresh from, so both keep
        the user's request instead of dropping it.
        """
        if str(user_id) in self._conversations:  # a chat is going on: keep what it asked for
            return self.recommend_conversation(str(user_id), k=k)
        last = self.last_result(str(user_id))
        return self.recommend(str(user_id), k=k, query=last.query if last else None)

    def chat(
        self, user_id: str, message: str, history: list[Any] | None = None, *, k: int = 5
    ) -> Iterator[str]:
        """Answer one chat message, streaming the whole reply so far (replace, don't append).

        `history` (earlier turns) is accepted for chat-UI compatibility; the agent keeps its own
        per-user state (last list shown, feedback), which is what "#3" and "why" refer to.
        """
        from agent.chat.respond import respond

        return respond(self, str(user_id), message, k=k)

    # ---- conversation (agent/chat/state.py, agent/chat/turn.py) ------------------------------
    @property
    def linker(self) -> Any:
        """The chat's `TitleLinker` over the catalogue (ties between same titles: popularity)."""
        with self._lock:
            if self._linker is None:
                from agent.chat.linking import TitleLinker
                from agent.chat.turn import item_year

                counts: dict[str, float] = {}
                if self._base is not None and len(self._base):
                    counts = self._base["item_id"].astype(str).value_counts().to_dict()
                self._linker = TitleLinker(
                    ((i, it.title, item_year(it)) for i, it in self.items.items()), priors=counts
                )
            return self._linker

    def conversation(self, user_id: str) -> Any:
        """The user's `ConversationState` (a fresh one if they have not chatted yet)."""
        from agent.chat.state import ConversationState

        return self._conversations.get(str(user_id)) or ConversationState()

    def update_conversation(self, user_id: str, text: str, *, speaker: str = "user") -> Any:
        """Read one message into the user's conversation state; returns the new state."""
        from agent.chat.state import update_state

        user_id = str(user_id)
        # the LLM reads sentiments the rules leave undecided, when it is in memory already
        # (a chat message never waits for a model load just for that)
        llm = self.llm if self.config.llm.chat_alpha > 0 else None
        llm = llm if llm is not None and getattr(llm, "loaded", True) else None
        state = update_state(
            self._conversations.get(user_id), speaker, text, linker=self.linker, llm=llm
        )
        with self._lock:
            self._conversations[user_id] = state
        return state

    def reset_conversation(self, user_id: str) -> None:
        """Forget the user's conversation state (the stored history and feedback stay)."""
        with self._lock:
            self._conversations.pop(str(user_id), None)

    def recommend_conversation(self, user_id: str, k: int = 5) -> RecommendResult:
        """The list for the user's conversation so far (candidates, filters, LLM re-rank)."""
        from agent.chat.turn import recommend_for_state

        if not self.items:
            raise CatalogueError("the catalogue is empty; run `fusionrec ingest FILE` first")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return recommend_for_state(self, str(user_id), self.conversation(user_id), k=k)

    def remember_result(self, user_id: str, result: RecommendResult, candidates: Any) -> None:
        """Keep a list as the user's last (what "#3", "why", "that one" refer to)."""
        from agent.chat.state import record_shown

        user_id = str(user_id)
        with self._lock:
            state = self.users.get(user_id)
            state.last_shown = [r.item.id for r in result.items]
            state.last_query = result.query
            self._last[user_id] = result
            self._last_candidates[user_id] = {c.item_id: c for c in candidates}
            conv = self._conversations.get(user_id)
            if conv is not None:
                record_shown(conv, state.last_shown, [r.item.title for r in result.items])

    def user_labels(self) -> dict[str, str]:
        """Display names of the catalogue's demo personas (id -> label saying it is one);
        empty for catalogues without personas. The UI lists these users first."""
        from retrieval.datasets.media.personas import persona_labels

        return persona_labels(self.config.data.items)

    def last_result(self, user_id: str) -> RecommendResult | None:
        """The most recent list shown to this user (what "#3" refers to in chat)."""
        return self._last.get(str(user_id))

    def find_item(self, text: str) -> Item | None:
        """The catalogue item whose title best matches `text` (for "why not X?")."""
        import difflib

        titles = {it.title.lower(): it for it in self.items.values()}
        needle = text.lower().strip()
        for title, item in titles.items():
            if needle and (needle == title or title.startswith(needle + " (")):
                return item
        match = difflib.get_close_matches(needle, list(titles), n=1, cutoff=0.6)
        return titles[match[0]] if match else None

    # ---- internals ---------------------------------------------------------------------------
    def _history(self, user_id: str) -> Any:
        from retrieval.profiles import History

        state = self.users.get(user_id)
        dislike = self.config.ratings.dislike_max
        liked = [
            i
            for i in state.history()
            if i.item_id in self.items and not (i.source == "feedback" and i.rating <= dislike)
        ]
        disliked = [
            i.item_id for i in state.history() if i.source == "feedback" and i.rating <= dislike
        ]
        return History(
            [i.item_id for i in liked],
            [i.rating for i in liked],
            [int(i.timestamp) for i in liked],
            disliked,
        )

    def _avoided(self, topics: list[str]) -> list[str]:
        """Items whose tags or title mention a topic the user said no to."""
        if not topics:
            return []
        import re

        pats = [
            re.compile(rf"\b{re.escape(t.lower().rstrip('s'))}s?\b") for t in topics if t.strip()
        ]
        out = []
        for item in self.items.values():
            hay = " ".join([item.title, *item.tags]).lower()
            if any(p.search(hay) for p in pats):
                out.append(item.id)
        return out


def _load_interactions(cfg: FusionrecConfig) -> Any | None:
    """Base interaction history named in config, as a DataFrame (or None)."""
    src = cfg.data.interactions
    if not src:
        return None
    if src == "ml-100k":
        from retrieval.datasets.movielens import load_movielens

        return load_movielens().interactions
    if not cfg.data.items:
        raise FusionrecError(
            "[data] interactions is a file; set [data] items to its items file too"
        )
    from retrieval.datasets.movielens import load_user_data

    return load_user_data(src, cfg.data.items).interactions
