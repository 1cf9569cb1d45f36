"""The request benchmark: does "something calm to listen to" land on the media demo?

Each request (a cold user or a demo persona; text, image and audio intents; moods; exclusions)
is judged by labels the system never sees: the mood folder of a track, the folder a Tux Paint
stamp is filed in, the GCompris activity an item comes from (`benchmark_labels.json`, written
by the catalogue build and checked here to be absent from every field the system reads).

Metrics per request, then averaged overall and per intent kind:
- NDCG@10 (graded gains) and P@5 on the *condensed* list: items without a label of the judged
  kind (e.g. Wesnoth tracks for a mood request; nobody filed them under a mood) are removed
  before scoring, the standard treatment of unjudged items (Sakai, SIGIR 2007);
- raw P@5 on the list as shown (unjudged items count as not relevant);
- violations: an item the request rules out ("calm" -> a track filed under energetic) in the
  shown top 10;
- ILD@10: intra-list diversity of the list as shown (`retrieval.diversity`);
- seconds per request.

Conditions, every one with the list's diversity off unless its name says otherwise:
`retriever` (`agent.recommend(user, query=text)`, LLM off); `retriever+understanding` (the
chat's own path: `update_conversation` then `recommend_conversation`, i.e. the parsed request's
kind, music and exclusion filters and the measured-mood fit, LLM off), run over a grid of
`[hybrid] chat_query_boost` x `chat_mood_weight`, the weight chosen on the validation requests
(every third) at the configured boost; `understanding + diversity weight w` (the same with MMR,
to price diversity); and, with `--llm MODEL`, the `llm-conversation` re-ranker over the top
`--top` candidates, fused at the weight chosen on the validation requests. The LLM rows and the
95% paired bootstrap interval of the difference are on the other (test) requests.

    python -m bench.requests --config ~/.fusionrec/demo/fusionrec.toml --out docs/requests.json
    python -m bench.requests --config ... --llm smollm2-135m --llm qwen2.5-coder-1.5b --top 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.datasets.media.build import MOOD_CLASSES

logger = logging.getLogger(__name__)

TOP_K = 10  # NDCG cut-off and the list checked for violations
P_K = 5  # precision cut-off
RETRIEVE = 50  # items asked from the agent per request (the condensed list is cut from these)
BOOTSTRAP = 10_000  # paired bootstrap resamples
SEED = 0


@dataclass(frozen=True)
class BenchRequest:
    """One request and how to judge its answers from the withheld labels.

    `gains` maps a label value to a graded gain; for `field="category"` the value is
    "category/subcategory" and a key matches it or any sub-path ("animals" matches
    "animals/birds"). `never` lists values that must not be shown (they also gain 0).
    """

    id: str
    text: str
    intent: str  # "audio" | "image" | "any": what kind of thing is asked for
    kind: str  # "mood" | "category" | "exclusion" | "persona"
    field: str  # "mood" or "category"
    gains: Mapping[str, int]
    user: str | None = None  # a persona id; None = a cold user
    needs: str | None = None  # "audio"/"image": an item without it gains 0
    never: tuple[str, ...] = ()


CALM = {"calm": 2, "tender": 1, "nostalgic": 1}
UPBEAT = {"energetic": 2, "happy": 1}


def _r(i: int, text: str, intent: str, kind: str, fld: str, gains: Mapping[str, int], **kw: Any):
    return BenchRequest(f"r{i:02d}", text, intent, kind, fld, dict(gains), **kw)


REQUESTS: tuple[BenchRequest, ...] = (
    # -- moods, audio (judged over the mood-foldered tracks) --
    _r(
        1,
        "something calm to listen to while I read",
        "audio",
        "mood",
        "mood",
        CALM,
        never=("energetic",),
    ),
    _r(2, "play me some calm music", "audio", "mood", "mood", CALM, never=("energetic",)),
    _r(3, "relaxing background music", "audio", "mood", "mood", CALM, never=("energetic",)),
    _r(4, "soothing music for bedtime", "audio", "mood", "mood", CALM, never=("energetic",)),
    _r(5, "upbeat energetic music for a workout", "audio", "mood", "mood", UPBEAT, never=("calm",)),
    _r(
        6,
        "some energetic tracks to get me moving",
        "audio",
        "mood",
        "mood",
        UPBEAT,
        never=("calm",),
    ),
    _r(7, "happy cheerful music", "audio", "mood", "mood", {"happy": 2, "energetic": 1}),
    _r(
        8,
        "a tender, gentle song",
        "audio",
        "mood",
        "mood",
        {"tender": 2, "calm": 1},
        never=("energetic",),
    ),
    _r(
        9,
        "nostalgic music for looking at old photos",
        "audio",
        "mood",
        "mood",
        {"nostalgic": 2, "tender": 1},
    ),
    _r(10, "fast music with a strong beat", "audio", "mood", "mood", UPBEAT, never=("calm",)),
    _r(11, "slow quiet music", "audio", "mood", "mood", CALM, never=("energetic",)),
    _r(
        12,
        "music that isn't energetic",
        "audio",
        "exclusion",
        "mood",
        {"calm": 2, "tender": 2, "nostalgic": 2, "happy": 1},
        never=("energetic",),
    ),
    # -- categories, pictures (judged over every item filed under a category) --
    _r(13, "show me pictures of animals", "image", "category", "category", {"animals": 2}),
    _r(14, "a picture of a wild animal", "image", "category", "category", {"animals": 2}),
    _r(
        15,
        "photos of farm animals",
        "image",
        "category",
        "category",
        {"animals/farm": 2, "animals": 1},
    ),
    _r(16, "pictures of food", "image", "category", "category", {"food": 2}),
    _r(
        17,
        "something to eat: fruit or vegetables",
        "image",
        "category",
        "category",
        {"food/fruit": 2, "food/vegetables": 2, "food": 1},
    ),
    _r(18, "pictures of space and rockets", "image", "category", "category", {"space": 2}),
    _r(19, "planets and the moon", "image", "category", "category", {"space": 2}),
    _r(20, "cars, trucks and trains", "image", "category", "category", {"vehicles": 2}),
    _r(21, "something with wheels", "image", "category", "category", {"vehicles": 2}),
    _r(22, "flowers and plants", "image", "category", "category", {"plants": 2}),
    _r(
        23, "a picture of a tree", "image", "category", "category", {"plants/trees": 2, "plants": 1}
    ),
    _r(24, "clothes to wear", "image", "category", "category", {"clothes": 2}),
    _r(25, "sports equipment", "image", "category", "category", {"sports": 2}),
    _r(
        26,
        "famous monuments and buildings",
        "image",
        "category",
        "category",
        {"monuments": 2, "town/monuments": 2, "town": 1},
    ),
    _r(27, "musical instruments", "any", "category", "category", {"instruments": 2}),
    _r(28, "Christmas and Halloween pictures", "image", "category", "category", {"seasonal": 2}),
    _r(
        29,
        "insects and bugs",
        "image",
        "category",
        "category",
        {"animals/insects": 2, "animals": 1},
    ),
    _r(
        30, "pictures of birds", "image", "category", "category", {"animals/birds": 2, "animals": 1}
    ),
    _r(31, "things you find around the house", "image", "category", "category", {"household": 2}),
    _r(32, "a doctor or hospital picture", "image", "category", "category", {"medical": 2}),
    # -- categories, sounds --
    _r(33, "animal sounds", "audio", "category", "category", {"animals": 2}, needs="audio"),
    _r(
        34,
        "the sound of a musical instrument",
        "audio",
        "category",
        "category",
        {"instruments": 2},
        needs="audio",
    ),
    _r(35, "a world music clip", "audio", "category", "category", {"music": 2}, needs="audio"),
    # -- exclusions --
    _r(
        36,
        "animal pictures but no insects",
        "image",
        "exclusion",
        "category",
        {"animals": 2, "animals/insects": 0},
        never=("animals/insects",),
    ),
    _r(
        37,
        "food, but no fruit",
        "image",
        "exclusion",
        "category",
        {"food": 2, "food/fruit": 0},
        never=("food/fruit",),
    ),
    _r(
        38,
        "vehicles, but nothing that flies",
        "image",
        "exclusion",
        "category",
        {"vehicles": 2, "vehicles/flight": 0},
        never=("vehicles/flight",),
    ),
    _r(
        39,
        "calm music, nothing energetic or happy",
        "audio",
        "exclusion",
        "mood",
        {"calm": 2, "tender": 1, "nostalgic": 1},
        never=("energetic", "happy"),
    ),
    # -- personas (their histories are in the store; liked items do not come back) --
    _r(
        40,
        "something to listen to",
        "audio",
        "persona",
        "mood",
        CALM,
        user="maya",
        never=("energetic",),
    ),
    _r(
        41,
        "more pictures like the ones I liked",
        "image",
        "persona",
        "category",
        {"plants": 2},
        user="maya",
    ),
    _r(42, "show me more", "any", "persona", "category", {"space": 2, "vehicles": 2}, user="leo"),
    _r(
        43,
        "a picture for my wall",
        "image",
        "persona",
        "category",
        {"space": 2, "vehicles": 2},
        user="leo",
    ),
    _r(44, "more animals please", "image", "persona", "category", {"animals": 2}, user="ana"),
    _r(
        45,
        "a sound for my kids",
        "audio",
        "persona",
        "category",
        {"animals": 2, "instruments": 1},
        user="ana",
        needs="audio",
    ),
    _r(46, "music for cooking", "audio", "persona", "mood", UPBEAT, user="sam", never=("calm",)),
    _r(47, "something tasty", "image", "persona", "category", {"food": 2}, user="sam"),
)


# ---------------------------------------------------------------- judging


def label_value(labels: Mapping[str, Any], fld: str) -> str | None:
    """The judged value of one item: its mood, or "category/subcategory"."""
    if fld == "mood":
        return labels.get("mood") or None
    cat = labels.get("category")
    if not cat:
        return None
    sub = labels.get("subcategory") or ""
    return f"{cat}/{sub}" if sub else str(cat)


def _matches(value: str, key: str) -> bool:
    return value == key or value.startswith(key + "/")


def gain(req: BenchRequest, labels: Mapping[str, Any], has: Mapping[str, bool]) -> int:
    value = label_value(labels, req.field)
    if value is None or (req.needs and not has.get(req.needs)):
        return 0
    if any(_matches(value, n) for n in req.never):
        return 0
    best = [g for k, g in req.gains.items() if _matches(value, k)]
    if not best:
        return 0
    # the most specific matching key decides ("animals/insects": 0 beats "animals": 2)
    longest = max((k for k in req.gains if _matches(value, k)), key=len)
    return int(req.gains[longest])


def is_violation(req: BenchRequest, labels: Mapping[str, Any]) -> bool:
    value = label_value(labels, req.field)
    return value is not None and any(_matches(value, n) for n in req.never)


def ndcg(gains_ranked: Sequence[int], ideal: Sequence[int], k: int = TOP_K) -> float:
    """Graded NDCG@k with gain 2^g - 1."""
    dcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(gains_ranked[:k]))
    best = sorted(ideal, reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(best))
    return dcg / idcg if idcg > 0 else 0.0


def judge(
    req: BenchRequest,
    ranked: Sequence[str],
    labels: Mapping[str, Mapping[str, Any]],
    has: Mapping[str, Mapping[str, bool]],
    seen: set[str],
) -> dict[str, Any]:
    """Metrics of one ranked list (ids, best first) for one request."""
    pool = [i for i in labels if label_value(labels[i], req.field) is not None and i not in seen]
    ideal = [gain(req, labels[i], has.get(i, {})) for i in pool]
    condensed = [i for i in ranked if i in labels and label_value(labels[i], req.field)]
    g_cond = [gain(req, labels[i], has.get(i, {})) for i in condensed]
    g_raw = [gain(req, labels.get(i, {}), has.get(i, {})) for i in ranked]
    return {
        "ndcg@10": ndcg(g_cond, ideal),
        "p@5": sum(g > 0 for g in g_cond[:P_K]) / P_K,
        "raw_p@5": sum(g > 0 for g in g_raw[:P_K]) / P_K,
        "violations@10": sum(is_violation(req, labels.get(i, {})) for i in ranked[:TOP_K]),
        "relevant_in_pool": sum(g > 0 for g in ideal),
    }


# ---------------------------------------------------------------- leakage check


def check_withheld(items: Mapping[str, Any], labels: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise if a withheld mood/BPM/key or a stamp's folder is readable from an item.

    Moods, BPM and key are checked against every field, ids and file names included; a
    stamp's folders against its tags and metadata (a description may rightly say "a space
    shuttle", and a title "Christmas tree").
    """
    for item_id, lab in labels.items():
        item = items.get(item_id)
        if item is None:
            continue
        # YAMNet's mood classes ("Tender music") are measured from the audio by the system
        # itself: they are allowed to name a mood, so they are left out of this check
        measured = {m.lower() for m in MOOD_CLASSES}  # tags the build measured
        every = json.dumps(
            [
                item.id,
                item.title,
                item.description,
                [t for t in item.tags if t.lower() not in measured],
                {k: v for k, v in item.metadata.items() if k != "yamnet_moods"},
                Path(item.image or "").name,
                Path(item.audio or "").name,
            ],
            ensure_ascii=False,
            default=str,
        ).lower()
        if lab.get("mood"):
            for value in (lab["mood"], f"{lab.get('bpm')} bpm", str(lab.get("key")).lower()):
                if re.search(rf"\b{re.escape(value)}\b", every):
                    raise AssertionError(f"{item_id}: withheld {value!r} is visible")
        if lab.get("source") == "tuxpaint":
            # Tags and metadata are where a builder would leak a folder. Ids and file names
            # repeat the package's own file name, which sometimes shares a word with its folder
            # (seasonal/christmas/german_christmas_toy); no model reads ids or file names.
            meta = json.dumps([list(item.tags), item.metadata], ensure_ascii=False).lower()
            for value in [lab.get("category"), *str(lab.get("subcategory", "")).split("/")]:
                if value and re.search(rf"\b{re.escape(value)}\b", meta):
                    raise AssertionError(f"{item_id}: withheld folder {value!r} is visible")


