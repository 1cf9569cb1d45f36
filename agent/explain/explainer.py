"""Explanations: the LLM writes from the evidence, a faithfulness check guards, a template backs up.

`Explainer.explain(evidence)` renders `prompts/explain.txt` (evidence lines from
`prompts/explain_facts.txt`), asks the LLM for 1-3 sentences, checks them with
`agent.explain.faithfulness.check_faithfulness`, and falls back to the deterministic template of
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

from agent.explain.evidence import MIN_MODALITY_SHARE
from agent.explain.faithfulness import (
    FaithfulnessResult,
    TitleIndex,
    check_faithfulness,
    names_a_reason,
    title_forms,
)
from agent.explain.render import ITEM_TAG, MAX_SENTENCES, EvidenceRenderer, plain
from agent.prompting import load_prompt
from agent.records import Evidence, Explanation
from retrieval.catalogue import Item

logger = logging.getLogger(__name__)

__all__ = ["Explainer", "TextGenerator"]

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"\u201d')]*\s+(?=[\"\u201c(]?[A-Z0-9#])")
_PREAMBLE = re.compile(r"^\s*(?:explanation|answer|response|sentences?)\s*:\s*", re.I)


class TextGenerator(Protocol):
    """What the explainer needs from an LLM (`agent.llm.LLM` satisfies it)."""

    def generate(self, prompt: str, *, max_new_tokens: int = ...) -> str: ...


def _clean(text: str) -> str:
    text = _PREAMBLE.sub("", ITEM_TAG.sub("", text))
    return " ".join(text.replace("**", "").split())


def split_sentences(text: str, evidence: Evidence | None = None) -> list[str]:
    """Sentences of `text` (a trailing fragment without end punctuation is kept last).

    Evidence titles are protected first, so "L.A. Confidential" or "Mars Attacks!" do not
    end a sentence.
    """
    originals: list[str] = []
    if evidence is not None:
        titles = {
            evidence.title,
            *(lk.title for lk in evidence.history),
            *(t for _, t, _ in evidence.co_liked),
        }
        forms = sorted({f for t in titles for f in title_forms(t)}, key=len, reverse=True)
        if forms:
            pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, forms)) + r")(?!\w)", re.I)

            def protect(m: re.Match[str]) -> str:
                originals.append(m.group(0))
                return f"QQTITLE{len(originals) - 1}QQ"

            text = pattern.sub(protect, text)
    out = [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]
    if not originals:
        return out
    return [re.sub(r"QQTITLE(\d+)QQ", lambda m: originals[int(m.group(1))], s) for s in out]


def _finished(sentence: str) -> bool:
    return sentence.rstrip("\"'\u201d)").endswith((".", "!", "?"))


class Explainer:
    """Turns `Evidence` into a short, checked explanation.

    Args:
        llm: an object with `generate(prompt, *, max_new_tokens, [system])` (and optionally
            `stream(...)`), a plain `Callable[[str], str]`, or None for template-only.
        items: the catalogue by id: titles and the tag vocabulary for the faithfulness check.
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
        self.renderer = EvidenceRenderer(min_share=min_share, prompts_folder=prompts_folder)
        self._titles = TitleIndex({i: it.title for i, it in self.items.items()})
        self._vocabulary = sorted({t for it in self.items.values() for t in it.tags})

    # ---- rendering -------------------------------------------------------------------------
    def render_evidence(self, ev: Evidence) -> str:
        """The evidence lines the LLM sees; also the only source of citable numbers."""
        return self.renderer.render_evidence(ev)

    def template(self, ev: Evidence) -> str:
        """The deterministic explanation built from `ev` alone (always passes the check)."""
        return self.renderer.template(ev)

    def render_prompt(self, ev: Evidence) -> str:
        """The user prompt for `ev`: the title quoted as data, no description (not evidence)."""
        return self._prompt.render(
            item=f'"{plain(ev.title)}"',
            status="recommended to you" if ev.rank else "not recommended to you",
            evidence=self.renderer.render_evidence(ev, status=False),
        )

    def check(self, text: str, ev: Evidence, *, rendered: str | None = None) -> FaithfulnessResult:
        """Run the faithfulness check of `text` against `ev` (and its rendered lines)."""
        return check_faithfulness(
            text,
            ev,
            rendered=rendered if rendered is not None else self.render_evidence(ev),
            titles=self._titles,
            vocabulary=self._vocabulary,
            min_share=self.min_share,
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
            text = ""
        return Explanation(
            text=text, evidence=ev, path="template", rejected=rejected, reason=reason
        )

    # ---- public API ------------------------------------------------------------------------
    def explain(self, evidence: Evidence) -> Explanation:
        """Explain one item: checked LLM text, else the template. Never raises."""
        gen = self.stream(evidence, streaming=False)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    def stream(
        self, evidence: Evidence, *, streaming: bool = True
    ) -> Generator[str, None, Explanation]:
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
                sentences = split_sentences(_clean(raw), evidence)
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
        if (
            reason is None and not stop and len(shown) < MAX_SENTENCES
        ):  # the last (possibly unfinished) sentence
            rest = split_sentences(_clean(raw), evidence)[len(shown) : MAX_SENTENCES]
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
        if reason is None and not names_a_reason(" ".join(shown), evidence):
            reason = "names no reason from the evidence (no liked title, tag or request)"
        logger.debug(
            "LLM explanation for %s in %.2fs", evidence.item_id, time.perf_counter() - start
        )
        if reason is not None:
            malformed = reason in ("empty LLM output", "unfinished sentence")
            logger.log(
                logging.WARNING if malformed else logging.INFO,
                "explanation for %s falls back to the template: %s",
                evidence.item_id,
                reason,
            )
            exp = self._fallback(evidence, _clean(raw) or None, reason)
            yield exp.text
            return exp
        return Explanation(text=" ".join(shown), evidence=evidence, path="llm")

    def explain_many(self, evidences: Iterable[Evidence]) -> list[Explanation]:
        """`explain` for each evidence record, in order."""
        return [self.explain(ev) for ev in evidences]
