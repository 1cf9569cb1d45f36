"""Evidence as text: the fact lines the LLM sees and the deterministic template explanation.

Both are filled from `prompts/explain_facts.txt` and `prompts/explain_template.txt` (one
`key: text` phrase per line), so no user-facing wording lives in Python. Numbers are printed
the same way in both, which is what lets the faithfulness check accept the template's numbers.
"""

from __future__ import annotations

import re
from typing import Any

from agent.explain.evidence import MIN_MODALITY_SHARE, supported_modalities
from agent.prompting import load_prompt
from agent.records import Evidence, HistoryLink
from retrieval.config import RATING_SCALE

__all__ = ["ITEM_TAG", "EvidenceRenderer", "plain"]

MAX_SENTENCES = 3  # explanations are 1-3 sentences
MAX_HISTORY_LINES = 3  # positive history items shown to the LLM (strongest first)
MAX_BRIEF_HISTORY = 2  # history items in the LLM's brief view of the evidence
# Labels too broad to say what was seen or heard; a template naming one label picks another.
GENERIC_LABELS = frozenset({"Music", "Speech", "Silence", "Sound effect", "Inside, small room"})
MAX_LABELS = 3  # encoder labels per modality shown (best first); ingest keeps up to 5
# a label the encoder gave less than this is a guess: shown to the LLM or cited by the template
# it misleads ("a bat's picture shows an assault rifle (0.08)"). The check still accepts it
# when quoted, since the encoder did report it.
MIN_LABEL_PROB = 0.2


def _sure_labels(ev: Evidence, modality: str) -> list[str]:
    """The modality's labels worth citing: probability >= MIN_LABEL_PROB, or unknown."""
    scores = ev.label_scores.get(modality, {})
    return [lb for lb in ev.labels.get(modality, []) if scores.get(lb, 1.0) >= MIN_LABEL_PROB]


def _phrases(name: str, folder: Any = None) -> dict[str, str]:
    """`key: text` lines of a checked template file in prompts/."""
    out: dict[str, str] = {}
    for line in load_prompt(name, folder=folder).template.splitlines():
        key, sep, text = line.partition(":")
        if sep and key.strip().isidentifier():
            out[key.strip()] = text.strip()
    return out


ITEM_TAG = re.compile(r"</?item>", re.I)


def plain(text: str) -> str:
    """Catalogue or chat text as the fact lines quote it: one line, no `"` to close its quote."""
    return " ".join(ITEM_TAG.sub("", text).replace('"', "'").split())


def _num(x: float) -> str:
    """Scores and cosines as the evidence prints them (two decimals)."""
    return f"{x:.2f}"


def _rating(x: float) -> str:
    return f"{x:g}"


LIKED_MIN_RATING = RATING_SCALE.like_min  # rated below this: never cited as a reason to like


def _citable(link: HistoryLink) -> bool:
    """A positive link from an item the user liked (or gave no rating)."""
    return link.contribution > 0 and (link.rating is None or link.rating >= LIKED_MIN_RATING)


