"""Faithfulness check: every title, tag, label, number and modality claim must be in the evidence.

Rules (the first one that fails gives the reason):

1. Catalogue titles: any catalogue title the text names must belong to the evidence (the item,
   a history item, a co-liked item). Matched case-sensitively on word boundaries, with and
   without the year and with a trailing article moved to the front ("Godfather, The (1972)"
   also matches "The Godfather"); a one-word title at the start of a sentence is ignored.
2. Quoted strings must be an evidence title, tag, label or the request.
3. Capitalised title-like spans of two or more words ("Blade Runner", "Return of the Jedi")
   must occur in an evidence string; leading sentence words ("Because", "Like") are dropped.
4. Tags/genres from the catalogue vocabulary must be the item's tags or matched tags.
5. Numbers (digits, and "two" ... "twelve") must occur in the rendered evidence.
6. No judgements of reception or quality ("praised", "a classic", "award", "directed by"):
   no evidence field holds one.
7. Modality claims ("looks like", "cover art", "sounds like", naming a media label, ...)
   need that modality to be supported (`agent.explain.evidence.supported_modalities`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agent.explain.evidence import MIN_MODALITY_SHARE, supported_modalities
from agent.records import Evidence

__all__ = [
    "FaithfulnessResult",
    "TitleIndex",
    "check_faithfulness",
    "mask_titles",
    "names_a_reason",
    "title_forms",
]

_YEAR = re.compile(r"\s*\((?:\d{4}|[IVX]+)\)\s*$")
_ARTICLE = re.compile(r"^(.*),\s*(The|A|An|Les|La|Le|Il|El|Das|Der|Die|L')$")
_QUOTED = re.compile(
    r"\"([^\"]{1,200})\"|\u201c([^\u201d]{1,200})\u201d|(?<!\w)'([^']{2,200})'(?!\w)"
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?!\w)")
_CONNECTORS = set("of the and a an in on to for de la with & from".split())
_STARTERS = set(  # words a capitalised span may start with that are not part of a name
    "it its it's you your you've this that these those because like and but both if as "
    "since also recommended we i they so here there based given why not fans people users "
    "many some other another all more what when while with the a an viewers just unlike "
    "after before in on for from at then yes no great enjoy try watch check similar our "
    "my he she his her their them how who".split()
)
_SPELLED = {
    w: n
    for n, w in enumerate("two three four five six seven eight nine ten eleven twelve".split(), 2)
}
_MODALITY_CLAIMS = {
    "image": re.compile(
        r"\b(looks? like|cover art|artwork|posters?|visual(?:ly|s)?|imagery|"
        r"photo(?:graph)?s?)\b",
        re.I,
    ),
    "audio": re.compile(r"\b(sounds? like|sounds?|audio|sonic(?:ally)?|listen(?:ing)?)\b", re.I),
}
_TAGGED = re.compile(
    r"\b(?:tagged|labell?ed)(?:\s+(?:as|with))?\s+[\"\u201c]?([^.,;:!?\"\u201d()]+)", re.I
)
_TAG_STOP = re.compile(
    r"\s+(?:like|just|as|which|that|and|or|the same|too|so|in|for|by|from)\b.*$", re.I
)
_RATED = re.compile(
    r"\b(?:rated|rating of|gave it)\b[^.!?\d]{0,25}?(\d+(?:\.\d+)?)"
    r"|(\d+(?:\.\d+)?)\s*(?:/\s*\d+|stars?\b|out of\b)",
    re.I,
)
_SELF_CLAIM = re.compile(
    r"\b(?:you|the user|they|this user)\s+(?:have\s+|has\s+|already\s+)?"
    r"(?:liked|loved|rated|enjoyed|watched|saw|seen)\s+"
    r"(?:it|this(?:\s+\w+)?|the (?:item|film|movie))\b",
    re.I,
)
# Judgements about an item's reception or quality: no evidence field ever holds one, so a
# sentence making one is invented ("praised for its innovative storytelling", "a classic").
_JUDGEMENT = re.compile(
    r"\b(praised|acclaimed|critics?|critically|classics?|masterpieces?|awards?|oscars?|"
    r"top-rated|highly[- ]rated|best|greatest|famous|beloved|blockbusters?|cult|innovative|"
    r"must-see|iconic|legendary|directors?|starring)",
    re.I,
)
_YEAR_TITLE = re.compile(r"((?:[A-Z0-9][\w'\-:!.,]*\s+)*?[A-Z0-9][\w'\-:!.,]*)\s*\((\d{4})\)")
_SPLIT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z0-9][\w'\-]*|&")


@dataclass(frozen=True)
class FaithfulnessResult:
    """Outcome of the check: `ok`, and `reason` naming the first unsupported mention."""

    ok: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def _fold(text: str) -> str:
    return " ".join(re.sub(r"[\u2018\u2019]", "'", text).casefold().split())


def title_forms(title: str) -> set[str]:
    """Ways a title may be written: as stored, without year, article moved to the front."""
    forms = {title.strip()}
    base = _YEAR.sub("", title).strip()
    forms.add(base)
    m = _ARTICLE.match(base)
    if m:
        forms.add(f"{m.group(2)} {m.group(1)}")
        year = title[len(base) :].strip()
        if year:
            forms.add(f"{m.group(2)} {m.group(1)} {year}")
    return {f for f in forms if len(f) >= 2}


class TitleIndex:
    """All catalogue titles compiled into one case-sensitive, word-bounded regex.

    Args:
        titles: item id -> title for the whole catalogue.
    """

    def __init__(self, titles: dict[str, str] | Iterable[tuple[str, str]]) -> None:
        pairs = titles.items() if isinstance(titles, dict) else titles
        self._ids: dict[str, set[str]] = {}
        for item_id, title in pairs:
            for form in title_forms(title):
                self._ids.setdefault(form, set()).add(str(item_id))
        forms = sorted(self._ids, key=len, reverse=True)
        body = "|".join(re.escape(f) for f in forms)
        self._regex = re.compile(rf"(?<![\w'])(?:{body})(?![\w'])") if forms else None

    def find(self, text: str) -> list[tuple[str, set[str], int]]:
        """(matched form, ids it may name, start offset) for every title mention in `text`."""
        if self._regex is None:
            return []
        return [(m.group(0), self._ids[m.group(0)], m.start()) for m in self._regex.finditer(text)]


def _evidence_titles(ev: Evidence) -> dict[str, str]:
    out = {ev.item_id: ev.title}
    out.update({link.item_id: link.title for link in ev.history})
    out.update({i: t for i, t, _ in ev.co_liked})
    return out


def _allowed_strings(ev: Evidence) -> list[str]:
    strings: list[str] = []
    for title in _evidence_titles(ev).values():
        strings += list(title_forms(title))
    strings += ev.item_tags + ev.matched_tags + ev.disliked_tags
    for labels in ev.labels.values():
        strings += labels
    if ev.request:
        strings.append(ev.request)
    return [_fold(s) for s in strings if s]


def names_a_reason(text: str, ev: Evidence) -> bool:
    """Whether `text` names at least one reason the evidence holds: a history or co-liked title
    (not the item's own), a shared tag or label, or the request. Where the evidence has none of
    those, any text qualifies. A true but empty sentence ("It is recommended to you at position
    #5.") passes every rule above and explains nothing; this catches it."""
    reasons = [
        f for link in ev.history if link.item_id != ev.item_id for f in title_forms(link.title)
    ]
    reasons += [f for i, t, _ in ev.co_liked if i != ev.item_id for f in title_forms(t)]
    reasons += ev.matched_tags + [lb for labels in ev.labels.values() for lb in labels]
    reasons += [ev.request] if ev.request else []
    folded = _fold(text)
    return not reasons or any(_fold(r) in folded for r in reasons if r)


def _placeholder(n: int) -> str:
    letters = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(65 + r) + letters
    return f"QQTITLE{letters}QQ"


def mask_titles(text: str, ev: Evidence) -> tuple[str, dict[str, set[str]]]:
    """`text` with every evidence title (any form) replaced by a placeholder word, so words,
    numbers and punctuation inside titles ("L.A. Confidential", "Twelve Monkeys") are not
    mistaken for sentences, tags, numbers or modality claims. Returns (masked, placeholder ->
    item ids: several when items share a title)."""
    ids_by_form: dict[str, set[str]] = {}
    for item_id, title in _evidence_titles(ev).items():
        for form in title_forms(title):
            ids_by_form.setdefault(form, set()).add(item_id)
    refs: dict[str, set[str]] = {}
    for n, form in enumerate(sorted(ids_by_form, key=len, reverse=True)):
        pattern = re.compile(rf"(?<!\w){re.escape(form)}(?!\w)", flags=re.I)
        if pattern.search(text):
            refs[_placeholder(n)] = ids_by_form[form]
            text = pattern.sub(_placeholder(n), text)
    return text, refs


def _unattributed_rating(masked: str, refs: dict[str, set[str]], ev: Evidence) -> str | None:
    """A rating ("rated 5", "4 stars", "5/5") in a sentence that names no title rated so."""
    rated: dict[str, set[float]] = {}
    for link in ev.history:
        if link.rating is not None:
            rated.setdefault(link.item_id, set()).add(round(float(link.rating), 6))
    for sentence in _SPLIT.split(masked):
        named = [i for p, ids in refs.items() if p in sentence for i in ids]
        for m in _RATED.finditer(sentence):
            value = round(float(m.group(1) or m.group(2)), 6)
            if not any(value in rated.get(i, ()) for i in named):
                return m.group(0)
    return None


def _unattributed_year(masked: str, refs: dict[str, set[str]], ev: Evidence) -> str | None:
    """A year (1880-2039) outside a title that is neither the item's nor that of a title
    named in the same sentence ("Braveheart, which was released in 1993")."""
    years = {i: set(re.findall(r"\((\d{4})\)", t)) for i, t in _evidence_titles(ev).items()}
    for sentence in _SPLIT.split(masked):
        named = {
            y for p, ids in refs.items() if p in sentence for i in ids for y in years.get(i, ())
        }
        for year in re.findall(r"(?<![\w.])(18[89]\d|19\d\d|20[0-3]\d)(?![\w.]\d)", sentence):
            if year not in named and year not in years.get(ev.item_id, ()):
                return year
    return None


def _sentence_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip(" \"'\u201c(")
    return not before or before[-1] in ".!?:;\n"


def _numbers(text: str) -> set[float]:
    out: set[float] = set()
    for raw in _NUMBER.findall(text):
        try:
            out.add(round(float(raw.replace(",", "")), 6))
        except ValueError:
            continue
    return out


def _spans(text: str) -> list[tuple[str, int]]:
    """Maximal runs of capitalised words (lower-case connectors allowed inside)."""
    words = [(m.group(0), m.start()) for m in _WORD.finditer(text)]
    spans: list[tuple[str, int]] = []
    run: list[tuple[str, int]] = []

    def close() -> None:
        while run and run[-1][0].lower() in _CONNECTORS and not run[-1][0][0].isupper():
            run.pop()
        if run:
            spans.append((text[run[0][1] : run[-1][1] + len(run[-1][0])], run[0][1]))
        run.clear()

    for i, (word, start) in enumerate(words):
        gap = text[words[i - 1][1] + len(words[i - 1][0]) : start] if i else ""
        if run and any(c in gap for c in '.!?;:,"()\u201c\u201d\n'):
            close()
        if word[0].isupper() or (word[0].isdigit() and run):
            run.append((word, start))
        elif run and word.lower() in _CONNECTORS:
            run.append((word, start))
        else:
            close()
    close()
    return spans


def _span_ok(span: str, pos: int, text: str, allowed: list[str]) -> bool:
    parts = re.split(r"\s+(?:and|&)\s+", span)
    if len(parts) > 1 and _fold(span) not in " | ".join(allowed):
        return all(_span_ok(p, pos if i == 0 else -1, text, allowed) for i, p in enumerate(parts))
    words = span.split()
    while len(words) > 1 and words[-1][0].isdigit() and not any(_fold(span) in a for a in allowed):
        words = words[:-1]  # "Star Wars 5": the number is checked on its own
    while words:
        if len(words) < 2:
            return True
        folded = _fold(" ".join(words))
        if any(folded in a for a in allowed):
            return True
        if words[0].lower().strip("'") in _STARTERS:
            words = words[1:]
            continue
        return False
    return True


def check_faithfulness(
    text: str,
    evidence: Evidence,
    *,
    rendered: str = "",
    titles: TitleIndex | None = None,
    vocabulary: Iterable[str] = (),
    min_share: float = MIN_MODALITY_SHARE,
) -> FaithfulnessResult:
    """Check that `text` mentions only what `evidence` holds.

    Args:
        text: the explanation to check.
        evidence: the facts it may use.
        rendered: the evidence as shown to the LLM; the only place numbers may come from
            (numbers inside evidence titles, tags and the request are allowed too).
        titles: the whole catalogue's titles, to catch titles of items not in the evidence.
        vocabulary: every tag/genre the catalogue uses (checked case-insensitively).
        min_share: share of the content score a modality needs before it may be credited.

    Returns:
        FaithfulnessResult(ok, reason).
    """
    if not text or not text.strip():
        return FaithfulnessResult(False, "empty explanation")
    allowed = _allowed_strings(evidence)
    ev_ids = set(_evidence_titles(evidence))
    if titles is not None:
        for form, ids, pos in titles.find(text):
            if ids & ev_ids:
                continue
            if " " not in form and _sentence_start(text, pos):
                continue
            return FaithfulnessResult(
                False, f"names catalogue title '{form}', which is not in the evidence"
            )
    for m in _QUOTED.finditer(text):
        quoted = _fold(next(g for g in m.groups() if g is not None).strip(" .,!?"))
        words = re.findall(r"[^\W\d_]{2,}", quoted)
        partial_ok = len(words) >= 2 or (len(words) == 1 and words[0] not in _CONNECTORS)
        if quoted and not any(quoted == a or (partial_ok and quoted in a) for a in allowed):
            return FaithfulnessResult(False, f"quotes '{quoted}', which is not in the evidence")
    for m in _YEAR_TITLE.finditer(text):  # "Titans (1997)": anything with a year is a title
        words = m.group(1).split()
        while words and not any(_fold(f"{' '.join(words)} ({m.group(2)})") in a for a in allowed):
            words = words[1:]
        if not words:
            return FaithfulnessResult(False, f"names '{m.group(0)}', which is not in the evidence")
    for span, pos in _spans(text):
        if not _span_ok(span, pos, text, allowed):
            return FaithfulnessResult(False, f"mentions '{span}', which is not in the evidence")
    ev_tags = {
        _fold(t) for t in evidence.item_tags + evidence.matched_tags + evidence.disliked_tags
    }
    for labels in evidence.labels.values():
        ev_tags |= {_fold(t) for t in labels}
    masked, refs = mask_titles(text, evidence)
    for m in _TAGGED.finditer(masked):
        claimed = _fold(_TAG_STOP.sub("", m.group(1)).strip())
        parts = [p.strip() for p in re.split(r",|\band\b", claimed) if p.strip()]
        bad = [p for p in parts if p not in ev_tags]
        if bad:
            return FaithfulnessResult(
                False, f"says it is tagged '{bad[0]}', which is not in the evidence"
            )
    for tag in vocabulary:
        if (
            tag
            and _fold(tag) not in ev_tags
            and re.search(rf"(?<![\w-]){re.escape(tag)}(?![\w-])", masked, flags=re.I)
        ):
            return FaithfulnessResult(
                False, f"mentions tag '{tag}', which this item does not carry"
            )
    source_text = " ".join(
        [
            rendered,
            *_evidence_titles(evidence).values(),
            *evidence.item_tags,
            evidence.request or "",
        ]
    )
    known = _numbers(source_text)
    for n in _numbers(masked):
        if n not in known:
            return FaithfulnessResult(
                False, f"cites the number {n:g}, which is not in the evidence"
            )
    for word, n in _SPELLED.items():
        if re.search(rf"\b{word}\b", masked, flags=re.I) and float(n) not in known:
            return FaithfulnessResult(
                False, f"cites the number '{word}', which is not in the evidence"
            )
    for judgement in _JUDGEMENT.finditer(masked):  # unless a tag or title uses the word
        word = _fold(judgement.group(0))
        if not any(re.search(rf"\b{re.escape(word)}\b", a) for a in allowed):
            return FaithfulnessResult(
                False, f"judges the item ('{judgement.group(0)}'), which no evidence supports"
            )
    seen = any(link.item_id == evidence.item_id for link in evidence.history)
    claim = _SELF_CLAIM.search(masked)
    if claim and not seen:
        return FaithfulnessResult(False, f"claims '{claim.group(0)}' but the user has not rated it")
    bad_year = _unattributed_year(masked, refs, evidence)
    if bad_year is not None:
        return FaithfulnessResult(
            False, f"gives the year {bad_year} to a title it does not belong to"
        )
    bad_rating = _unattributed_rating(masked, refs, evidence)
    if bad_rating is not None:
        return FaithfulnessResult(
            False, f"gives the rating {bad_rating} without naming a title rated so"
        )
    supported = supported_modalities(evidence, min_share=min_share)
    for modality, pattern in _MODALITY_CLAIMS.items():
        m = pattern.search(masked)
        if m and modality not in supported:
            return FaithfulnessResult(
                False, f"claims '{m.group(0)}' but the {modality} modality does not support it"
            )
        for label in evidence.labels.get(modality, ()):
            if modality not in supported and re.search(
                rf"(?<!\w){re.escape(label)}(?!\w)", masked, re.I
            ):
                return FaithfulnessResult(
                    False,
                    f"cites the {modality} label '{label}' but that modality does not support it",
                )
    return FaithfulnessResult(True)
