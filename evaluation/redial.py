"""ReDial conversational recommendation: the protocol of He et al. (CIKM'23), as JSON + Markdown.

Protocol: one sample per (turn, target film) whose target is NOT among the entities
mentioned before (`prev_entity`): the recommendation condition. Every legal film is ranked
with the films in `prev_entity` (and any film the system itself excluded) removed; ties count
against the system. Recall@1/5/10/20/50 and NDCG@10, mean over samples, with 95% intervals
from a bootstrap over dialogues (samples of one dialogue are not independent), and paired
intervals for differences (the same resampled dialogues for both rows).

Split by `dialog_id`: the first `val_share` of dialogues in file order are validation, where
every weight and threshold is chosen; the rest are reported. The system sees only the
dialogue text: mentions come from the same conversation-state code the chat uses
(`agent.chat.state.track_dialogue` when present), never from `prev_entity`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.redial_metrics import (
    BOOTSTRAP,
    KS,
    REPORTED,
    bootstrap_weights,
    paired,
    ranks_for,
    summarize,
)
from evaluation.redial_report import PUBLISHED, to_markdown, write_report
from evaluation.redial_state import StateFn, TurnState, chat_state
from retrieval.config import ConversationConfig, default_home
from retrieval.conversational import ConversationQuery, ConversationRetriever
from retrieval.datasets.redial import RedialData, RedialSample, load_redial
from retrieval.fusion import normalise
from retrieval.metrics import metrics_from_ranks
from retrieval.vector_cache import cached_vectors

logger = logging.getLogger(__name__)

WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
TIEBREAK = 1e-3  # weight of outside popularity in single-source rows: breaks ties only
CHUNK = 256  # turns scored at once (each source is CHUNK x n_items float32)


# -- the evaluation ------------------------------------------------------------


@dataclass
class Part:
    """Samples of one split with everything needed to score them."""

    samples: list[RedialSample]
    turn_rows: np.ndarray  # (S,) row of each sample's turn in `turns`
    turns: list[int]  # turn indices (into data.turns) scored
    targets: np.ndarray  # (S,) column of each target
    excluded: list[np.ndarray]  # per sample: prev_entity + system exclusions (columns)
    groups: list[str]  # per sample: dialog_id


def _split(data: RedialData, val_share: float) -> tuple[set[str], set[str]]:
    dialogs = data.dialog_ids()
    n_val = int(round(len(dialogs) * val_share))
    return set(dialogs[:n_val]), set(dialogs[n_val:])


def _part(
    data: RedialData, dialogs: set[str], states: list[TurnState], pos: dict[str, int]
) -> Part:
    turn_idx = [t for t, turn in enumerate(data.turns) if turn.dialog_id in dialogs]
    samples = data.samples(turn_idx)
    row_of = {t: r for r, t in enumerate(turn_idx)}
    used = sorted({s.turn for s in samples})
    row_of = {t: r for r, t in enumerate(used)}
    excluded = []
    for s in samples:
        turn = data.turns[s.turn]
        q = states[s.turn].query
        ids = {*turn.prev_entity, *q.liked_ids, *q.disliked_ids, *q.exclude_ids}
        excluded.append(np.array(sorted(pos[i] for i in ids if i in pos), dtype=np.int64))
    return Part(
        samples,
        np.array([row_of[s.turn] for s in samples], dtype=np.int64),
        used,
        np.array([pos[s.target] for s in samples], dtype=np.int64),
        excluded,
        [data.turns[s.turn].dialog_id for s in samples],
    )


class SourceScores:
    """Normalised source scores of a part's turns, computed in chunks and kept in memory."""

    def __init__(
        self,
        retriever: ConversationRetriever,
        queries: list[ConversationQuery],
        qvecs: np.ndarray | None,
        *,
        prior_rows: np.ndarray | None = None,
    ) -> None:
        """`prior_rows`: `(len(queries), n_items)` raw prior replacing the retriever's (the
        validation part uses leave-own-dialogue-out counts)."""
        self.norm: dict[str, np.ndarray] = {}
        for start in range(0, len(queries), CHUNK):
            qs = queries[start : start + CHUNK]
            raw = retriever.score_sources(
                qs, query_vectors=None if qvecs is None else qvecs[start : start + CHUNK]
            )
            if prior_rows is not None and "prior" in raw:
                raw["prior"] = prior_rows[start : start + CHUNK]
            seen = retriever.excluded_mask(qs)
            for name, s in raw.items():
                self.norm.setdefault(name, []).append(normalise(s, seen).astype(np.float32))  # type: ignore[arg-type]
        self.norm = {k: np.concatenate(v) for k, v in self.norm.items()}  # type: ignore[arg-type]

    def merged(self, weights: Mapping[str, float]) -> np.ndarray:
        out = None
        for name, w in weights.items():
            if w and name in self.norm:
                out = self.norm[name] * w if out is None else out + self.norm[name] * w
        if out is None:
            out = np.zeros_like(next(iter(self.norm.values())))
        return out


