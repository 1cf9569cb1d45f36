"""Evidence for one (user, item) pair: every fact an explanation may cite, computed exactly.

The content part follows `retrieval.fusion`: score = sum_m w_m * cos(p_m, v_m) with the
profile p_m a weighted sum of the user's history vectors, so each history item's share of
the score is exact (`history_contributions`). The rest is counted, not estimated: how many
users who liked a history item also liked this one, which tags and media labels the item
shares with what the user liked or disliked, and how close it is to the chat request.

Works for any item, recommended or not, so "why not X?" gets the same honest accounting.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.records import Evidence, HistoryLink
from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from retrieval.config import RATING_SCALE
from retrieval.fusion import history_contributions, renormalise

if TYPE_CHECKING:
    from retrieval.config import HybridConfig
    from retrieval.profiles import History

logger = logging.getLogger(__name__)

__all__ = [
    "CoLikes",
    "HistoryEntry",
    "build_evidence",
    "labels_from_metadata",
    "scored_labels",
    "supported_modalities",
]

MODALITIES = ("text", "image", "audio")  # spaces whose cosines make up the content score
TEXT_SPACES = ("text", "image-text", "audio-text")  # spaces a text request can be compared in
MIN_MODALITY_SHARE = 0.25  # a modality "mattered" when it holds this share of the content score


@dataclass(frozen=True)
class HistoryEntry:
    """One item in the user's history.

    Attributes:
        item_id: catalogue id.
        weight: the profile weight a_h (recency x rating; negative for dislikes).
        rating: the user's rating, when there is one (e.g. 1-5 stars).
    """

    item_id: str
    weight: float
    rating: float | None = None


def history_entries(
    history: History, config: HybridConfig, known: Collection[str] | None = None
) -> list[HistoryEntry]:
    """The user's history with the content-profile weights the retriever uses (`config` is a
    `HybridConfig`), so evidence contributions add up to the fused content score. Items not in
    `known` (when given) are left out."""
    from retrieval.profiles import profile_weights

    ids, weights = profile_weights(
        history,
        half_life=config.content_half_life,
        like_threshold=config.content_like_threshold,
        negative_weight=config.negative_weight,
    )
    ratings = dict(zip(history.item_ids, history.ratings, strict=True))
    return [
        HistoryEntry(i, float(w), ratings.get(i))
        for i, w in zip(ids, weights, strict=True)
        if known is None or i in known
    ]


class CoLikes:
    """Counts of users who liked two items, from a user x item interaction matrix.

    Args:
        user_items: `(n_users, n_items)` sparse (or dense) matrix of ratings or 0/1 likes.
        item_ids: catalogue id of each column.
        min_value: an entry counts as a like when it is >= this (4.0 for 5-star ratings;
            use 1.0 for 0/1 implicit data).
    """

    def __init__(
        self,
        user_items: Any,
        item_ids: Sequence[str],
        *,
        min_value: float = RATING_SCALE.like_min,
    ) -> None:
        from scipy import sparse

        matrix = sparse.csc_matrix(user_items, dtype=np.float32)
        if matrix.shape[1] != len(item_ids):
            raise ValueError(
                f"user_items has {matrix.shape[1]} columns but {len(item_ids)} item ids"
            )
        liked = (matrix >= min_value).astype(np.float32)
        self._liked = sparse.csc_matrix(liked)
        self._index = {str(i): n for n, i in enumerate(item_ids)}

    def counts(
        self, item_id: str, others: Sequence[str], *, exclude_user: int | None = None
    ) -> list[int]:
        """For each id in `others`: how many users liked both it and `item_id` (0 if unknown)."""
        col = self._index.get(item_id)
        cols = [self._index.get(o) for o in others]
        known = [c for c in cols if c is not None]
        if col is None or not known:
            return [0] * len(others)
        target = self._liked[:, col]
        if exclude_user is not None:
            target = target.tolil()
            target[exclude_user, 0] = 0
            target = target.tocsc()
        both = np.asarray((self._liked[:, known].T @ target).todense()).ravel()
        by_col = dict(zip(known, both.astype(int).tolist(), strict=True))
        return [by_col.get(c, 0) if c is not None else 0 for c in cols]

    def likes(self, item_id: str) -> int:
        """How many users liked `item_id`."""
        col = self._index.get(item_id)
        return 0 if col is None else int(self._liked[:, col].sum())


Label = str | tuple[str, float | None]  # an encoder label, optionally with its probability


def scored_labels(meta: Mapping[str, Any]) -> dict[str, list[tuple[str, float | None]]]:
    """What the encoders saw and heard, from a store metadata dict (`image_tags`/`audio_tags`:
    JSON lists of [label, probability] written at ingest, best first).

    Returns:
        {"image": [(label, probability or None), ...], "audio": [...]}, only the modalities
        that have labels.
    """
    out: dict[str, list[tuple[str, float | None]]] = {}
    for modality in ("image", "audio"):
        raw = meta.get(f"{modality}_tags")
        if not raw:
            continue
        try:
            pairs = json.loads(raw) if isinstance(raw, str) else raw
            labels = [_label_pair(p) for p in pairs]
        except (ValueError, TypeError, IndexError):
            logger.warning("unreadable %s_tags in store metadata: %r", modality, raw)
            continue
        if labels:
            out[modality] = labels
    return out


def _label_pair(raw: Any) -> tuple[str, float | None]:
    if isinstance(raw, list | tuple):
        return str(raw[0]), (float(raw[1]) if len(raw) > 1 and raw[1] is not None else None)
    return str(raw), None


def stored_labels(
    store: Any, ids: Sequence[str], *, purpose: str
) -> dict[str, dict[str, list[tuple[str, float | None]]]]:
    """`scored_labels` of each item, read from the store in one call; {} when the store cannot
    be read (labels only enrich a card or a prompt, so their absence must not stop either).
    `purpose` names what they were for in the warning."""
    if not ids:
        return {}
    try:
        got, _, metas = store.get("text", list(ids), include_vectors=False)
    except Exception as e:  # noqa: BLE001 - labels are an enrichment
        logger.warning("could not read encoder labels for %s: %s", purpose, e)
        return {}
    return {i: scored_labels(m) for i, m in zip(got, metas, strict=False)}


def labels_from_metadata(meta: Mapping[str, Any]) -> dict[str, list[str]]:
    """Image/sound label names from a store metadata dict (see `scored_labels`), best first."""
    return {m: [name for name, _ in pairs] for m, pairs in scored_labels(meta).items()}


def supported_modalities(evidence: Evidence, *, min_share: float = MIN_MODALITY_SHARE) -> set[str]:
    """Modalities an explanation may credit: positive, >= `min_share` of the positive content
    score, and backed by at least one history item that pulls the item up in that modality."""
    positive = {m: s for m, s in evidence.modality_scores.items() if s > 0}
    total = sum(positive.values())
    if total <= 0:
        return set()
    backed = {link.modality for link in evidence.history if link.contribution > 0}
    return {m for m, s in positive.items() if s / total >= min_share and m in backed}


def _history_links(
    item_id: str,
    history: Sequence[HistoryEntry],
    vectors: Mapping[str, Mapping[str, np.ndarray]],
    weights: Mapping[str, float],
    titles: Mapping[str, str],
) -> tuple[list[HistoryLink], dict[str, float]]:
    """Per-(history item, modality) terms and per-modality weighted cosines (exact)."""
    present = [
        m
        for m in MODALITIES
        if item_id in vectors.get(m, {}) and any(h.item_id in vectors[m] for h in history)
    ]
    w = renormalise(weights, present)
    links: list[HistoryLink] = []
    scores: dict[str, float] = {}
    for modality, wm in w.items():
        space = vectors[modality]
        hist = [h for h in history if h.item_id in space]
        hv = np.stack([np.asarray(space[h.item_id], np.float32) for h in hist])
        ha = np.array([h.weight for h in hist], np.float64)
        iv = np.asarray(space[item_id], np.float32)
        terms = history_contributions(hv, ha, iv, wm)
        scores[modality] = float(terms.sum())
        sims = hv.astype(np.float64) @ iv.astype(np.float64)
        for h, cos, term in zip(hist, sims, terms, strict=True):
            links.append(
                HistoryLink(
                    h.item_id,
                    titles.get(h.item_id, h.item_id),
                    modality,
                    float(cos),
                    float(term),
                    h.rating,
                )
            )
    links.sort(key=lambda link: -abs(link.contribution))
    return links, scores


def _label_names(
    labels: Mapping[str, Mapping[str, Sequence[Label]]], item_id: str
) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, float]]]:
    """(item id -> modality -> label names; modality -> label -> probability for `item_id`)."""
    names: dict[str, dict[str, list[str]]] = {}
    scores: dict[str, dict[str, float]] = {}
    for i, by_modality in labels.items():
        for modality, raw in by_modality.items():
            pairs = [_label_pair(p) for p in raw]
            names.setdefault(i, {})[modality] = [n for n, _ in pairs]
            if i == item_id:
                known = {n: p for n, p in pairs if p is not None}
                if known:
                    scores[modality] = known
    return names, scores


def _tag_sets(
    item_id: str, items: Mapping[str, Item], labels: Mapping[str, Mapping[str, Sequence[str]]]
) -> list[str]:
    item = items.get(item_id)
    tags = list(item.tags) if item is not None else []
    for modality in ("image", "audio"):
        tags += [t for t in labels.get(item_id, {}).get(modality, ()) if t not in tags]
    return tags


def _matched_tags(
    item_tags: Sequence[str],
    history: Sequence[HistoryEntry],
    items: Mapping[str, Item],
    labels: Mapping[str, Mapping[str, Sequence[str]]],
    disliked_topics: Collection[str],
) -> tuple[list[str], list[str]]:
    """(tags shared with liked history items, most shared first; tags the user leans against)."""
    liked = [h for h in history if h.weight > 0]
    disliked = [h for h in history if h.weight < 0]
    liked_counts: Counter[str] = Counter()
    disliked_counts: Counter[str] = Counter()
    for group, counter in ((liked, liked_counts), (disliked, disliked_counts)):
        for h in group:
            counter.update(set(_tag_sets(h.item_id, items, labels)))
    matched = sorted((t for t in item_tags if liked_counts[t] > 0), key=lambda t: -liked_counts[t])
    topics = {t.casefold() for t in disliked_topics}
    against = [
        t
        for t in item_tags
        if t.casefold() in topics
        or (
            disliked
            and disliked_counts[t] / len(disliked)
            > (liked_counts[t] / len(liked) if liked else 0.0)
        )
    ]
    return matched, against


def _request_score(
    item_id: str, request_vector: np.ndarray | None, vectors: Mapping[str, Mapping[str, np.ndarray]]
) -> float | None:
    if request_vector is None:
        return None
    q = np.asarray(request_vector, np.float64).ravel()
    sims = [
        float(np.asarray(vectors[s][item_id], np.float64) @ q)
        for s in TEXT_SPACES
        if item_id in vectors.get(s, {})
    ]
    return max(sims) if sims else None


def build_evidence(
    item_id: str,
    history: Sequence[HistoryEntry],
    *,
    items: Mapping[str, Item],
    vectors: Mapping[str, Mapping[str, np.ndarray]],
    weights: Mapping[str, float],
    labels: Mapping[str, Mapping[str, Sequence[Label]]] | None = None,
    co_likes: CoLikes | None = None,
    user_index: int | None = None,
    request: str | None = None,
    request_vector: np.ndarray | None = None,
    disliked_topics: Collection[str] = (),
    candidate: Candidate | None = None,
    llm_score: float | None = None,
    rank: int | None = None,
    max_co_liked: int = 3,
) -> Evidence:
    """Collect the facts behind `item_id` for one user; any catalogue item works.

    Args:
        item_id: the item to explain (recommended or not).
        history: the user's history with profile weights a_h (negative = disliked).
        items: catalogue by id (titles and tags/genres).
        vectors: space -> item id -> `(dim,)` float32 L2-normalised vector. Spaces "text",
            "image", "audio" make up the content score; "image-text"/"audio-text" (label
            bridges) are also used to score the request.
        weights: fusion weights per modality (renormalised over the modalities present).
        labels: item id -> {"image"/"audio": labels, best first}, each a name or a (name,
            probability) pair as `scored_labels` reads them from the store.
        co_likes: interaction counts; None leaves `co_liked` empty.
        user_index: the user's row in the interaction matrix, excluded from co-like counts.
        request: the chat request this item should answer.
        request_vector: `(dim,)` float32 L2-normalised text embedding of `request`.
        disliked_topics: tags the user said they dislike in chat ("not into horror").
        candidate: the retriever's candidate for this item (score and per-source scores).
        llm_score: the re-ranker's score, when re-ranked.
        rank: 1-based position in the current recommendations; None when not recommended.
        max_co_liked: how many co-liked history items to keep (strongest first).

    Returns:
        Evidence whose `history` contributions sum to `content_score` (up to float rounding).

    Raises:
        KeyError: `item_id` is not in `items`.
    """
    if item_id not in items:
        raise KeyError(f"item '{item_id}' is not in the catalogue")
    item = items[item_id]
    labels, label_scores = _label_names(labels or {}, item_id)
    titles = {i: it.title for i, it in items.items()}
    links, scores = _history_links(item_id, history, vectors, weights, titles)
    item_labels = {m: list(v) for m, v in labels.get(item_id, {}).items() if v}
    item_tags = _tag_sets(item_id, items, labels)
    matched, against = _matched_tags(item_tags, history, items, labels, disliked_topics)
    co_liked: list[tuple[str, str, int]] = []
    if co_likes is not None:
        liked = [h.item_id for h in history if h.weight > 0 and h.item_id != item_id]
        counts = co_likes.counts(item_id, liked, exclude_user=user_index)
        ranked = sorted(zip(liked, counts, strict=True), key=lambda p: -p[1])
        co_liked = [(i, titles.get(i, i), n) for i, n in ranked[:max_co_liked] if n > 0]
    return Evidence(
        item_id=item_id,
        title=item.title,
        history=links,
        modality_scores=scores,
        content_score=float(sum(scores.values())),
        co_liked=co_liked,
        matched_tags=matched,
        item_tags=item_tags,
        request=request,
        request_score=_request_score(item_id, request_vector, vectors),
        labels=item_labels,
        label_scores=label_scores,
        disliked_tags=against,
        rank=rank,
        retriever_score=candidate.score if candidate is not None else None,
        llm_score=llm_score,
        sources=dict(candidate.sources) if candidate is not None else {},
    )