# ---------------------------------------------------------------- running


@dataclass
@dataclass
class Condition:
    name: str
    per_request: list[dict[str, Any]] = field(default_factory=list)


def _linker(agent: Any) -> Any:
    from agent.chat.linking import TitleLinker

    if not hasattr(agent, "_bench_linker"):
        agent._bench_linker = TitleLinker(
            ((i, it.title, None) for i, it in agent.items.items()), fuzzy=False
        )
    return agent._bench_linker


def parse_request(agent: Any, text: str) -> Any:
    """The conversation state after one user turn (helper C2's `agent.chat.state`)."""
    from agent.chat.state import update_state

    return update_state(None, "user", text, linker=_linker(agent))


def ild(agent: Any, ids: Sequence[str]) -> float:
    """Intra-list diversity of a shown list: mean 1 - similarity over pairs, with the product's
    own notion of alike (`RecommendationAgent.similarity`)."""
    from retrieval.diversity import intra_list_diversity

    return round(intra_list_diversity(agent.similarity(list(ids))), 4)


def _has(agent: Any) -> dict[str, dict[str, bool]]:
    return {i: {"image": bool(it.image), "audio": bool(it.audio)} for i, it in agent.items.items()}


def _seen(agent: Any, req: BenchRequest, user: str) -> set[str]:
    return set(agent.users.get(user).interactions) if req.user else set()