class EvidenceRenderer:
    """Renders `Evidence` as fact lines and as the template explanation.

    Args:
        min_share: share of the content score a modality needs before it may be credited.
        prompts_folder: where the phrase files live (None = the packaged prompts/).
    """

    def __init__(
        self, *, min_share: float = MIN_MODALITY_SHARE, prompts_folder: Any = None
    ) -> None:
        self.min_share = min_share
        self._facts = _phrases("explain_facts", prompts_folder)
        self._tpl = _phrases("explain_template", prompts_folder)
        self._examples = _phrases("explain_examples", prompts_folder)

    def _modality(self, m: str) -> str:
        return self._facts.get(f"modality_{m}", m)

    def _lead_links(self, ev: Evidence) -> list[HistoryLink]:
        """Strongest positive link per liked history item (distinct items, best first).

        An item the user rated low may still pull a profile its way, but citing it as a
        reason ("because you rated it 2") reads as nonsense, so only liked items lead.
        """
        seen: set[str] = set()
        out: list[HistoryLink] = []
        for link in ev.history:  # sorted by |contribution|
            if _citable(link) and link.item_id not in seen and link.item_id != ev.item_id:
                seen.add(link.item_id)
                out.append(link)
        return out

    @staticmethod
    def _best_link(ev: Evidence, modality: str) -> HistoryLink | None:
        """The history item that pulls `ev` up most in `modality`, if any does."""
        return next(
            (
                lk
                for lk in ev.history
                if lk.modality == modality and _citable(lk) and lk.item_id != ev.item_id
            ),
            None,
        )

    def _negative_links(self, ev: Evidence) -> list[HistoryLink]:
        seen: set[str] = set()
        out: list[HistoryLink] = []
        for link in ev.history:
            if link.contribution < 0 and link.item_id not in seen and link.item_id != ev.item_id:
                seen.add(link.item_id)
                out.append(link)
        return out

    def style_example(self, ev: Evidence) -> str:
        """Two example sentences shaped like the strongest evidence at hand (history, else the
        request), then what the encoders saw or a co-like: the model copies the example's
        shape, so it must be one the facts can fill (prompts/explain_examples.txt)."""
        x = self._examples
        leads = self._lead_links(ev)
        if leads:
            first = x["rated"] if leads[0].rating is not None else x["liked"]
        elif ev.request:
            first = x["request"]
        else:
            first = x["rated"]
        second = ""
        if any(n >= 2 for _, _, n in ev.co_liked[:1]):
            second = x["co_liked"]
        else:
            seen = next((m for m in ("image", "audio") if _sure_labels(ev, m)), None)
            second = x[f"seen_{seen}"] if seen else ""
        return f"{first} {second}".strip()

    def render_evidence(self, ev: Evidence, *, status: bool = True, brief: bool = False) -> str:
        """The evidence lines: the only source of citable numbers.

        The LLM sees the `brief` view: no status line (a small model given "recommended at
        position #4" copies that and explains nothing), no score totals, the two strongest
        history items and the strongest co-like only: a shorter prompt is read faster, and a
        small model given fewer lines copies the reasons instead of the bookkeeping. Every
        number it may cite is still in the full view the check reads.
        """
        f = self._facts
        lines: list[str] = []
        leads = self._lead_links(ev)[: MAX_BRIEF_HISTORY if brief else MAX_HISTORY_LINES]
        for link in leads + self._negative_links(ev)[:1]:
            mod, cos = self._modality(link.modality), _num(link.cosine)
            if link.contribution < 0 and link.cosine < 0:
                lines.append(
                    f["unlike_liked"].format(title=plain(link.title), modality=mod, cosine=cos)
                )
            elif link.contribution < 0:
                key = "similar_disliked_rated" if link.rating is not None else "similar_disliked"
                lines.append(
                    f[key].format(
                        title=plain(link.title),
                        modality=mod,
                        cosine=cos,
                        rating=_rating(link.rating or 0),
                    )
                )
            elif link.rating is not None:
                lines.append(
                    f["brief_similar_rated" if brief else "similar_rated"].format(
                        title=plain(link.title),
                        rating=_rating(link.rating),
                        modality=mod,
                        cosine=cos,
                    )
                )
            else:
                lines.append(
                    f["brief_similar_liked" if brief else "similar_liked"].format(
                        title=plain(link.title), modality=mod, cosine=cos
                    )
                )
        if ev.history and not brief:
            lines.append(f["content"].format(score=_num(ev.content_score)))
            if len(ev.modality_scores) > 1:
                for m, s in ev.modality_scores.items():
                    lines.append(f["modality"].format(modality=self._modality(m), score=_num(s)))
        for m in sorted(supported_modalities(ev, min_share=self.min_share) - {"text"}):
            link = self._best_link(ev, m)
            if link is not None:
                lines.append(
                    f["media_link"].format(modality=self._modality(m), title=plain(link.title))
                )
        for _, title, n in ev.co_liked[:1] if brief else ev.co_liked:
            lines.append(
                f["co_liked_one" if n == 1 else "co_liked"].format(count=n, title=plain(title))
            )
        if not ev.co_liked and not brief:
            lines.append(f["no_co_liked"])
        if ev.matched_tags:
            lines.append(f["matched_tags"].format(tags=plain(", ".join(ev.matched_tags))))
        labels = {lb for names in ev.labels.values() for lb in names}
        tags = [t for t in ev.item_tags if t not in labels] if brief else ev.item_tags
        if tags:
            lines.append(f["item_tags"].format(tags=plain(", ".join(tags))))
        for m in ev.labels:
            if _sure_labels(ev, m):
                lines.append(self._seen(ev, m, f, f"labels_{m}"))
        if ev.disliked_tags:
            lines.append(f["disliked_tags"].format(tags=plain(", ".join(ev.disliked_tags))))
        if ev.request:
            score = _num(ev.request_score) if ev.request_score is not None else "unknown"
            lines.append(f["request"].format(request=plain(ev.request), score=score))
        if ev.retriever_score is not None and not brief:
            lines.append(f["retriever"].format(score=_num(ev.retriever_score)))
        if ev.llm_score is not None and not brief:
            lines.append(f["llm"].format(score=_num(ev.llm_score)))
        if status and not brief:
            lines.insert(
                0, f["recommended"].format(rank=ev.rank) if ev.rank else f["not_recommended"]
            )
        return "\n".join(lines)

    def _seen(
        self,
        ev: Evidence,
        modality: str,
        phrases: dict[str, str],
        key: str,
        limit: int = MAX_LABELS,
    ) -> str:
        """What an encoder saw or heard in the item: its labels, each as one quoted piece
        (ImageNet/AudioSet labels hold commas: "Beep, bleep") with its probability."""
        scores = ev.label_scores.get(modality, {})
        labels = _sure_labels(ev, modality)
        if limit < len(labels):  # fewer than all: the specific ones first ("Piano" > "Music")
            labels = sorted(labels, key=lambda lb: lb in GENERIC_LABELS)
        shown = []
        for label in labels[:limit]:
            key_label = "label_scored" if label in scores else "label"
            shown.append(
                self._facts[key_label].format(label=plain(label), score=_num(scores.get(label, 0)))
            )
        joiner = f" {self._tpl.get('joiner', 'and')} " if len(shown) == 2 else ", "
        return phrases[key].format(labels=joiner.join(shown))

    def template(self, ev: Evidence) -> str:
        """The deterministic explanation built from `ev` alone (always passes the check)."""
        t = self._tpl
        supported = supported_modalities(ev, min_share=self.min_share)
        leads = self._lead_links(ev)
        join = f" {t.get('joiner', 'and')} "
        sentences: list[str] = []
        if not ev.rank:
            sentences.append(t["not_lead"].format(title=ev.title))
            neg = self._negative_links(ev)
            if ev.disliked_tags:
                sentences.append(
                    t["not_disliked_tags"].format(tags=join.join(ev.disliked_tags[:2]))
                )
            elif neg and neg[0].cosine >= 0:
                key = (
                    "not_disliked_item"
                    if neg[0].rating is not None
                    else "not_disliked_item_unrated"
                )
                sentences.append(
                    t[key].format(title=neg[0].title, rating=_rating(neg[0].rating or 0))
                )
            elif ev.history:
                sentences.append(t["not_content"].format(score=_num(ev.content_score)))
            else:
                sentences.append(t["not_no_history"])
            if ev.request and ev.request_score is not None:
                sentences.append(
                    t["not_request"].format(request=ev.request, score=_num(ev.request_score))
                )
            elif not ev.co_liked:
                sentences.append(t["not_co_liked"])
            return " ".join(sentences[:MAX_SENTENCES])
        if leads:
            a = leads[0]
            b = next((lk for lk in leads[1:] if lk.title != a.title), None)
            if a.rating is not None:
                sentences.append(t["lead_rated"].format(title=a.title, rating=_rating(a.rating)))
            elif b is not None:
                sentences.append(t["lead_two"].format(title=a.title, title2=b.title))
            else:
                sentences.append(t["lead_liked"].format(title=a.title))
        elif ev.request and ev.request_score is not None:
            sentences.append(
                t["lead_request"].format(request=ev.request, score=_num(ev.request_score))
            )
        elif ev.retriever_score is not None:
            sentences.append(t["lead_scores"].format(score=_num(ev.retriever_score)))
        else:
            sentences.append(t["lead_popular"])
        extras: list[str] = []
        if ev.request and ev.request_score is not None and leads:
            extras.append(t["request"].format(request=ev.request, score=_num(ev.request_score)))
        seen_in = [m for m in ev.labels if _sure_labels(ev, m)]
        seen = [self._seen(ev, m, t, f"seen_{m}", limit=1) for m in seen_in]  # in the item itself
        n_before = len(extras)
        heard_matched = False
        for m in ("image", "audio"):
            link = self._best_link(ev, m)
            if m not in supported or link is None:
                continue
            label = next((lb for lb in ev.labels.get("audio", []) if lb in ev.matched_tags), None)
            if m == "audio" and label:
                heard_matched = True
                extras.append(t["audio_label"].format(label=label))
            else:
                extras.append(t[m].format(title=link.title))
        if heard_matched:  # "its sound is tagged X, like items you liked" says it already
            seen = [s for s, m in zip(seen, seen_in, strict=True) if m != "audio"]
        extras[n_before:n_before] = seen
        if ev.co_liked:
            _, title, n = ev.co_liked[0]
            extras.append(t["co_liked_one" if n == 1 else "co_liked"].format(count=n, title=title))
        genre_tags = [g for g in ev.matched_tags if not any(g in lb for lb in ev.labels.values())]
        if genre_tags:
            extras.append(t["tags"].format(tags=join.join(genre_tags[:2])))
        return " ".join((sentences + extras)[:MAX_SENTENCES])

    # ---- checking --------------------------------------------------------------------------
