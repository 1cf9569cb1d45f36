"""Faithfulness check: every title, tag, label, number and modality claim must be in the evidence.

The check is a table of small rules (`RULES`), run in order on one `Claim` (the text, its
title-masked form and what the evidence allows); the first rule that returns a reason rejects
the text. Each rule is a plain function, testable alone:

- `foreign_title`: a catalogue title must belong to the evidence (the item, a history item, a
  co-liked item). Case-sensitive, word-bounded, with and without the year, with a trailing
  article moved to the front; a one-word title at the start of a sentence is ignored.
- `unknown_quote`: quoted text must be an evidence title, tag, label or the request (or a list
  of tags/labels: a label with commas, "Beep, bleep", is one allowed piece).
- `unknown_year_title`: "Titans (1997)": anything with a year is a title, and must be one.
- `unknown_name`: capitalised spans of two or more words ("Blade Runner") must occur in an
  evidence string; leading sentence words ("Because", "Like") are dropped.
- `unknown_tag_claim`: what follows "tagged"/"labelled"/"its picture shows" must be the item's
  tags or labels.
- `foreign_tag`: a tag/genre of the catalogue vocabulary must be one the item carries.
- `unknown_number`: numbers (digits, and "two" ... "twelve") must occur in the rendered evidence.
- `judgement`: no judgements of reception or quality ("praised", "a classic", "directed by").
- `self_claim`: "you liked it" only when the user rated the item.
- `misattributed_year` / `misattributed_rating`: a year or rating must sit next to a title
  that has it.
- `unsupported_modality`: crediting a modality ("looks like", "sounds like" a liked item) needs
  that modality to matter (`agent.explain.evidence.supported_modalities`); describing the
  item's own picture or sound ("its photo shows a tabby cat") needs labels the encoders gave it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from agent.explain.evidence import MIN_MODALITY_SHARE, supported_modalities
from agent.records import Evidence

__all__ = [
    "RULES",
    "Claim",
    "FaithfulnessResult",
    "MaskedText",
    "Rule",
    "TitleIndex",
    "check_faithfulness",
    "evidence_titles",
    "label_forms",
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
# Words that talk about an item's picture or sound at all.
_MODALITY_WORDS = {
    "image": re.compile(
        r"\b(looks? like|cover art|artwork|posters?|visual(?:ly|s)?|imagery|images?|"
        r"pictures?|photo(?:graph)?s?)\b",
        re.I,
    ),
    "audio": re.compile(r"\b(sounds? like|sounds?|audio|sonic(?:ally)?|listen(?:ing)?)\b", re.I),
}
# Words that credit a modality for the match with the user's taste (not a description).
_COMPARISON = re.compile(
    r"\b(?:looks? like|sounds? like|resembl\w*|remind\w*|similar\w*|same|"
    r"like (?:the |those |other |)(?:items?|ones?|what|things|photos?|pictures?|images?|sounds?|"
    r"tracks?|songs?|music|films?|movies?) (?:you|that you)|like QQTITLE)",
    re.I,
)
_TAGGED = re.compile(  # "tagged X, Y and Z"; "its picture shows a tabby cat"
    r"\b(?:tagged|labell?ed|(picture|photo(?:graph)?|image|drawing)\s+(?:shows?|depicts?|"
    r"features?|contains?))(?:\s+(?:as|with))?\s+[\"\u201c]?([^.;:!?\"\u201d()]+)",
    re.I,
)
_MODALITY_NOUN = re.compile(
    r"\b(?:its|the|this|that)\s+(?:sound|audio|picture|photo|image|drawing|music)\b", re.I
)
_TAG_STOP = re.compile(
    r"\s+(?:like|just|as|which|that|the same|too|so|in|for|by|from)\b.*$|[,\s]+$", re.I
)
_LIST_SEP = re.compile(r"\s*(?:,|;|&|/|\band\b|\bor\b)\s*(?:and\s+|or\s+)?", re.I)
_CLAUSE = set(  # a list of tags ends where a clause starts ("tagged Drama, which you like")
    "you your it its it's this that which they these those he she we so but while because "
    "like as with just too also making is was has have shares share matches match fits "
    "makes gives comes appears plus similar close matching loved liked enjoyed".split()
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
    r"must-see|iconic|legendary|directors?|starring)\b",
    re.I,
)
_YEAR_TITLE = re.compile(r"((?:[A-Z0-9][\w'\-:!.,]*\s+)*?[A-Z0-9][\w'\-:!.,]*)\s*\((\d{4})\)")
_SPLIT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z0-9][\w'\-]*|&")
_ARTICLES = re.compile(r"^(?:a|an|the)\s+", re.I)


@dataclass(frozen=True)
class FaithfulnessResult:
    """Outcome of the check: `ok`, `reason` naming the first unsupported mention, and the name
    of the rule that found it."""

    ok: bool
    reason: str | None = None
    rule: str | None = None

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


def label_forms(label: str) -> list[str]:
    """Ways an encoder label may be cited: whole ("Beep, bleep", "tabby, tabby cat"), or any
    one of its comma-separated synonyms ("tabby cat"). ImageNet and AudioSet class names list
    synonyms with commas, so the whole label is one piece, never a list of tags."""
    parts = [p.strip() for p in label.split(",")]
    return list(dict.fromkeys([label.strip(), *(p for p in parts if len(p) >= 2)]))


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


def evidence_titles(ev: Evidence) -> dict[str, str]:
    """Item id -> title of every item the evidence names (the item, history, co-liked)."""
    out = {ev.item_id: ev.title}
    out.update({link.item_id: link.title for link in ev.history})
    out.update({i: t for i, t, _ in ev.co_liked})
    return out


def _title_pairs(ev: Evidence) -> list[tuple[str, str]]:
    """(item id, title) of every title the evidence names, duplicates kept (an id's title in
    the history and in the co-likes may be written differently)."""
    pairs = [(ev.item_id, ev.title), *((lk.item_id, lk.title) for lk in ev.history)]
    return pairs + [(i, t) for i, t, _ in ev.co_liked]


def _label_strings(ev: Evidence) -> list[str]:
    return [form for labels in ev.labels.values() for lb in labels for form in label_forms(lb)]


def _allowed_strings(ev: Evidence) -> list[str]:
    strings: list[str] = []
    for _, title in _title_pairs(ev):
        strings += list(title_forms(title))
    strings += ev.item_tags + ev.matched_tags + ev.disliked_tags
    strings += _label_strings(ev)
    if ev.request:
        strings.append(ev.request)
    return [_fold(s) for s in strings if s]


def names_a_reason(text: str, ev: Evidence) -> bool:
    """Whether `text` names at least one reason the evidence holds: a history or co-liked title
    (not the item's own), a shared tag or label, or the request. Where the evidence has none of
    those, any text qualifies. A true but empty sentence ("It is recommended to you at position
    #5.") passes every rule and explains nothing; this catches it."""
    reasons = [
        f for link in ev.history if link.item_id != ev.item_id for f in title_forms(link.title)
    ]
    reasons += [f for i, t, _ in ev.co_liked if i != ev.item_id for f in title_forms(t)]
    reasons += ev.matched_tags + _label_strings(ev)
    reasons += [ev.request] if ev.request else []
    folded = _fold(text)
    return not reasons or any(_fold(r) in folded for r in reasons if r)


# ---- title masking (the one placeholder scheme) ----------------------------------------------
def _placeholder(n: int) -> str:
    """`QQTITLEAQQ`, `QQTITLEBQQ`, ...: letters only, so no digit in a mask is taken for a
    number and no dot for a sentence end."""
    letters = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(65 + r) + letters
    return f"QQTITLE{letters}QQ"


_PLACEHOLDER = re.compile(r"QQTITLE[A-Z]+QQ")


@dataclass(frozen=True)
class MaskedText:
    """Text with every evidence title replaced by a placeholder word.

    Attributes:
        text: the masked text.
        refs: placeholder -> ids of the items it may name (several when titles are shared).
        originals: placeholder -> the title as written in the input.
    """

    text: str
    refs: dict[str, set[str]] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)

    def unmask(self, text: str) -> str:
        """`text` (a piece of the masked text) with the titles put back as written."""
        return _PLACEHOLDER.sub(lambda m: self.originals.get(m.group(0), m.group(0)), text)


def mask_titles(text: str, ev: Evidence) -> MaskedText:
    """`text` with every evidence title (any form, any case) replaced by a placeholder, so words,
    numbers and punctuation inside titles ("L.A. Confidential", "Twelve Monkeys", "Mars
    Attacks!") are not taken for sentence ends, tags, numbers or modality claims. The checks
    and the explainer's sentence splitter both use this one scheme."""
    ids_by_form: dict[str, set[str]] = {}
    for item_id, title in _title_pairs(ev):
        for form in title_forms(title):
            ids_by_form.setdefault(form.casefold(), set()).add(item_id)
    if not ids_by_form:
        return MaskedText(text)
    forms = sorted(ids_by_form, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, forms)) + r")(?!\w)", re.I)
    refs: dict[str, set[str]] = {}
    originals: dict[str, str] = {}

    def replace(m: re.Match[str]) -> str:
        key = _placeholder(len(originals))
        originals[key] = m.group(0)
        refs[key] = ids_by_form[m.group(0).casefold()]
        return key

    masked = pattern.sub(replace, text)
    return MaskedText(masked, refs, originals)