def run_condition(
    agent: Any,
    name: str,
    labels: Mapping[str, Mapping[str, Any]],
    requests: Sequence[BenchRequest],
    *,
    understand: bool,
) -> Condition:
    """Ask the agent for each request (cold user or persona) and judge the list."""
    has = _has(agent)
    cond = Condition(name)
    for req in requests:
        user = req.user or f"bench-cold-{req.id}"
        t = time.perf_counter()
        state = None
        if understand:  # the chat's own path: conversation state, filters, measured moods
            agent.reset_conversation(user)
            state = agent.update_conversation(user, req.text)
            result = agent.recommend_conversation(user, k=RETRIEVE)
        else:
            result = agent.recommend(user, k=RETRIEVE, query=req.text)
        ranked = [r.item.id for r in result.items]
        seconds = time.perf_counter() - t
        row = judge(req, ranked, labels, has, _seen(agent, req, user))
        row["ild@10"] = ild(agent, ranked[:TOP_K])
        q = None if state is None else state.request
        row |= {
            "id": req.id,
            "text": req.text,
            "user": req.user,
            "intent": req.intent,
            "kind": req.kind,
            "seconds": round(seconds, 3),
            "note": result.note,
            "parsed": None
            if q is None
            else {
                "kinds": list(q.kinds),
                "moods": list(q.moods),
                "attributes": list(q.attributes),
                "exclude_terms": list(q.exclude_terms),
            },
            "top3": [agent.items[i].title for i in ranked[:3]],
            "ranked": ranked,
            "scores": {r.item.id: round(float(r.score), 6) for r in result.items},
        }
        cond.per_request.append(row)
        logger.info(
            "%s %s ndcg %.3f p@5 %.2f %.1fs", name, req.id, row["ndcg@10"], row["p@5"], seconds
        )
    return cond


