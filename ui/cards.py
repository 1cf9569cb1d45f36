"""Card, result header and evidence panel text (Markdown with every catalogue string escaped)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from agent.streams import with_result

logger = logging.getLogger(__name__)

CSS = """
.fr-card {border: 1px solid var(--border-color-primary); border-radius: 10px;
          padding: 8px !important;}
.fr-card img {object-fit: cover;}
.fr-card .fr-buttons button {min-width: 0; padding: 2px 6px;}
#fr-why {border: 2px solid var(--color-accent); border-radius: 10px;}
"""  # the app's few style rules: card frames, compact buttons, a highlighted Why panel


# ---- cards and evidence ------------------------------------------------------------------------
_INERT_CHARS = re.compile(r"(?<!\\)([\[\]!<>@])")  # links, images, raw HTML, e-mail autolinks
_URL_START = re.compile(r"(?i)\b(https?|ftp):(?=//)|\b(www)\.")


def safe_markdown(text: Any) -> str:
    """Agent text (chat replies, explanations) made inert for Gradio's Markdown renderer.

    Replies are our own Markdown (lists, _emphasis_) around catalogue titles, tags and LLM
    words, which must show as text: so `[`, `]`, `!`, `<`, `>` and `@` are backslash-escaped
    (no link, image, raw HTML or e-mail autolink can form) and `http://` / `www.` lose their
    autolink shape; emphasis, lists and line breaks still render. Characters already escaped
    (the "Understood" line) are left alone.
    """
    out = _INERT_CHARS.sub(r"\\\1", str(text))
    return _URL_START.sub(lambda m: f"{m[1]}\\:" if m[1] else f"{m[2]}\\.", out)


def _md(text: Any) -> str:
    """Escape markdown control characters in catalogue text (titles can hold `*` or `_`)."""
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", str(text))


MAX_CARD_LABELS = 3  # encoder labels per modality on a card, best first (the Why panel has all)
_SENSES = {"image": "seen in the picture", "audio": "heard in the sound"}  # card wording


def encoder_labels(agent: Any, ids: list[str]) -> dict[str, dict[str, list[tuple[str, Any]]]]:
    """What the encoders saw and heard in each item, from the store's metadata.

    Returns:
        {item id: {"image"/"audio": [(label, probability or None), ...]}} (see
        `agent.explain.evidence.scored_labels`); {} when the store cannot be read, so a card
        still shows without its labels.
    """
    from agent.explain.evidence import stored_labels

    return stored_labels(agent.store, ids, purpose="the cards")


def _label_md(label: str) -> str:
    """An encoder label as inert text: Markdown escaped, no link or autolink can form."""
    return safe_markdown(_md(label))


def _short_label(label: str) -> str:
    """First name of a label ("house finch, linnet, ..." -> "house finch"): cards are narrow."""
    return label.split(",", 1)[0].strip() or label


def labels_markdown(labels: dict[str, list[tuple[str, Any]]] | None, *, limit: int) -> list[str]:
    """One escaped line per modality: what the image/audio encoder saw, with probabilities."""
    out = []
    for modality, sense in _SENSES.items():
        pairs = (labels or {}).get(modality) or []
        shown = [
            _label_md(_short_label(name)) + ("" if p is None else f" {p:.2f}")
            for name, p in pairs[:limit]
        ]
        if shown:
            out.append(f"<small>_{sense}:_ {', '.join(shown)}</small>")
    return out


def card_markdown(
    rec: Any,
    *,
    max_tags: int = 5,
    labels: dict[str, list[tuple[str, Any]]] | None = None,
    reranked: bool | None = None,
) -> str:
    """Title, tags, what the encoders saw/heard and the scores of one Recommendation.

    Args:
        labels: the item's encoder labels (`encoder_labels`), shown so a person sees what
            the system understood of the picture or sound.
        reranked: whether the LLM re-ranked the list this card is in (None: not said).
    """
    tags = ", ".join(_md(t) for t in rec.item.tags[:max_tags])
    scores = f"score {rec.score:.3f}"
    if rec.llm_score is not None:
        scores += f" · LLM {rec.llm_score:.2f}"
    if reranked is True:
        scores += " · re-ranked by the LLM"
    elif reranked is False:
        scores += " · retriever order"
    lines = [f"**#{rec.rank} {_md(rec.item.title)}**"]
    if tags:
        lines.append(f"<small>{tags}</small>")
    lines += labels_markdown(labels, limit=MAX_CARD_LABELS)
    lines.append(f"<small>{scores}</small>")
    return "\n\n".join(lines)


def result_header(result: Any | None, user_id: str) -> str:
    """Line above the cards: whose list, for what request, and whether the LLM re-ranked it."""
    if result is None or not result.items:
        return f"No recommendations yet for user **{_md(user_id)}**: ask in the chat."
    text = f"Top {len(result.items)} for user **{_md(user_id)}**"
    if result.query:
        text += f" — “{_md(result.query)}”"
    text += " · re-ranked by the LLM" if result.reranked else " · retriever order"
    if getattr(result, "understood", None):  # what the chat's conversation state read
        text += f"\n\n**Understood:** {_md(result.understood)}"
    if result.note:
        text += f"\n\n_{_md(result.note)}_"
    return text


def evidence_markdown(exp: Any, *, max_rows: int = 8) -> str:
    """The evidence behind an Explanation: history links, modalities, co-likes, tags, path."""
    ev = exp.evidence
    path = (
        "written by the LLM and checked against this evidence"
        if exp.path == "llm"
        else "deterministic template (no LLM text used)"
    )
    out = [f"**Explanation path:** {exp.path} — {path}"]
    if exp.path != "llm" and exp.reason:
        label = "LLM text rejected" if exp.rejected else "LLM not used"
        out.append(f"<small>{label}: {_md(exp.reason)}</small>")
    if ev.rank is not None:
        out.append(
            f"**Rank** #{ev.rank}"
            + (f" · retriever {ev.retriever_score:.3f}" if ev.retriever_score is not None else "")
            + (f" · LLM {ev.llm_score:.2f}" if ev.llm_score is not None else "")
        )
    if ev.history:
        rows = [
            "**Your history that drove it** (per modality; contributions sum to the content score)",
            "",
            "| history item | modality | cosine | contribution | your rating |",
            "|---|---|---:|---:|---:|",
        ]
        for link in sorted(ev.history, key=lambda h: -h.contribution)[:max_rows]:
            rating = "" if link.rating is None else f"{link.rating:g}"
            rows.append(
                f"| {_md(link.title)} | {link.modality} | {link.cosine:.3f} | "
                f"{link.contribution:+.4f} | {rating} |"
            )
        if len(ev.history) > max_rows:
            rows.append(f"| _and {len(ev.history) - max_rows} more_ | | | | |")
        out.append("\n".join(rows))
    if ev.modality_scores:
        mods = ", ".join(
            f"{m} {s:+.3f}" for m, s in sorted(ev.modality_scores.items(), key=lambda kv: -kv[1])
        )
        out.append(f"**Modality scores:** {mods} (content score {ev.content_score:+.3f})")
    if ev.co_liked:
        co = "; ".join(
            f"{_md(title)} ({n} user{'s' if n != 1 else ''})" for _, title, n in ev.co_liked[:5]
        )
        out.append(f"**Liked together with:** {co}")
    seen = _seen_markdown(ev)
    if seen:
        out.append(seen)
    if ev.matched_tags:
        out.append(f"**Matched tags:** {', '.join(_md(t) for t in ev.matched_tags)}")
    if ev.request:
        score = f" (similarity {ev.request_score:.3f})" if ev.request_score is not None else ""
        out.append(f"**Your request:** “{_md(ev.request)}”{score}")
    if ev.disliked_tags:
        out.append(f"**Tags you tend to dislike:** {', '.join(_md(t) for t in ev.disliked_tags)}")
    if not (ev.history or ev.co_liked or ev.matched_tags or ev.request):
        out.append("_No personal evidence yet (cold start): popularity or your request placed it._")
    return "\n\n".join(out)


def _seen_markdown(ev: Any) -> str:
    """The evidence's encoder labels, whole (commas and all) and quoted, with probabilities."""
    parts = []
    for modality, sense in (("image", "picture"), ("audio", "sound")):
        names = (getattr(ev, "labels", None) or {}).get(modality) or []
        scores = (getattr(ev, "label_scores", None) or {}).get(modality) or {}
        shown = [
            f"“{_label_md(n)}”" + (f" ({scores[n]:.2f})" if n in scores else "") for n in names
        ]
        if shown:
            parts.append(f"{sense}: {', '.join(shown)}")
    return f"**What the encoders saw and heard:** {'; '.join(parts)}" if parts else ""


def explain_with_evidence(
    agent: Any, user_id: str, item_id: str
) -> Iterator[tuple[str, Any | None]]:
    """Stream `(text so far, None)` from `explain_stream`, then `(final text, Explanation)`."""
    for text, exp in with_result(agent.explain_stream(user_id, item_id)):
        yield (exp.text, exp) if exp is not None else (text, None)
