"""Explanations: the LLM writes from the evidence, a faithfulness check guards, a template backs up.

`Explainer.explain(evidence)` renders `prompts/explain.txt` (evidence lines from
`prompts/explain_facts.txt`), asks the LLM for 1-3 sentences, checks them with
`agent.faithfulness.check_faithfulness`, and falls back to the deterministic template of
`prompts/explain_template.txt` when the LLM is missing, fails, or writes anything the
evidence does not hold. `Explanation.path` says which text the user got. Nothing here raises
into the UI: LLM errors and malformed output are logged as warnings.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, Protocol

from agent.evidence import MIN_MODALITY_SHARE, supported_modalities
from agent.faithfulness import FaithfulnessResult, TitleIndex, check_faithfulness
from agent.prompting import load_prompt
from agent.records import Evidence, Explanation, HistoryLink
from retrieval.catalogue import Item

logger = logging.getLogger(__name__)

__all__ = ["Explainer", "TextGenerator"]

MAX_SENTENCES = 3  # explanations are 1-3 sentences; extra LLM sentences are dropped
MAX_DESCRIPTION_CHARS = 300  # description context shown to the LLM
MAX_HISTORY_LINES = 3  # positive history items shown to the LLM (strongest first)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"\u201d')]*\s+(?=[\"\u201c(]?[A-Z0-9#])")
_TAG = re.compile(r"</?item>", re.I)
_PREAMBLE = re.compile(r"^\s*(?:explanation|answer|response|sentences?)\s*:\s*", re.I)


class TextGenerator(Protocol):
    """What the explainer needs from an LLM (`agent.llm.LLM` satisfies it)."""

    def generate(self, prompt: str, *, max_new_tokens: int = ...) -> str: ...


def _phrases(name: str, folder: Any = None) -> dict[str, str]:
    """`key: text` lines of a checked template file in prompts/."""
    out: dict[str, str] = {}
    for line in load_prompt(name, folder=folder).template.splitlines():
        key, sep, text = line.partition(":")
        if sep and key.strip().isidentifier():
            out[key.strip()] = text.strip()
    return out


def _num(x: float) -> str:
    """Scores and cosines as the evidence prints them (two decimals)."""
    return f"{x:.2f}"


def _rating(x: float) -> str:
    return f"{x:g}"


def _clean(text: str) -> str:
    text = _PREAMBLE.sub("", _TAG.sub("", text))
    return " ".join(text.replace("**", "").split())


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (a trailing fragment without end punctuation is kept last)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _finished(sentence: str) -> bool:
    return sentence.rstrip("\"'\u201d)").endswith((".", "!", "?"))


class Explainer:
    """Turns `Evidence` into a short, checked explanation.

    Args:
        llm: an object with `generate(prompt, *, max_new_tokens, [system])` (and optionally
            `stream(...)`), a plain `Callable[[str], str]`, or None for template-only.
        items: the catalogue by id: titles for the faithfulness check, tag vocabulary,
            descriptions for the prompt.
        max_new_tokens: cap on generated tokens per explanation.
        min_share: share of the content score a modality needs before it may be credited.
        prompts_folder: where the templates live (None = the packaged prompts/).
    """

    def __init__(
        self,
        llm: TextGenerator | Callable[[str], str] | None = None,
        *,
        items: Mapping[str, Item] | None = None,
        max_new_tokens: int = 64,
        min_share: float = MIN_MODALITY_SHARE,
        prompts_folder: Any = None,
    ) -> None:
        self.llm = llm
        self.items = dict(items or {})
        self.max_new_tokens = max_new_tokens
        self.min_share = min_share
        self._prompt = load_prompt("explain", folder=prompts_folder)
        self._system = load_prompt("system", folder=prompts_folder).template
        self._facts = _phrases("explain_facts", prompts_folder)
        self._tpl = _phrases("explain_template", prompts_folder)
        self._titles = TitleIndex({i: it.title for i, it in self.items.items()})
        self._vocabulary = sorted({t for it in self.items.values() for t in it.tags})

    # ---- rendering -------------------------------------------------------------------------
    def _modality(self, m: str) -> str:
        return self._facts.get(f"modality_{m}", m)

    def _lead_links(self, ev: Evidence) -> list[HistoryLink]:
        """Strongest positive link per history item (distinct items, best first)."""
        seen: set[str] = set()
        out: list[HistoryLink] = []
        for link in ev.history:  # sorted by |contribution|
            if link.contribution > 0 and link.item_id not in seen and link.item_id != ev.item_id:
                seen.add(link.item_id)
                out.append(link)
        return out

    @staticmethod
    def _best_link(ev: Evidence, modality: str) -> HistoryLink | None:
        """The history item that pulls `ev` up most in `modality`, if any does."""
        return next((lk for lk in ev.history if lk.modality == modality and lk.contribution > 0
                     and lk.item_id != ev.item_id), None)

    def _negative_links(self, ev: Evidence) -> list[HistoryLink]:
        seen: set[str] = set()
        out: list[HistoryLink] = []
        for link in ev.history:
            if link.contribution < 0 and link.item_id not in seen and link.item_id != ev.item_id:
                seen.add(link.item_id)
                out.append(link)
        return out

    def render_evidence(self, ev: Evidence) -> str:
        """The evidence lines the LLM sees; also the only source of citable numbers."""
        f = self._facts
        lines = [f["recommended"].format(rank=ev.rank) if ev.rank else f["not_recommended"]]
        for link in self._lead_links(ev)[:MAX_HISTORY_LINES] + self._negative_links(ev)[:1]:
            mod, cos = self._modality(link.modality), _num(link.cosine)
            if link.contribution < 0 and link.cosine < 0:
                lines.append(f["unlike_liked"].format(title=link.title, modality=mod, cosine=cos))
            elif link.contribution < 0:
                key = "similar_disliked_rated" if link.rating is not None else "similar_disliked"
                lines.append(f[key].format(title=link.title, modality=mod, cosine=cos,
                                           rating=_rating(link.rating or 0)))
            elif link.rating is not None:
                lines.append(f["similar_rated"].format(title=link.title, rating=_rating(link.rating),
                                                       modality=mod, cosine=cos))
            else:
                lines.append(f["similar_liked"].format(title=link.title, modality=mod, cosine=cos))
        if ev.history:
            lines.append(f["content"].format(score=_num(ev.content_score)))
            if len(ev.modality_scores) > 1:
                for m, s in ev.modality_scores.items():
                    lines.append(f["modality"].format(modality=self._modality(m), score=_num(s)))
        for m in sorted(supported_modalities(ev, min_share=self.min_share) - {"text"}):
            link = self._best_link(ev, m)
            if link is not None:
                lines.append(f["media_link"].format(modality=self._modality(m), title=link.title))
        for _, title, n in ev.co_liked:
            lines.append(f["co_liked_one" if n == 1 else "co_liked"].format(count=n, title=title))
        if not ev.co_liked:
            lines.append(f["no_co_liked"])
        if ev.matched_tags:
            lines.append(f["matched_tags"].format(tags=", ".join(ev.matched_tags)))
        if ev.item_tags:
            lines.append(f["item_tags"].format(tags=", ".join(ev.item_tags)))
        for m, labels in ev.labels.items():
            lines.append(f["labels"].format(modality=self._modality(m), labels=", ".join(labels)))
        if ev.disliked_tags:
            lines.append(f["disliked_tags"].format(tags=", ".join(ev.disliked_tags)))
        if ev.request:
            score = _num(ev.request_score) if ev.request_score is not None else "unknown"
            lines.append(f["request"].format(request=ev.request, score=score))
        if ev.retriever_score is not None:
            lines.append(f["retriever"].format(score=_num(ev.retriever_score)))
        if ev.llm_score is not None:
            lines.append(f["llm"].format(score=_num(ev.llm_score)))
        return "\n".join(lines)

    def render_prompt(self, ev: Evidence) -> str:
        """The full user prompt for `ev` (item text escaped and quoted as data)."""
        item = self.items.get(ev.item_id)
        desc = item.description if item is not None else ""
        if len(desc) > MAX_DESCRIPTION_CHARS:
            desc = desc[:MAX_DESCRIPTION_CHARS].rsplit(" ", 1)[0] + " ..."
        esc = lambda s: _TAG.sub("", s)  # noqa: E731 - quoted data must not close its own tag
        return self._prompt.render(
            item=f"<item>{esc(ev.title)}</item>",
            status="recommended to this user" if ev.rank else "not recommended to this user",
            evidence=self.render_evidence(ev),
            description=f"<item>{esc(desc) or '(none)'}</item>",
        )

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
                sentences.append(t["not_disliked_tags"].format(tags=join.join(ev.disliked_tags[:2])))
            elif neg and neg[0].cosine >= 0:
                key = "not_disliked_item" if neg[0].rating is not None else "not_disliked_item_unrated"
                sentences.append(t[key].format(title=neg[0].title, rating=_rating(neg[0].rating or 0)))
            elif ev.history:
                sentences.append(t["not_content"].format(score=_num(ev.content_score)))
            else:
                sentences.append(t["not_no_history"])
            if ev.request and ev.request_score is not None:
                sentences.append(t["not_request"].format(request=ev.request, score=_num(ev.request_score)))
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
            sentences.append(t["lead_request"].format(request=ev.request, score=_num(ev.request_score)))
        elif ev.retriever_score is not None:
            sentences.append(t["lead_scores"].format(score=_num(ev.retriever_score)))
        else:
            sentences.append(t["lead_popular"])
        extras: list[str] = []
        if ev.request and ev.request_score is not None and leads:
            extras.append(t["request"].format(request=ev.request, score=_num(ev.request_score)))
        for m in ("image", "audio"):
            link = self._best_link(ev, m)
            if m not in supported or link is None:
                continue
            label = next((lb for lb in ev.labels.get("audio", []) if lb in ev.matched_tags), None)
            if m == "audio" and label:
                extras.append(t["audio_label"].format(label=label))
            else:
                extras.append(t[m].format(title=link.title))
        if ev.co_liked:
            _, title, n = ev.co_liked[0]
            extras.append(t["co_liked_one" if n == 1 else "co_liked"].format(count=n, title=title))
        genre_tags = [g for g in ev.matched_tags if not any(g in lb for lb in ev.labels.values())]
        if genre_tags:
            extras.append(t["tags"].format(tags=join.join(genre_tags[:2])))
        return " ".join((sentences + extras)[:MAX_SENTENCES])

    # ---- checking --------------------------------------------------------------------------
    def check(self, text: str, ev: Evidence, *, rendered: str | None = None) -> FaithfulnessResult:
        """Run the faithfulness check of `text` against `ev` (and its rendered lines)."""
        return check_faithfulness(
            text, ev, rendered=rendered if rendered is not None else self.render_evidence(ev),
            titles=self._titles, vocabulary=self._vocabulary, min_share=self.min_share,
        )

    # ---- LLM calls -------------------------------------------------------------------------
    def _llm_kwargs(self, fn: Callable[..., Any]) -> dict[str, Any]:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return {}
        kw: dict[str, Any] = {}
        if "max_new_tokens" in params:
            kw["max_new_tokens"] = self.max_new_tokens
        if "system" in params:
            kw["system"] = self._system
        return kw

    def _pieces(self, prompt: str, streaming: bool) -> Iterator[str]:
        llm = self.llm
        if streaming and hasattr(llm, "stream"):
            yield from llm.stream(prompt, **self._llm_kwargs(llm.stream))
        elif hasattr(llm, "generate"):
            yield llm.generate(prompt, **self._llm_kwargs(llm.generate))
        else:
            yield llm(prompt)  # type: ignore[operator]

    def _fallback(self, ev: Evidence, rejected: str | None, reason: str) -> Explanation:
        try:
            text = self.template(ev)
        except Exception as e:  # a broken template file must not reach the UI either
            logger.error("explanation template failed for item %s: %s", ev.item_id, e)
            text = self._tpl.get("lead_popular", "") if ev.rank else ""
        return Explanation(text=text, evidence=ev, path="template", rejected=rejected, reason=reason)

    # ---- public API ------------------------------------------------------------------------
    def explain(self, evidence: Evidence) -> Explanation:
        """Explain one item: checked LLM text, else the template. Never raises."""
        gen = self.stream(evidence, streaming=False)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    def stream(self, evidence: Evidence, *, streaming: bool = True) -> Generator[str, None, Explanation]:
        """Yield the explanation as it grows, one checked sentence at a time.

        Each yielded string is the whole text so far (replace, don't append). A sentence is
        shown only after it passes the faithfulness check; if one fails, the last yield is the
        template explanation instead. The generator's return value is the `Explanation`
        (`exp = yield from explainer.stream(ev)`).
        """
        if self.llm is None:
            exp = self._fallback(evidence, None, "no LLM configured")
            yield exp.text
            return exp
        raw, shown, reason, stop = "", [], None, False
        start = time.perf_counter()
        try:
            rendered = self.render_evidence(evidence)
            prompt = self.render_prompt(evidence)
            for piece in self._pieces(prompt, streaming):
                raw += piece
                sentences = split_sentences(_clean(raw))
                done = sentences[:-1]  # the last one may still be growing
                while len(shown) < min(len(done), MAX_SENTENCES):
                    sentence = done[len(shown)]
                    if sentence in shown:  # small models repeat themselves: stop there
                        stop = True
                        break
                    result = self.check(sentence, evidence, rendered=rendered)
                    if not result.ok:
                        reason = result.reason
                        break
                    shown.append(sentence)
                    yield " ".join(shown)
                if reason or stop or len(shown) >= MAX_SENTENCES:
                    break
        except Exception as e:  # the LLM stack raises many types; the UI must not see them
            logger.warning("LLM explanation failed for item %s: %s", evidence.item_id, e)
            exp = self._fallback(evidence, _clean(raw) or None, f"LLM error: {e}")
            yield exp.text
            return exp
        if reason is None and not stop and len(shown) < MAX_SENTENCES:  # the last (possibly unfinished) sentence
            rest = split_sentences(_clean(raw))[len(shown):MAX_SENTENCES]
            for sentence in rest:
                if sentence in shown:
                    break
                if not _finished(sentence):
                    if not shown:
                        reason = "unfinished sentence"
                    break
                result = self.check(sentence, evidence, rendered=rendered)
                if not result.ok:
                    reason = result.reason
                    break
                shown.append(sentence)
                yield " ".join(shown)
        if not shown and reason is None:
            reason = "empty LLM output"
        logger.debug("LLM explanation for %s in %.2fs", evidence.item_id, time.perf_counter() - start)
        if reason is not None:
            logger.info("explanation for %s falls back to the template: %s", evidence.item_id, reason)
            exp = self._fallback(evidence, _clean(raw) or None, reason)
            yield exp.text
            return exp
        return Explanation(text=" ".join(shown), evidence=evidence, path="llm")

    def explain_many(self, evidences: Iterable[Evidence]) -> list[Explanation]:
        """`explain` for each evidence record, in order."""
        return [self.explain(ev) for ev in evidences]