class LLMScorer:
    """Helper C2's conversation re-ranker (`llm-conversation`): P(Yes) for the top `top`
    candidates of each request, given the request, what the rules understood, the persona's
    liked/disliked titles and what the encoders saw and heard. Scores are kept, so fusion
    weights are compared afterwards without asking the LLM again."""

    def __init__(
        self,
        model: str,
        *,
        top: int = 20,
        time_budget_s: float | None = 300.0,
        threads: int = 2,
        cache: Path | None = None,
    ) -> None:
        from agent.llm import load_llm
        from agent.rerank import create_reranker

        self.model = model
        self.top = top
        self.cache = cache  # JSONL of finished scorings: a stopped run resumes where it was
        self._done: dict[str, dict[str, Any]] = {}
        if cache is not None and cache.is_file():
            for line in cache.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self._done[rec["key"]] = rec["value"]
                except (json.JSONDecodeError, KeyError):
                    continue
        self.reranker = create_reranker(
            "llm-conversation",
            llm=load_llm(model, num_threads=threads),
            alpha=1.0,
            time_budget_s=time_budget_s,
        )

    def score(self, agent: Any, req: BenchRequest, ranked: list[str]) -> dict[str, Any]:
        from agent.explain.evidence import labels_from_metadata
        from agent.rerank.conversation import ConversationContext
        from retrieval.candidates import Candidate

        head = ranked[: self.top]
        key = f"{self.model}|{req.id}|{req.text}|{','.join(head)}"
        if key in self._done:
            return self._done[key]
        t = time.perf_counter()
        _, _, metas = agent.store.get("text", head, include_vectors=False)
        meta = dict(zip(head, metas, strict=False))
        user = req.user or f"bench-cold-{req.id}"
        hist = agent.users.get(user).history()
        ctx = dataclasses.replace(
            ConversationContext.from_state(
                parse_request(agent, req.text),
                labels={i: labels_from_metadata(meta.get(i, {})) for i in head},
            ),
            liked=tuple(agent.items[h.item_id].title for h in hist if h.rating >= 4),
            disliked=tuple(agent.items[h.item_id].title for h in hist if h.rating <= 2),
        )
        cands = [
            Candidate(item_id=i, score=float(len(head) - n), sources={}, rank=n + 1)
            for n, i in enumerate(head)
        ]
        res = self.reranker.rank(ctx, cands, agent.items)
        out: dict[str, Any] = {"head": head, "seconds": round(time.perf_counter() - t, 2)}
        llm = {e.candidate.item_id: e.llm_score for e in res.entries}
        if res.fallback_reason is None and all(v is not None for v in llm.values()):
            out["llm"] = {i: float(v) for i, v in llm.items()}
        else:
            out["fallback"] = res.fallback_reason
        if self.cache is not None:
            with self.cache.open("a") as fh:
                fh.write(json.dumps({"key": key, "value": out}) + "\n")
        self._done[key] = out
        return out