# ---- what every rule reads -------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One text to check and everything the rules compare it with.

    Attributes:
        text: the text as written.
        masked: the same with evidence titles masked (`mask_titles`).
        evidence: the facts it may use.
        allowed: folded evidence strings (titles in every form, tags, label forms, request).
        tags: folded tags and label forms the item carries.
        numbers: every number the rendered evidence, titles, tags and request print.
        supported: modalities the text may credit for the match.
        titles: the whole catalogue's titles (None: not checked).
        vocabulary: every tag/genre of the catalogue.
    """

    text: str
    masked: MaskedText
    evidence: Evidence
    allowed: tuple[str, ...]
    tags: frozenset[str]
    numbers: frozenset[float]
    supported: frozenset[str]
    titles: TitleIndex | None = None
    vocabulary: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        text: str,
        evidence: Evidence,
        *,
        rendered: str = "",
        titles: TitleIndex | None = None,
        vocabulary: Iterable[str] = (),
        min_share: float = MIN_MODALITY_SHARE,
    ) -> Claim:
        """Everything the rules need, computed once per text."""
        tags = {_fold(t) for t in evidence.item_tags + evidence.matched_tags}
        tags |= {_fold(t) for t in evidence.disliked_tags + _label_strings(evidence)}
        source = " ".join(
            [rendered, *(t for _, t in _title_pairs(evidence)), *evidence.item_tags]
            + [evidence.request or ""]
        )
        return cls(
            text=text,
            masked=mask_titles(text, evidence),
            evidence=evidence,
            allowed=tuple(_allowed_strings(evidence)),
            tags=frozenset(tags),
            numbers=frozenset(_numbers(source)),
            supported=frozenset(supported_modalities(evidence, min_share=min_share)),
            titles=titles,
            vocabulary=tuple(vocabulary),
        )


Rule = Callable[[Claim], str | None]


# ---- helpers the rules share -------------------------------------------------------------------
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


def _span_ok(span: str, pos: int, text: str, allowed: Sequence[str]) -> bool:
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


def _list_items(claimed: str, pieces: Iterable[str]) -> tuple[list[str], str]:
    """Split a folded list ("piano, beep, bleep and tender music") into known pieces, longest
    first at each position, so a piece with commas ("beep, bleep") stays whole. Returns (the
    known pieces, the unknown rest from the first item that is not a piece; "" if none)."""
    known = sorted({p for p in pieces if p}, key=len, reverse=True)
    found: list[str] = []
    rest = claimed.strip(" ,;")
    while rest:
        rest = _ARTICLES.sub("", rest)
        piece = next((p for p in known if rest.startswith(p) and _list_end(rest[len(p) :])), None)
        if piece is None:
            return found, rest
        found.append(piece)
        after = rest[len(piece) :]
        sep = _LIST_SEP.match(after)
        rest = (after[sep.end() :] if sep else after).strip(" ,;")
    return found, ""


def _list_end(after: str) -> bool:
    """A piece ends the text, or a word ("tender" is no piece of "tenderness")."""
    return not after or not after[0].isalnum()


def _first_word(text: str) -> str:
    return text.split()[0].strip("'\"") if text.split() else ""


def _sentences(text: str) -> list[str]:
    return _SPLIT.split(text)


# ---- the rules ---------------------------------------------------------------------------------
def foreign_title(c: Claim) -> str | None:
    """A catalogue title that is not the item's, a history item's or a co-liked item's."""
    if c.titles is None:
        return None
    ev_ids = set(evidence_titles(c.evidence))
    for form, ids, pos in c.titles.find(c.text):
        if ids & ev_ids:
            continue
        if " " not in form and _sentence_start(c.text, pos):
            continue
        return f"names catalogue title '{form}', which is not in the evidence"
    return None