def _ranks(scorer: SourceScores, part: Part, weights: Mapping[str, float]) -> np.ndarray:
    merged = scorer.merged(weights)
    return ranks_for(merged[part.turn_rows], part.targets, part.excluded)


def tune_weights(
    scorer: SourceScores,
    part: Part,
    sources: Sequence[str],
    *,
    start: Mapping[str, float] | None = None,
    rounds: int = 3,
) -> tuple[dict[str, float], float]:
    """Coordinate ascent on validation Recall@10 (+ NDCG@10 / 10 to break ties) over
    `WEIGHT_GRID`. Returns the weights and their validation objective."""

    def objective(w: Mapping[str, float]) -> float:
        m = metrics_from_ranks(_ranks(scorer, part, w), ks=(10,))
        return m["recall@10"] + m["ndcg@10"] / 10

    weights = {s: float((start or {}).get(s, 1.0)) for s in sources}
    best = objective(weights)
    for _ in range(rounds):
        changed = False
        for s in sources:
            for v in WEIGHT_GRID:
                if v == weights[s]:
                    continue
                trial = weights | {s: v}
                if not any(trial.values()):
                    continue
                score = objective(trial)
                if score > best + 1e-9:
                    best, weights, changed = score, trial, True
        if not changed:
            break
    logger.info("tuned %s on validation: %s (objective %.4f)", "/".join(sources), weights, best)
    return weights, best


def _dialogue_films(data: RedialData, dialogs: set[str]) -> dict[str, set[str]]:
    """Legal films mentioned or recommended anywhere in each of `dialogs`."""
    legal = set(data.item_ids)
    films: dict[str, set[str]] = {}
    for turn in data.turns:
        if turn.dialog_id in dialogs:
            films.setdefault(turn.dialog_id, set()).update(
                i for i in (*turn.prev_entity, *turn.targets) if i in legal
            )
    return films


def _validation_prior(films: Mapping[str, set[str]]) -> dict[str, float]:
    """In-domain prior: log(1 + in how many validation dialogues a film is mentioned or
    recommended)."""
    counts: dict[str, int] = {}
    for ids in films.values():
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
    return {i: float(np.log1p(c)) for i, c in counts.items()}


def _leave_own_out(
    retriever: ConversationRetriever, films: Mapping[str, set[str]], dialog_of_rows: Sequence[str]
) -> np.ndarray:
    """The prior of each validation row computed without the row's own dialogue, so tuning its
    weight does not see the answer (the reported part never contributes to the prior)."""
    pos = {i: k for k, i in enumerate(retriever.item_ids)}
    counts = np.zeros(retriever.n_items)
    for ids in films.values():
        counts[[pos[i] for i in ids]] += 1
    out = np.empty((len(dialog_of_rows), retriever.n_items), np.float32)
    for r, d in enumerate(dialog_of_rows):
        c = counts.copy()
        own = [pos[i] for i in films.get(d, ())]
        c[own] -= 1
        out[r] = np.log1p(c)
    return out