def fused_order(row: Mapping[str, Any], llm: Mapping[str, Any], alpha: float) -> list[str]:
    """The list after fusing the LLM with the retriever at weight `alpha` (head only)."""
    from retrieval.fusion import fuse_scores

    if "llm" not in llm:
        return list(row["ranked"])
    head = llm["head"]
    # the retriever's score is its rank order (scores of the agent's list are comparable
    # within a request, but filtered lists lose some; the rank is what the list shows)
    retr = np.asarray([len(head) - n for n in range(len(head))], dtype=np.float64)
    fused = fuse_scores(retr, np.asarray([llm["llm"][i] for i in head]), alpha)
    order = [head[j] for j in np.argsort(-fused, kind="stable")]
    rest = [i for i in row["ranked"] if i not in set(head)]
    return order + rest


ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)  # fusion weights compared on the validation requests
MOOD_WEIGHTS = (0.0, 0.5, 0.75, 1.0)  # measured-mood fusion weights, the same way
QUERY_BOOSTS = (1.0, 3.0)  # [hybrid] chat_query_boost values compared
LABEL_WEIGHTS = (0.0, 0.25, 0.5, 1.0)  # [hybrid] query_label_weight values, tuned the same way
DIVERSITY_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)  # [diversity] weight: the trade-off, reported


