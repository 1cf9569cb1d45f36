"""Explanations: the LLM writes from the evidence, a faithfulness check guards, a template backs up.

`Explainer.explain(evidence)` renders `prompts/explain.txt` (evidence lines from
`prompts/explain_facts.txt`), asks the LLM for 1-3 sentences, checks them with
`agent.explain.faithfulness.check_faithfulness`, and falls back to the deterministic template of
`prompts/explain_template.txt` when the LLM is missing, fails, or writes anything the
evidence does not hold. `Explanation.path` says which text the user got. Nothing here raises
into the UI: LLM errors and malformed output are logged as warnings.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.explain.evidence import MIN_MODALITY_SHARE
from agent.explain.faithfulness import (
    FaithfulnessResult,
    MaskedText,
    TitleIndex,
    check_faithfulness,
    mask_titles,
    names_a_reason,
)
from agent.explain.render import ITEM_TAG, MAX_SENTENCES, EvidenceRenderer, plain
from agent.llm.base import LLM
from agent.prompting import load_prompt
from agent.records import Evidence, Explanation
from agent.streams import drain
from retrieval.catalogue import Item

logger = logging.getLogger(__name__)

__all__ = ["Explainer", "salvage", "split_sentences"]

MAX_LLM_SENTENCES = 2  # LLM sentences shown (the template may use up to MAX_SENTENCES)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"\u201d')]*\s+(?=[\"\u201c(]?[A-Z0-9#])")
_PREAMBLE = re.compile(r"^\s*(?:explanation|answer|response|sentences?)\s*:\s*", re.I)


# the prompt's style example marks what comes from the facts with <...>; a small model copies
# the brackets around the fact it fills in ('"<Music>"', "<1> users"): drop them, keep the fact
_COPIED_BRACKETS = re.compile(r"<([^<>\n]{1,80})>")


def _clean(text: str) -> str:
    text = _PREAMBLE.sub("", ITEM_TAG.sub("", text))
    text = _COPIED_BRACKETS.sub(r"\1", text)
    return " ".join(text.replace("**", "").split())


def split_sentences(text: str, evidence: Evidence | None = None) -> list[str]:
    """Sentences of `text` (a trailing fragment without end punctuation is kept last).

    Evidence titles are masked first (`mask_titles`), so "L.A. Confidential" or "Mars
    Attacks!" do not end a sentence.
    """
    masked = mask_titles(text.strip(), evidence) if evidence is not None else MaskedText(text)
    out = [s.strip() for s in _SENTENCE_END.split(masked.text.strip()) if s.strip()]
    return [masked.unmask(s) for s in out]


def _finished(sentence: str) -> bool:
    return sentence.rstrip("\"'\u201d)").endswith((".", "!", "?"))


def _closed(sentences: list[str]) -> list[str]:
    """The sentences before the first one with an open double quote: while a title is still
    arriving ("Mr. Holland's Opus" has come as far as "Mr.") its dot is no sentence end."""
    for n, sentence in enumerate(sentences):
        if sentence.count('"') % 2 or sentence.count("\u201c") > sentence.count("\u201d"):
            return sentences[:n]
    return sentences


_CLAUSE_CUT = re.compile(r",\s+|\s+(?:and|but|while)\s+")
MIN_SALVAGED_WORDS = 6  # a clause cut from a truncated sentence must still say something


def salvage(sentence: str, evidence: Evidence) -> str | None:
    """A sentence cut off by the token limit, ended at its last whole clause: "It is similar to
    "Heat (1995)", which you rated 4, and 42 users who liked" -> "It is similar to "Heat
    (1995)", which you rated 4." None when no clause of `MIN_SALVAGED_WORDS` words is whole
    (quotes and brackets closed). The result is checked like any other sentence."""
    masked = mask_titles(sentence, evidence)
    for m in reversed(list(_CLAUSE_CUT.finditer(masked.text))):
        head = masked.text[: m.start()].rstrip(" ,;:-")
        balanced = head.count('"') % 2 == 0 and head.count("(") == head.count(")")
        if balanced and len(head.split()) >= MIN_SALVAGED_WORDS:
            return masked.unmask(head) + "."
    return None


@dataclass
class _Draft:
    """One explanation being written: the LLM's raw text and the sentences shown so far."""

    evidence: Evidence
    rendered: str  # the evidence lines: the check's source of citable numbers
    raw: str = ""
    shown: list[str] = field(default_factory=list)
    reason: str | None = None  # why the LLM text was rejected
    rule: str | None = None  # the faithfulness rule that rejected it
    stop: bool = False  # the model started repeating itself

    max_sentences: int = MAX_SENTENCES

    @property
    def done(self) -> bool:
        return self.reason is not None or self.stop or len(self.shown) >= self.max_sentences

    @property
    def text(self) -> str:
        return " ".join(self.shown)