def unknown_quote(c: Claim) -> str | None:
    """Quoted text that is no evidence title, tag, label, request, or list of tags/labels."""
    for m in _QUOTED.finditer(c.text):
        quoted = _fold(next(g for g in m.groups() if g is not None).strip(" .,!?"))
        words = re.findall(r"[^\W\d_]{2,}", quoted)
        partial_ok = len(words) >= 2 or (len(words) == 1 and words[0] not in _CONNECTORS)
        if not quoted or any(quoted == a or (partial_ok and quoted in a) for a in c.allowed):
            continue
        if not _list_items(quoted, c.tags)[1]:
            continue
        return f"quotes '{quoted}', which is not in the evidence"
    return None


def unknown_year_title(c: Claim) -> str | None:
    """A name with a year ("Titans (1997)") that no evidence title has."""
    for m in _YEAR_TITLE.finditer(c.text):
        words = m.group(1).split()
        while words and not any(_fold(f"{' '.join(words)} ({m.group(2)})") in a for a in c.allowed):
            words = words[1:]
        if not words:
            return f"names '{m.group(0)}', which is not in the evidence"
    return None


def unknown_name(c: Claim) -> str | None:
    """A capitalised run of two or more words ("Steven Spielberg") no evidence string holds."""
    for span, pos in _spans(c.text):
        if not _span_ok(span, pos, c.text, c.allowed):
            return f"mentions '{span}', which is not in the evidence"
    return None