def _configured(
    cfg: Any, *, boost: float, mood: float, diversity: float, label: float | None = None
) -> Any:
    label = cfg.hybrid.query_label_weight if label is None else label
    hybrid = dataclasses.replace(
        cfg.hybrid, chat_query_boost=boost, chat_mood_weight=mood, query_label_weight=label
    )
    div = dataclasses.replace(cfg.diversity, weight=diversity)
    return dataclasses.replace(cfg, hybrid=hybrid, diversity=div)


def _use(agent: Any, cfg: Any) -> None:
    """Point the agent at `cfg`. The chat reads `agent.config` at every turn; the generator keeps
    its own [hybrid] copy (with the merged weights), so the request's label weight is copied in."""
    agent.config = cfg
    agent.generator.config = dataclasses.replace(
        agent.generator.config, query_label_weight=cfg.hybrid.query_label_weight
    )


def is_validation(req_id: str) -> bool:
    """Every third request (r03, r06, ...) tunes the fusion weight; the rest report it."""
    return int(req_id[1:]) % 3 == 0


def llm_conditions(
    agent: Any,
    base: Condition,
    scorer: LLMScorer,
    labels: Mapping[str, Mapping[str, Any]],
    requests: Sequence[BenchRequest],
) -> tuple[dict[str, Condition], dict[str, Any]]:
    """Score once with the LLM; judge each fusion weight; pick alpha on validation requests."""
    has = _has(agent)
    by_id = {r.id: r for r in requests}
    scored = {}
    for row in base.per_request:
        scored[row["id"]] = scorer.score(agent, by_id[row["id"]], row["ranked"])
        logger.info("%s %s llm %.1fs", scorer.model, row["id"], scored[row["id"]]["seconds"])
    conds: dict[str, Condition] = {}
    for alpha in ALPHAS:
        cond = Condition(f"{scorer.model} alpha={alpha}")
        for row in base.per_request:
            req = by_id[row["id"]]
            user = req.user or f"bench-cold-{req.id}"
            order = fused_order(row, scored[row["id"]], alpha)
            new = judge(req, order, labels, has, _seen(agent, req, user))
            new |= {k: row[k] for k in ("id", "text", "user", "intent", "kind", "parsed")}
            new["seconds"] = round(row["seconds"] + scored[row["id"]]["seconds"], 3)
            new["llm_fallback"] = scored[row["id"]].get("fallback")
            new["ild@10"] = ild(agent, order[:TOP_K])
            new["top3"] = [agent.items[i].title for i in order[:3]]
            new["ranked"] = order
            cond.per_request.append(new)
        conds[str(alpha)] = cond
    val = {
        a: float(np.mean([r["ndcg@10"] for r in c.per_request if is_validation(r["id"])]))
        for a, c in conds.items()
    }
    best = max(val, key=lambda a: (round(val[a], 6), -float(a)))  # ties: the smaller weight
    return conds, {"validation_ndcg@10": val, "alpha": float(best)}


