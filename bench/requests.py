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
- seconds per request.

Conditions: `retriever` (the agent's hybrid retriever with the request text; alpha 0) and,
with `--llm MODEL`, the agent with the LLM re-ranker fused at `--alpha`. The difference in
NDCG@10 and P@5 gets a 95% paired bootstrap interval over requests.

    python -m bench.requests --config ~/.fusionrec/demo/fusionrec.toml --out docs/requests.json
    python -m bench.requests --config ... --llm qwen2.5-coder-1.5b --alpha 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
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

    Categories are checked against ids, tags, metadata and media file names (a description
    may rightly say "a space shuttle"); moods, BPM and key against every field.
    """
    for item_id, lab in labels.items():
        item = items.get(item_id)
        if item is None:
            continue
        every = json.dumps(
            [
                item.id,
                item.title,
                item.description,
                list(item.tags),
                item.metadata,
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
            meta = json.dumps(
                [
                    item.id,
                    list(item.tags),
                    item.metadata,
                    Path(item.image or "").name,
                    Path(item.audio or "").name,
                ],
                ensure_ascii=False,
                default=str,
            ).lower()
            for value in [lab.get("category"), *str(lab.get("subcategory", "")).split("/")]:
                if value and re.search(rf"\b{re.escape(value)}\b", meta):
                    raise AssertionError(f"{item_id}: withheld folder {value!r} is visible")


# ---------------------------------------------------------------- running


@dataclass
class Condition:
    name: str
    per_request: list[dict[str, Any]] = field(default_factory=list)


def _request_parse(agent: Any, text: str) -> Any | None:
    """The conversation state's request (helper C2's parser), or None if unavailable."""
    try:
        from agent.chat.linking import TitleLinker
        from agent.chat.state import update_state
    except ImportError:
        return None
    if not hasattr(agent, "_bench_linker"):
        agent._bench_linker = TitleLinker(
            ((i, it.title, None) for i, it in agent.items.items()), fuzzy=False
        )
    return update_state(None, "user", text, linker=agent._bench_linker).request


def apply_request(ranked: list[str], request: Any, items: Mapping[str, Any]) -> list[str]:
    """Apply what the parser understood that the retriever does not yet: the wanted media kind
    ("to listen to" -> items with audio) and exclusions ("no insects"). Stable order."""
    if request is None:
        return ranked
    out = ranked
    kinds = set(getattr(request, "kinds", ()) or ()) & {"image", "audio"}
    if kinds:
        keep = [i for i in out if any(getattr(items[i], k, None) for k in kinds)]
        out = keep or out
    terms = [t.lower() for t in getattr(request, "exclude_terms", ()) or ()]
    if terms:
        pats = [re.compile(rf"\b{re.escape(t)}", re.I) for t in terms]

        def hit(i: str) -> bool:
            it = items[i]
            hay = " ".join([it.title, it.description, *it.tags])
            return any(p.search(hay) for p in pats)

        out = [i for i in out if not hit(i)]
    drop = set(getattr(request, "exclude_ids", ()) or ())
    return [i for i in out if i not in drop]


def run_condition(
    agent: Any,
    name: str,
    labels: Mapping[str, Mapping[str, Any]],
    requests: Sequence[BenchRequest],
    *,
    understand: bool,
) -> Condition:
    has = {i: {"image": bool(it.image), "audio": bool(it.audio)} for i, it in agent.items.items()}
    sig = inspect.signature(agent.recommend).parameters
    cond = Condition(name)
    for req in requests:
        user = req.user or f"bench-cold-{req.id}"
        seen = set(agent.users.get(user).interactions) if req.user else set()
        t = time.perf_counter()
        parsed = _request_parse(agent, req.text) if understand else None
        kwargs: dict[str, Any] = {"k": RETRIEVE, "query": req.text}
        native = parsed is not None and "request" in sig
        if native:
            kwargs["request"] = parsed
        result = agent.recommend(user, **kwargs)
        ranked = [r.item.id for r in result.items]
        if parsed is not None and not native:
            ranked = apply_request(ranked, parsed, agent.items)
        seconds = time.perf_counter() - t
        row = judge(req, ranked, labels, has, seen)
        row |= {
            "id": req.id,
            "text": req.text,
            "user": req.user,
            "intent": req.intent,
            "kind": req.kind,
            "seconds": round(seconds, 3),
            "reranked": bool(result.reranked),
            "note": result.note,
            "parsed": None
            if parsed is None
            else {
                "kinds": list(parsed.kinds),
                "moods": list(parsed.moods),
                "attributes": list(parsed.attributes),
                "exclude_terms": list(parsed.exclude_terms),
            },
            "top3": [agent.items[i].title for i in ranked[:3]],
            "top10_ids": ranked[:TOP_K],
        }
        cond.per_request.append(row)
        logger.info(
            "%s %s ndcg %.3f p@5 %.2f %.1fs", name, req.id, row["ndcg@10"], row["p@5"], seconds
        )
    return cond


METRICS = ("ndcg@10", "p@5", "raw_p@5", "violations@10", "seconds")


def summarize(cond: Condition) -> dict[str, Any]:
    rows = cond.per_request
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
    out["mood_category_p@5"] = round(float(np.mean([r["p@5"] for r in mood_cat])), 4)
    out["calm_requests_with_energetic@10"] = sum(
        1 for r in rows if r["violations@10"] and r["id"] in _CALM_IDS
    )
    out["groups"] = groups
    return out


_CALM_IDS = {r.id for r in REQUESTS if "energetic" in r.never}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n: int = BOOTSTRAP) -> dict[str, Any]:
    """Mean of a - b with its 95% percentile interval, resampling requests (paired)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(SEED)
    idx = rng.integers(0, len(d), size=(n, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"diff": round(float(d.mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| condition | NDCG@10 | P@5 | raw P@5 | mood/category P@5 | violations@10 | s/request |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in report["conditions"].items():
        lines.append(
            f"| {name} | {s['ndcg@10']:.3f} | {s['p@5']:.3f} | {s['raw_p@5']:.3f} | "
            f"{s['mood_category_p@5']:.3f} | {s['violations@10']:.2f} | {s['seconds']:.2f} |"
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
        lines.append("")
        lines.append(
            f"{name}: NDCG@10 {d['ndcg@10']['diff']:+.3f} (95% CI {d['ndcg@10']['ci95']}), "
            f"P@5 {d['p@5']['diff']:+.3f} (95% CI {d['p@5']['ci95']})"
        )
    return "\n".join(lines) + "\n"


def run(
    config: str | Path,
    *,
    labels_path: str | Path | None = None,
    llms: Sequence[str] = (),
    alpha: float = 0.5,
    reranker: str | None = None,
    out: str | Path | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    from agent.agent import RecommendationAgent
    from retrieval.config import FusionrecConfig

    cfg = FusionrecConfig.from_toml(config)
    labels_file = (
        Path(labels_path)
        if labels_path
        else Path(cfg.data.items).parent / ("benchmark_labels.json")
    )
    labels = json.loads(labels_file.read_text())
    requests = REQUESTS[:limit] if limit else REQUESTS
    base = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, alpha=0.0))
    agent = RecommendationAgent.from_config(base)
    check_withheld(agent.items, labels)
    report: dict[str, Any] = {
        "requests": len(requests),
        "items": len(agent.items),
        "conditions": {},
        "paired": {},
        "per_request": {},
    }
    conds: dict[str, Condition] = {}
    conds["retriever"] = run_condition(agent, "retriever", labels, requests, understand=False)
    conds["retriever+understanding"] = run_condition(
        agent, "retriever+understanding", labels, requests, understand=True
    )
    for model in llms:
        llm_cfg = dataclasses.replace(
            cfg.llm, model=model, alpha=alpha, reranker=reranker or cfg.llm.reranker
        )
        llm_agent = RecommendationAgent.from_config(dataclasses.replace(cfg, llm=llm_cfg))
        name = f"+LLM {model} (alpha {alpha})"
        conds[name] = run_condition(llm_agent, name, labels, requests, understand=True)
        base_rows = conds["retriever+understanding"].per_request
        report["paired"][f"{name} minus retriever+understanding"] = {
            m: paired_bootstrap([r[m] for r in conds[name].per_request], [r[m] for r in base_rows])
            for m in ("ndcg@10", "p@5")
        }
    for name, c in conds.items():
        report["conditions"][name] = summarize(c)
        report["per_request"][name] = c.per_request
    if out:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(report, indent=1, ensure_ascii=False))
        p.with_suffix(".table.md").write_text(to_markdown(report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="the media demo's fusionrec.toml")
    p.add_argument("--labels", help="benchmark_labels.json (default: beside the catalogue)")
    p.add_argument("--llm", action="append", default=[], help="LLM re-rank with this model")
    p.add_argument("--alpha", type=float, default=0.5, help="LLM weight in the fused score")
    p.add_argument("--reranker", help="re-ranker name (default: the config's)")
    p.add_argument("--limit", type=int, help="only the first N requests (smoke runs)")
    p.add_argument("--out", help="JSON report; a .table.md is written beside it")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(
        args.config,
        labels_path=args.labels,
        llms=args.llm,
        alpha=args.alpha,
        reranker=args.reranker,
        out=args.out,
        limit=args.limit,
    )
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