def _request_vectors(
    retriever: ConversationRetriever, queries: list[ConversationQuery], cache_dir: Path
) -> np.ndarray | None:
    enc = retriever.text_encoder
    if enc is None:
        return None
    texts = [q.query_text() for q in queries]
    key = hashlib.sha256(
        "\x00".join([json.dumps(enc.get_config(), sort_keys=True), *texts]).encode()
    ).hexdigest()[:16]
    return cached_vectors(
        cache_dir / f"redial-requests-{key}.npy",
        lambda: retriever.encode_requests(queries),
        rows=len(queries),
    )


def build_retriever(
    data: RedialData,
    *,
    store_dir: Path,
    encoder: Any,
    prior: Mapping[str, float] | None,
    config: ConversationConfig,
) -> tuple[ConversationRetriever, dict[str, Any]]:
    """Ingest the catalogue into Chroma through the normal ingest path; a retriever over it."""
    from retrieval.ingest import Encoders, ingest_items
    from retrieval.store import VectorStore

    store = VectorStore.open(store_dir, prefix="redial")
    t0 = time.perf_counter()
    report = ingest_items(data.items, store, Encoders(text=encoder), batch_size=64)
    logger.info("ingest into %s: %s", store_dir, report.summary())
    retriever = ConversationRetriever(
        data.items,
        store,
        text_encoder=encoder,
        interactions=data.interactions,
        popularity=data.popularity,
        prior=prior,
        config=config,
    )
    return retriever, {
        "store": str(store_dir),
        "ingest": report.summary(),
        "ingest_seconds": round(time.perf_counter() - t0, 1),
    }


def _linking(data: RedialData, part: Part, states: list[TurnState]) -> dict[str, Any]:
    """How many legal `prev_entity` films the state linked, over the part's scored turns."""
    legal = set(data.item_ids)
    found = total = linked = 0
    for t in part.turns:
        gold = {i for i in data.turns[t].prev_entity if i in legal}
        got = set(states[t].mentioned_ids)
        found += len(gold & got)
        total += len(gold)
        linked += len(got)
    return {
        "turns": len(part.turns),
        "prev_entity_films": total,
        "found": found,
        "recall": round(found / total, 4) if total else 0.0,
        "linked": linked,
        "precision": round(found / linked, 4) if linked else 0.0,
    }


def _buckets(data: RedialData, part: Part, states: list[TurnState]) -> dict[str, np.ndarray]:
    legal = set(data.item_ids)
    none = np.array(
        [not any(i in legal for i in data.turns[s.turn].prev_entity) for s in part.samples]
    )
    attrs = np.array(  # genres, moods, people or an era read from the user's words
        [states[s.turn].query.has_attributes() or bool(states[s.turn].query.moods)
         for s in part.samples]
    )  # fmt: skip
    return {"no film mentioned yet": none, ">= 1 film mentioned": ~none,
            "request has attribute words": attrs}  # fmt: skip