METRICS = ("ndcg@10", "p@5", "raw_p@5", "violations@10", "ild@10", "seconds")
_CALM_IDS = {r.id for r in REQUESTS if "energetic" in r.never}


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    for m in METRICS:
        out[m] = round(float(np.mean([r[m] for r in rows])), 4) if rows else 0.0
    groups: dict[str, dict[str, Any]] = {}
    for key in ("intent", "kind"):
        for value in sorted({r[key] for r in rows}):
            sub = [r for r in rows if r[key] == value]
            groups[f"{key}={value}"] = {"n": len(sub)} | {
                m: round(float(np.mean([r[m] for r in sub])), 4) for m in METRICS
            }
    mood_cat = [r for r in rows if r["kind"] in ("mood", "category")]
    out["mood_category_p@5"] = (
        round(float(np.mean([r["p@5"] for r in mood_cat])), 4) if mood_cat else 0.0
    )
    out["calm_requests_with_energetic@10"] = sum(
        1 for r in rows if r["violations@10"] and r["id"] in _CALM_IDS
    )
    out["groups"] = groups
    return out


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n: int = BOOTSTRAP) -> dict[str, Any]:
    """Mean of a - b with its 95% percentile interval, resampling requests (paired)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(SEED)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"diff": round(float(d.mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['requests']} requests over {report['items']} items "
        f"(test split for the LLM rows: {report.get('test_requests', '-')} requests).",
        "",
        "| condition | n | NDCG@10 | P@5 | raw P@5 | mood/category P@5 | violations@10 "
        "| calm->energetic | ILD@10 | s/request |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["conditions"].items():
        lines.append(
            f"| {name} | {s['n']} | {s['ndcg@10']:.3f} | {s['p@5']:.3f} | {s['raw_p@5']:.3f} | "
            f"{s['mood_category_p@5']:.3f} | {s['violations@10']:.2f} | "
            f"{s['calm_requests_with_energetic@10']} | {s.get('ild@10', 0):.3f} | "
            f"{s['seconds']:.2f} |"
        )
    lines += [
        "",
        "| condition | group | n | NDCG@10 | P@5 | raw P@5 | s/request |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in report["conditions"].items():
        for g, v in s["groups"].items():
            lines.append(
                f"| {name} | {g} | {v['n']} | {v['ndcg@10']:.3f} | {v['p@5']:.3f} | "
                f"{v['raw_p@5']:.3f} | {v['seconds']:.2f} |"
            )
    for name, d in report.get("paired", {}).items():
        lines += [
            "",
            f"{name}: NDCG@10 {d['ndcg@10']['diff']:+.3f} (95% CI {d['ndcg@10']['ci95']}), "
            f"P@5 {d['p@5']['diff']:+.3f} (95% CI {d['p@5']['ci95']})",
        ]
    for name, t in report.get("tuning", {}).items():
        if "chosen" in t:
            lines.append(
                f"\n{name}: validation NDCG@10 {t['validation_ndcg@10']}, "
                f"chosen {t['chosen']} (configured default {t['configured']})"
            )
            continue
        lines.append(
            f"\n{name}: validation NDCG@10 by alpha {t['validation_ndcg@10']}, "
            f"chosen alpha {t['alpha']}"
        )
    return "\n".join(lines) + "\n"


def run(
    config: str | Path,
    *,
    labels_path: str | Path | None = None,
    llms: Sequence[str] = (),
    out: str | Path | None = None,
    limit: int | None = None,
    threads: int = 2,
    top: int = 20,
    budget: float | None = 300.0,
) -> dict[str, Any]:
    from agent.agent import RecommendationAgent
    from retrieval.config import FusionrecConfig

    cfg = FusionrecConfig.from_toml(config)
    if labels_path is None:
        if not cfg.data.items:
            raise SystemExit("the config names no [data] items file; pass --labels")
        labels_path = Path(cfg.data.items).expanduser().parent / "benchmark_labels.json"
    labels = json.loads(Path(labels_path).read_text())
    requests = REQUESTS[:limit] if limit else REQUESTS
    base_cfg = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, alpha=0.0, chat_alpha=0.0))
    agent = RecommendationAgent.from_config(base_cfg)
    check_withheld(agent.items, labels)
    report: dict[str, Any] = {
        "requests": len(requests),
        "items": len(agent.items),
        "conditions": {},
        "paired": {},
        "tuning": {},
        "per_request": {},
    }
    # every relevance row with the list's diversity off; its own rows come after the tuning
    _use(
        agent,
        _configured(
            base_cfg,
            boost=cfg.hybrid.chat_query_boost,
            mood=cfg.hybrid.chat_mood_weight,
            diversity=0,
        ),
    )
    conds: dict[str, Condition] = {
        "retriever": run_condition(agent, "retriever", labels, requests, understand=False),
    }
    # [hybrid] chat_query_boost x chat_mood_weight x query_label_weight on the validation
    # requests, with the list's diversity off (relevance only); then the diversity weights at
    # the chosen triple
    grid: dict[tuple[float, float, float], Condition] = {}
    for boost in QUERY_BOOSTS:
        for w in MOOD_WEIGHTS:
            for lw in LABEL_WEIGHTS:
                _use(agent, _configured(base_cfg, boost=boost, mood=w, diversity=0.0, label=lw))
                grid[(boost, w, lw)] = run_condition(
                    agent,
                    f"understanding boost={boost} mood={w} label={lw}",
                    labels,
                    requests,
                    understand=True,
                )
    val = {
        key: float(np.mean([r["ndcg@10"] for r in c.per_request if is_validation(r["id"])]))
        for key, c in grid.items()
    }
    # the boost stays the configured one (it also serves refinements such as "like Heat but
    # funnier", which these requests do not test); the weights are chosen at that boost
    boost = cfg.hybrid.chat_query_boost
    at_boost = [key for key in val if key[0] == boost] or list(val)
    chosen = max(at_boost, key=lambda k: (round(val[k], 6), -k[1], -k[2]))  # ties: smaller
    h = cfg.hybrid
    report["tuning"]["chat_query_boost x chat_mood_weight x query_label_weight"] = {
        "validation_ndcg@10": {f"{b} x {w} x {lw}": round(v, 4) for (b, w, lw), v in val.items()},
        "chosen": list(chosen),
        "configured": [h.chat_query_boost, h.chat_mood_weight, h.query_label_weight],
    }
    conds["retriever+understanding"] = grid[chosen]
    for (b, w, lw), c in grid.items():
        name = f"understanding, query boost {b}, mood weight {w}, label weight {lw} (all)"
        report["conditions"][name] = summarize(c.per_request)
    for d in DIVERSITY_WEIGHTS:
        _use(
            agent,
            _configured(base_cfg, boost=chosen[0], mood=chosen[1], diversity=d, label=chosen[2]),
        )
        c = run_condition(agent, f"diversity={d}", labels, requests, understand=True)
        report["conditions"][f"understanding + diversity weight {d} (all)"] = summarize(
            c.per_request
        )
    _use(
        agent,
        _configured(base_cfg, boost=chosen[0], mood=chosen[1], diversity=0.0, label=chosen[2]),
    )
    for name, c in conds.items():
        report["conditions"][name] = summarize(c.per_request)
        report["per_request"][name] = c.per_request
    test_ids = [r.id for r in requests if not is_validation(r.id)]
    report["test_requests"] = len(test_ids)
    base = conds["retriever+understanding"]
    base_test = [r for r in base.per_request if r["id"] in test_ids]
    report["conditions"]["retriever+understanding (test split)"] = summarize(base_test)
    for model in llms:
        cache = Path(out).with_name(f"{Path(out).stem}_llm_cache.jsonl") if out else None
        scorer = LLMScorer(model, threads=threads, top=top, cache=cache, time_budget_s=budget)
        by_alpha, tuning = llm_conditions(agent, base, scorer, labels, requests)
        report["tuning"][model] = tuning
        chosen = by_alpha[str(tuning["alpha"])]
        name = f"+LLM {model} (alpha {tuning['alpha']}, test split)"
        test = [r for r in chosen.per_request if r["id"] in test_ids]
        report["conditions"][name] = summarize(test)
        report["per_request"][name] = chosen.per_request
        report["paired"][f"{name} minus retriever+understanding"] = {
            m: paired_bootstrap([r[m] for r in test], [r[m] for r in base_test])
            for m in ("ndcg@10", "p@5")
        }
        for alpha, c in by_alpha.items():
            report["conditions"][f"{model} alpha={alpha} (all requests)"] = summarize(c.per_request)
    for rows in report["per_request"].values():  # keep the report readable: top 20, no scores
        for r in rows:
            r.pop("scores", None)
            r["ranked"] = r["ranked"][:20]
    if out:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(report, indent=1, ensure_ascii=False))
        p.with_name(p.stem + "_table.md").write_text(to_markdown(report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="the media demo's fusionrec.toml")
    p.add_argument("--labels", help="benchmark_labels.json (default: beside the catalogue)")
    p.add_argument("--llm", action="append", default=[], help="LLM re-rank with this model")
    p.add_argument("--threads", type=int, default=2, help="LLM threads")
    p.add_argument("--top", type=int, default=20, help="candidates the LLM re-scores")
    p.add_argument(
        "--budget", type=float, default=300.0, help="LLM seconds per request (0 = no limit)"
    )
    p.add_argument("--limit", type=int, help="only the first N requests (smoke runs)")
    p.add_argument("--out", help="JSON report; a Markdown table is written beside it (_table.md)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(
        args.config,
        labels_path=args.labels,
        llms=args.llm,
        out=args.out,
        limit=args.limit,
        threads=args.threads,
        top=args.top,
        budget=args.budget or None,
    )
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