def unknown_tag_claim(c: Claim) -> str | None:
    """A list after "tagged" or "its picture shows" holding what is no tag or label of the item;
    the list ends at a clause ("tagged Drama, which you like")."""
    for m in _TAGGED.finditer(c.masked.text):
        claimed = _fold(c.masked.unmask(_TAG_STOP.sub("", m.group(2))).strip())
        found, rest = _list_items(claimed, c.tags)
        if not rest:
            continue
        bad = _LIST_SEP.split(rest, maxsplit=1)[0].strip()
        if found and (_first_word(rest) in _CLAUSE or len(bad.split()) > 3):
            continue  # the list ended and a clause goes on
        said = f"its {m.group(1).lower()} shows" if m.group(1) else "it is tagged"
        return f"says {said} '{bad}', which is not in the evidence"
    return None


def foreign_tag(c: Claim) -> str | None:
    """A tag/genre of the catalogue vocabulary that this item does not carry. Read outside the
    request, quoted evidence strings and the words naming a modality ("its sound", "the
    picture"), so a catalogue tagged "sound" or "music" does not forbid those words."""
    text = _MODALITY_NOUN.sub(" ", c.masked.text)
    if c.evidence.request:
        text = re.sub(re.escape(c.evidence.request), " ", text, flags=re.I)
    text = _QUOTED.sub(
        lambda m: " " if _fold(next(g for g in m.groups() if g) or "") in c.allowed else m.group(0),
        text,
    )
    for tag in c.vocabulary:
        if (
            tag
            and _fold(tag) not in c.tags
            and re.search(rf"(?<![\w-]){re.escape(tag)}(?![\w-])", text, flags=re.I)
        ):
            return f"mentions tag '{tag}', which this item does not carry"
    return None


def unknown_number(c: Claim) -> str | None:
    """A number (digits or "two" ... "twelve") that the evidence does not print."""
    for n in _numbers(c.masked.text):
        if n not in c.numbers:
            return f"cites the number {n:g}, which is not in the evidence"
    for word, n in _SPELLED.items():
        if re.search(rf"\b{word}\b", c.masked.text, flags=re.I) and float(n) not in c.numbers:
            return f"cites the number '{word}', which is not in the evidence"
    return None


def judgement(c: Claim) -> str | None:
    """A judgement of reception or quality, unless a tag or title uses the word."""
    for m in _JUDGEMENT.finditer(c.masked.text):
        word = _fold(m.group(0))
        if not any(re.search(rf"\b{re.escape(word)}\b", a) for a in c.allowed):
            return f"judges the item ('{m.group(0)}'), which no evidence supports"
    return None


def self_claim(c: Claim) -> str | None:
    """A claim that the user liked or saw the item ("you liked it") when they have not rated it."""
    seen = any(link.item_id == c.evidence.item_id for link in c.evidence.history)
    claim = _SELF_CLAIM.search(c.masked.text)
    if claim and not seen:
        return f"claims '{claim.group(0)}' but the user has not rated it"
    return None