def run_redial_eval(
    data_dir: str | Path,
    *,
    out: str | Path | None = None,
    val_share: float = 0.2,
    store_dir: str | Path | None = None,
    state_fn: StateFn | None = None,
    encoder: Any | None = None,
    seeds: str = "mentioned",
    seed: int = 0,
    n_boot: int = BOOTSTRAP,
    llm_model: str | None = None,
    llm: Any | None = None,
    n_llm: int = 800,
    n_llm_val: int = 200,
    llm_top_n: int = 20,
    llm_max_seconds: float | None = None,
    llm_kwargs: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Every retriever row on the reported dialogues, weights tuned on the validation ones.

    Args:
        data_dir: a ReDial-format directory (test.jsonl, entity2id.json, item_ids.json).
        out: JSON report path (a `.md` table is written beside it); None = no files.
        val_share: share of dialogues (first in file order) used for validation.
        store_dir: Chroma folder for the catalogue; default `<home>/redial/<dir name>`.
        state_fn: turn -> what the system understood; default the chat's conversation state.
        encoder: text encoder; default the packaged MiniLM.
        seeds: which films of the state seed CF/content (see `query_from_state`).
        seed: bootstrap and subsample seed.
        n_boot: dialogue resamples for the intervals.
        llm_model: LLM for the "LLM only" and "fused" rows (None = no LLM rows unless `llm`).
        llm: an already loaded LLM (tests pass a tiny one).
        n_llm, n_llm_val: seeded subsample sizes (reported, validation) the LLM scores.
        llm_top_n: hybrid candidates the LLM re-ranks per sample.
        llm_max_seconds: stop scoring new prompts after this long (cached ones still count).
        llm_kwargs: extra `load_llm` arguments (threads, dtype, device).
        cache_dir: request-vector and LLM-score caches; default `<home>/redial/cache`.

    Returns:
        The report dict.
    """
    t0 = time.perf_counter()
    data = load_redial(data_dir)
    if encoder is None:
        from retrieval.encoders import create_encoder

        encoder = create_encoder("minilm")
    home = default_home() / "redial"
    store = Path(store_dir) if store_dir else home / f"{data.name}-store"
    val_dialogs, rep_dialogs = _split(data, val_share)
    if not val_dialogs or not rep_dialogs:
        raise ValueError(
            f"{len(data.dialog_ids())} dialogue(s) cannot be split into validation and reported "
            f"parts with val_share={val_share}"
        )
    films = _dialogue_films(data, val_dialogs)
    prior = _validation_prior(films)
    config = ConversationConfig()
    config = ConversationConfig(weights=dict(config.weights) | {"ease": 1.0})  # fit EASE too
    retriever, store_info = build_retriever(
        data, store_dir=store, encoder=encoder, prior=prior, config=config
    )
    if state_fn is None:
        state_fn, state_name = chat_state(data.items, popularity=data.popularity, seeds=seeds)
    else:
        state_name = getattr(state_fn, "__name__", "custom")
    t_state = time.perf_counter()
    states = [state_fn(turn) for turn in data.turns]
    state_seconds = time.perf_counter() - t_state
    logger.info(
        "conversation state of %d turns in %.0f s (%s)", len(states), state_seconds, state_name
    )
    pos = {i: k for k, i in enumerate(retriever.item_ids)}
    parts = {
        "validation": _part(data, val_dialogs, states, pos),
        "reported": _part(data, rep_dialogs, states, pos),
    }
    queries_all = [s.query for s in states]
    cache = Path(cache_dir) if cache_dir else home / "cache"
    qvecs_all = _request_vectors(retriever, queries_all, cache)
    scorers = {
        name: SourceScores(
            retriever,
            [queries_all[t] for t in p.turns],
            None if qvecs_all is None else qvecs_all[p.turns],
            prior_rows=None
            if name == "reported"
            else _leave_own_out(retriever, films, [data.turns[t].dialog_id for t in p.turns]),
        )
        for name, p in parts.items()
    }
    logger.info("sources scored: %d validation, %d reported turns", len(parts["validation"].turns),
                len(parts["reported"].turns))  # fmt: skip
    val, rep = parts["validation"], parts["reported"]
    sv, sr = scorers["validation"], scorers["reported"]
    tb = {"popularity": TIEBREAK}
    rows: dict[str, dict[str, float]] = {"popularity": {"popularity": 1.0}}
    cf, _ = tune_weights(sv, val, ("itemknn", "ease"))
    rows["CF from the mentioned films"] = cf | tb
    content, _ = tune_weights(sv, val, ("content", "query"))
    rows["content (request + mentioned films' text)"] = content | tb
    hybrid_sources = ("itemknn", "ease", "content", "query", "attributes", "popularity")
    hybrid, _ = tune_weights(sv, val, hybrid_sources, start=config.weights)
    rows["hybrid retriever (no in-domain prior)"] = hybrid
    with_prior, _ = tune_weights(sv, val, (*hybrid_sources, "prior"), start=hybrid | {"prior": 1.0})
    rows["hybrid retriever + validation-dialogue prior"] = with_prior

    boot_rep = bootstrap_weights(rep.groups, n=n_boot, seed=seed)
    buckets = _buckets(data, rep, states)
    report_rows: dict[str, Any] = {}
    ranks_rep: dict[str, np.ndarray] = {}
    for name, weights in rows.items():
        r_val = _ranks(sv, val, weights)
        r_rep = _ranks(sr, rep, weights)
        ranks_rep[name] = r_rep
        entry = summarize(r_rep, boot_rep)
        entry["validation"] = {
            k: round(v, 4) for k, v in metrics_from_ranks(r_val, ks=KS).items() if k in REPORTED
        }
        entry["weights"] = {k: v for k, v in weights.items() if v}
        entry["buckets"] = {}
        for b, mask in buckets.items():
            if mask.any():
                sub = bootstrap_weights(
                    [g for g, m in zip(rep.groups, mask, strict=True) if m], n=n_boot, seed=seed
                )
                entry["buckets"][b] = summarize(r_rep[mask], sub)
        report_rows[name] = entry
    names = list(rows)
    hyb, hyp = names[3], names[4]
    comparisons = {
        f"{hyb} - {names[2]}": paired(ranks_rep[hyb], ranks_rep[names[2]], boot_rep),
        f"{hyb} - {names[1]}": paired(ranks_rep[hyb], ranks_rep[names[1]], boot_rep),
        f"{hyp} - {hyb}": paired(ranks_rep[hyp], ranks_rep[hyb], boot_rep),
    }
    llm_report = None
    if llm_model or llm is not None:
        from evaluation.redial_llm import llm_section

        llm_report = llm_section(
            data=data, states=states, parts=parts, scorers=scorers,
            weights=rows[hyp], boot_seed=seed, n_boot=n_boot, model=llm_model, llm=llm,
            n_rep=n_llm, n_val=n_llm_val, top_n=llm_top_n, max_seconds=llm_max_seconds,
            llm_kwargs=llm_kwargs, cache_dir=cache, buckets=buckets,
        )  # fmt: skip
        report_rows.update(llm_report.pop("rows"))
        comparisons.update(llm_report.pop("comparisons"))
    report: dict[str, Any] = {
        "dataset": data.name,
        "protocol": "ReDial recommendation condition (He et al., CIKM'23): one sample per "
        "(turn, target) with the target not in prev_entity; all legal films ranked with "
        "prev_entity (and the system's own exclusions) removed; ties count against the system",
        "split": {
            "by": "dialog_id, file order",
            "validation_dialogues": len(val_dialogs),
            "reported_dialogues": len(rep_dialogs),
            "validation_samples": len(val.samples),
            "reported_samples": len(rep.samples),
        },
        "catalogue": data.stats,
        "state": state_name,
        "state_seconds": round(state_seconds, 1),
        "linking": {
            "validation": _linking(data, val, states),
            "reported": _linking(data, rep, states),
        },
        "in_domain": {
            "weights": "every row's merge weights chosen on the validation dialogues only",
            "prior": f"'prior' = log(1 + number of validation dialogues mentioning or "
            f"recommending the film) for {len(prior)} films; used only in the row that names it "
            "(while tuning, each validation turn's own dialogue is left out of it)",
        },
        "rows": report_rows,
        "comparisons": comparisons,
        "bucket_sizes": {b: int(m.sum()) for b, m in buckets.items()},
        "published": PUBLISHED,
        "llm": llm_report,
        "store": store_info,
        "seconds": round(time.perf_counter() - t0, 1),
        "command": f"fusionrec eval --dataset redial --data {data_dir} --out {out}"
        + (f" --protocol rerank --model {llm_model} --users {n_llm} --val-users {n_llm_val} "
           f"--candidates {llm_top_n}" if llm_model else "")
        + (f" --max-seconds {llm_max_seconds:g}" if llm_model and llm_max_seconds else ""),
    }  # fmt: skip
    if out is not None:
        write_report(report, out)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m evaluation.redial DIR --out docs/redial.json`."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="ReDial-format directory")
    p.add_argument("--out", default="docs/redial.json")
    p.add_argument("--store", default=None, help="Chroma folder for the catalogue")
    p.add_argument("--val-share", type=float, default=0.2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run_redial_eval(
        args.data, out=args.out, store_dir=args.store, val_share=args.val_share
    )
    print(to_markdown(report))  # noqa: T201 - the command's output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