class Explainer:
    """Turns `Evidence` into a short, checked explanation.

    Args:
        llm: any `agent.llm.base.LLM` (its `stream` or `generate` writes the text), or None
            for template-only explanations.
        items: the catalogue by id: titles and the tag vocabulary for the faithfulness check.
        max_new_tokens: cap on generated tokens per explanation.
        max_sentences: LLM sentences kept; generation stops once this many passed the check
            (the prompt asks for one or two; each extra sentence costs seconds on a CPU).
        min_share: share of the content score a modality needs before it may be credited.
        prompts_folder: where the templates live (None = the packaged prompts/).
    """

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        items: Mapping[str, Item] | None = None,
        max_new_tokens: int = 64,
        max_sentences: int = MAX_LLM_SENTENCES,
        min_share: float = MIN_MODALITY_SHARE,
        prompts_folder: str | Path | None = None,
    ) -> None:
        self.llm = llm
        self.max_sentences = max_sentences
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
        """The evidence lines: also the only source of citable numbers."""
        return self.renderer.render_evidence(ev)

    def template(self, ev: Evidence) -> str:
        """The deterministic explanation built from `ev` alone (always passes the check)."""
        return self.renderer.template(ev)

    def render_prompt(self, ev: Evidence) -> str:
        """The user prompt for `ev`: the title quoted as data, no description (not evidence)."""
        return self._prompt.render(
            item=f'"{plain(ev.title)}"',
            status="recommended to you" if ev.rank else "not recommended to you",
            evidence=self.renderer.render_evidence(ev, brief=True),
            example=self.renderer.style_example(ev),
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

    # ---- the steps of one explanation ----------------------------------------------------------
    def _pieces(self, llm: LLM, prompt: str, streaming: bool) -> Iterator[str]:
        """The LLM's text as it arrives (one piece when not streaming)."""
        kwargs = {"max_new_tokens": self.max_new_tokens, "system": self._system}
        if streaming:
            yield from llm.stream(prompt, **kwargs)
        else:
            yield llm.generate(prompt, **kwargs)

    def _accept(self, draft: _Draft, *, final: bool) -> Iterator[str]:
        """Check the sentences not yet shown, in order, and show each that passes.

        While the LLM is still writing (`final=False`) the last sentence may still grow, so it
        waits; at the end (`final=True`) it is taken too if it ends like a sentence. Stops at a
        repeated sentence (small models loop), a failed check (sets `draft.reason`) or
        `max_sentences`. Yields the whole text shown so far after each accepted sentence.
        """
        sentences = split_sentences(_clean(draft.raw), draft.evidence)
        ready = sentences if final else _closed(sentences[:-1])
        for sentence in ready[len(draft.shown) : draft.max_sentences]:
            if sentence in draft.shown:
                draft.stop = True
                return
            if final and not _finished(sentence):
                cut = salvage(sentence, draft.evidence)
                if cut is None or cut in draft.shown:
                    if not draft.shown:
                        draft.reason = "unfinished sentence"
                    return
                sentence = cut
            result = self.check(sentence, draft.evidence, rendered=draft.rendered)
            if not result.ok:
                draft.reason, draft.rule = result.reason, result.rule
                return
            draft.shown.append(sentence)
            yield draft.text

    def _write(self, llm: LLM, draft: _Draft, streaming: bool) -> Iterator[str]:
        """Run the LLM, accepting checked sentences while it writes and after it stops."""
        prompt = self.render_prompt(draft.evidence)
        for piece in self._pieces(llm, prompt, streaming):
            draft.raw += piece
            yield from self._accept(draft, final=False)
            if draft.done:
                return
        yield from self._accept(draft, final=True)

    @staticmethod
    def _verdict(draft: _Draft) -> str | None:
        """Why the text shown cannot stand as the explanation (None: it can)."""
        if draft.reason is not None:
            return draft.reason
        if not draft.shown:
            return "empty LLM output"
        if not names_a_reason(draft.text, draft.evidence):
            return "names no reason from the evidence (no liked title, tag or request)"
        return None

    def _fallback(
        self, ev: Evidence, rejected: str | None, reason: str, rule: str | None = None
    ) -> Explanation:
        try:
            text = self.template(ev)
        except Exception as e:  # a broken template file must not reach the UI either
            logger.error("explanation template failed for item %s: %s", ev.item_id, e)
            text = ""
        return Explanation(
            text=text, evidence=ev, path="template", rejected=rejected, reason=reason, rule=rule
        )

    # ---- public API ------------------------------------------------------------------------
    def explain(self, evidence: Evidence) -> Explanation:
        """Explain one item: checked LLM text, else the template. Never raises."""
        return drain(self.stream(evidence, streaming=False))

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
        start = time.perf_counter()
        draft = _Draft(evidence, rendered="", max_sentences=self.max_sentences)
        try:
            draft.rendered = self.render_evidence(evidence)
            yield from self._write(self.llm, draft, streaming)
        except Exception as e:  # the LLM stack raises many types; the UI must not see them
            logger.warning("LLM explanation failed for item %s: %s", evidence.item_id, e)
            exp = self._fallback(evidence, _clean(draft.raw) or None, f"LLM error: {e}")
            yield exp.text
            return exp
        logger.debug(
            "LLM explanation for %s in %.2fs", evidence.item_id, time.perf_counter() - start
        )
        reason = self._verdict(draft)
        if reason is None:
            return Explanation(text=draft.text, evidence=evidence, path="llm")
        malformed = reason in ("empty LLM output", "unfinished sentence")
        logger.log(
            logging.WARNING if malformed else logging.INFO,
            "explanation for %s falls back to the template: %s",
            evidence.item_id,
            reason,
        )
        exp = self._fallback(evidence, _clean(draft.raw) or None, reason, draft.rule)
        yield exp.text
        return exp

    def explain_many(self, evidences: Iterable[Evidence]) -> list[Explanation]:
        """`explain` for each evidence record, in order."""
        return [self.explain(ev) for ev in evidences]