def misattributed_year(c: Claim) -> str | None:
    """A year (1880-2039) outside a title that is neither the item's nor that of a title
    named in the same sentence ("Braveheart, which was released in 1993")."""
    years: dict[str, set[str]] = {}
    for i, t in _title_pairs(c.evidence):
        years.setdefault(i, set()).update(re.findall(r"\((\d{4})\)", t))
    own = years.get(c.evidence.item_id, set())
    for sentence in _sentences(c.masked.text):
        named = {
            y
            for p, ids in c.masked.refs.items()
            if p in sentence
            for i in ids
            for y in years.get(i, ())
        }
        for year in re.findall(r"(?<![\w.])(18[89]\d|19\d\d|20[0-3]\d)(?![\w.]\d)", sentence):
            if year not in named and year not in own:
                return f"gives the year {year} to a title it does not belong to"
    return None


def misattributed_rating(c: Claim) -> str | None:
    """A rating ("rated 5", "4 stars", "5/5") in a sentence that names no title rated so."""
    rated: dict[str, set[float]] = {}
    for link in c.evidence.history:
        if link.rating is not None:
            rated.setdefault(link.item_id, set()).add(round(float(link.rating), 6))
    for sentence in _sentences(c.masked.text):
        named = [i for p, ids in c.masked.refs.items() if p in sentence for i in ids]
        for m in _RATED.finditer(sentence):
            value = round(float(m.group(1) or m.group(2)), 6)
            if not any(value in rated.get(i, ()) for i in named):
                return f"gives the rating {m.group(0)} without naming a title rated so"
    return None


def unsupported_modality(c: Claim) -> str | None:
    """A picture/sound claim the evidence does not back.

    Crediting a modality for the match ("looks like", "sounds like", "similar", "like items
    you liked") needs it among `Claim.supported`. Describing the item's own picture or sound
    ("its photo shows a tabby cat") is allowed where the encoders gave it labels there.
    """
    ev = c.evidence
    for sentence in _sentences(c.masked.text):
        if ev.request:  # the user's own words may say "listen" or "picture"
            sentence = re.sub(re.escape(ev.request), " ", sentence, flags=re.I)
        comparing = _COMPARISON.search(sentence) is not None
        for modality, pattern in _MODALITY_WORDS.items():
            if modality in c.supported:
                continue
            if ev.labels.get(modality) and not comparing:
                continue  # a description of the item's own picture or sound
            m = pattern.search(sentence)
            if m:
                return f"claims '{m.group(0)}' but the {modality} modality does not support it"
            for label in ev.labels.get(modality, ()):
                if any(
                    re.search(rf"(?<!\w){re.escape(form)}(?!\w)", sentence, re.I)
                    for form in label_forms(label)
                ):
                    return (
                        f"cites the {modality} label '{label}' but that modality does not "
                        "support it"
                    )
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("foreign_title", foreign_title),
    ("unknown_quote", unknown_quote),
    ("unknown_year_title", unknown_year_title),
    ("unknown_name", unknown_name),
    ("unknown_tag_claim", unknown_tag_claim),
    ("foreign_tag", foreign_tag),
    ("unknown_number", unknown_number),
    ("judgement", judgement),
    ("self_claim", self_claim),
    ("misattributed_year", misattributed_year),
    ("misattributed_rating", misattributed_rating),
    ("unsupported_modality", unsupported_modality),
)


def check_faithfulness(
    text: str,
    evidence: Evidence,
    *,
    rendered: str = "",
    titles: TitleIndex | None = None,
    vocabulary: Iterable[str] = (),
    min_share: float = MIN_MODALITY_SHARE,
) -> FaithfulnessResult:
    """Check that `text` mentions only what `evidence` holds: run `RULES` in order.

    Args:
        text: the explanation to check.
        evidence: the facts it may use.
        rendered: the evidence as shown to the LLM; the only place numbers may come from
            (numbers inside evidence titles, tags and the request are allowed too).
        titles: the whole catalogue's titles, to catch titles of items not in the evidence.
        vocabulary: every tag/genre the catalogue uses (checked case-insensitively).
        min_share: share of the content score a modality needs before it may be credited.

    Returns:
        FaithfulnessResult(ok, reason, rule).
    """
    if not text or not text.strip():
        return FaithfulnessResult(False, "empty explanation", "empty")
    claim = Claim.build(
        text, evidence, rendered=rendered, titles=titles, vocabulary=vocabulary, min_share=min_share
    )
    for name, rule in RULES:
        reason = rule(claim)
        if reason is not None:
            return FaithfulnessResult(False, reason, name)
    return FaithfulnessResult(True)
