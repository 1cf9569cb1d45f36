"""Find catalogue titles inside chat text, fast and forgiving, without an LLM.

People write "the dark knight", "Dark Knight, The (2008)", "Titanc" or "Police Academy 2".
`TitleLinker` normalises titles and text the same way (Unicode accents stripped, case folded,
punctuation dropped, "&" read as "and", Roman numerals II-X read as digits, a trailing ", The"
moved to the front) and finds them with:

- exact lookup of every token n-gram of the message (the leading article optional, and the part
  before a colon as an alias: "Police Academy 2" for "Police Academy 2: Their First Assignment");
- small typos through a symmetric-delete index (SymSpell's idea): every title key of at least
  `FUZZY_MIN_CHARS` characters is stored with each one-character deletion, each message span
  likewise, and a shared string proposes a pair that an edit distance then verifies. A message
  costs a few thousand dictionary look-ups: about a millisecond for a chat line;
- a year written after a title ("Heat (1995)", "Heat 1995") picks among same-named films, and a
  year that matches none of them makes the mention unknown rather than wrong.

Titles made only of common words ("It", "Up", "Get Out", "Her") match only when written like a
title (capitalised and not sentence-initial, quoted, or followed by a year), so "I loved it"
links nothing. Spans that look like titles but match nothing (quoted text, "Some Film (2019)")
come back with `item_id=None`, so the conversation state keeps them as text.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["Link", "TitleLinker", "normalize_title"]

MAX_LINK_CHARS = 5_000  # characters of one message searched for titles (a 100 KB paste is cut)
MAX_TITLE_TOKENS = 12  # longest title, in tokens, looked for (longer catalogue titles: prefix)
FUZZY_MIN_CHARS = 6  # keys shorter than this match exactly only ("Heat" never fuzzes to "Heal")
MIN_SCORE = 0.8  # a fuzzy match must keep this share of the characters (1 - distance / length)
SCORE_EXACT, SCORE_NO_ARTICLE, SCORE_ALIAS = 1.0, 0.95, 0.9  # scores of the exact key kinds
ALLOW_SENTENCE_START = True  # a one-word title may open a sentence ("Heat was great")
YEAR_BONUS = 2.0  # rank bonus (in key characters) of a span whose written year confirms it:
# it decides between equally long spans, never against a longer title

_ARTICLES = ("the", "a", "an")
_ROMAN = {"ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6", "vii": "7", "viii": "8"}
_ROMAN.update({"ix": "9", "x": "10"})
_TOKEN_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|&")
_TRAILING_YEAR_RE = re.compile(r"\s*[\(\[]\s*((?:18|19|20)\d\d)\s*[\)\]]\s*$")
_YEAR_AFTER_RE = re.compile(
    r"\s*(?:[\(\[]\s*((?:18|19|20)\d\d)\s*[\)\]]|\s((?:18|19|20)\d\d)(?![\d.,]\d))"
)
_TRAILING_PAREN_RE = re.compile(r"^(.*\S)\s*\(([^()]+)\)$")
_ARTICLE_AFTER_RE = re.compile(r",\s*(the|a|an)\b", re.IGNORECASE)
# "Postman, The", "Postino, Il", "Haine, La": the article goes back to the front
_TRAILING_ARTICLE_RE = re.compile(
    r"^(.*?),\s*(the|a|an|il|la|le|les|l'|el|los|las|der|die|das|den|det)\s*$", re.IGNORECASE
)
_QUOTED_RE = re.compile(r"[\"“”«»]([^\"“”«»\n]{2,80})[\"“”«»]")
_YEAR_PAREN_RE = re.compile(r"\(((?:18|19|20)\d\d)\)")
_WORD_BEFORE_RE = re.compile(r"([\w'’:&.!?,-]+)\s*$")
_GLUE = frozenset("of the a an and in on to for with at from my me vs is".split())
# Words after which a lowercase one-word title counts ("i loved titanic", "seen amelie?").
_CUES = frozenset(
    "seen saw watched watch watching loved love liked like hated enjoyed adored about than "
    "recommend recommended try".split()
)
_SENTENCE_END_RE = re.compile(r"[.!?:;\n]\s*[\"'“(]?\s*$")

# Words so common in chat that a title made only of them needs to be written like a title.
_COMMON = frozenset(
    """
    a about after again against all alone always am an and another any anything are around as
    at away back bad be because been before being best better big black blue boy boys but by
    call can cat come could crazy dad day days dead did do does dog don dont done down dream
    during each end even ever every everything eye eyes face fall family far fast father few
    fight find fine fire first for forever free friend friends from fun funny get girl girls
    give go god going gone good great guy guys had happy hard has have he head heart hell
    her here him his home hope hot house how i if in inside into is it its just keep kid kids
    kind know last late left let life light like little live long look lost lot love lucky made
    make man many may me men mind mine money more most mother movie movies mr mrs much my name
    need never new next nice night no not nothing now of off oh ok okay old on once one only open
    or other others our out over own part people perfect place play please pretty real really
    red right road room run said same saw say see seen she short show sign signs so some
    someone something sometimes soon sorry split stay still stop story such sure take tell than
    thank thanks that the their them then there these they thing things think this those three
    through time to today together tonight too top true try two up us very want wanted war was
    watch watched way we well went were what when where which while white who why wild will
    with without woman women world would wow yeah yes yet you young your
    movie movies film films flick show series superhero romance romantic comedy comedies
    horror action drama dramas thriller thrillers western musical documentary animated
    animation scary sad school music song songs sound sounds picture photo classic classics
    else anything super nobody somebody everybody
    """.split()
)
_GENRE_NOUNS = frozenset("movie movies film films ones one stuff type types genre kind".split())


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()


def _norm_token(token: str) -> str:
    if token == "&":
        return "and"
    t = _fold(token).replace("'", "").replace("’", "")
    return _ROMAN.get(t, t)


def _tokens(text: str) -> list[str]:
    return [_norm_token(m.group()) for m in _TOKEN_RE.finditer(text)]


def _split_alternate(title: str) -> tuple[str, str | None]:
    """ "Seven (Se7en) (1995)" -> ("Seven", "Se7en"): MovieLens writes alternate and original
    titles in a trailing parenthesis."""
    title = _TRAILING_YEAR_RE.sub("", title).strip()
    m = _TRAILING_PAREN_RE.match(title)
    return (m.group(1), m.group(2)) if m else (title, None)


def normalize_title(title: str) -> str:
    """The lookup key of a title: "Dark Knight, The (2008)" -> "the dark knight"."""
    title = _split_alternate(title)[0]
    m = _TRAILING_ARTICLE_RE.match(title)
    if m:
        article = m.group(2)
        title = article + ("" if article.endswith("'") else " ") + m.group(1)
    return " ".join(_tokens(title))


def _is_sequel_number(token: str, key: str) -> bool:
    return len(token) == 1 and token.isdigit() and not key.split()[-1].isdigit()


def _deletes(key: str) -> set[str]:
    return {key[:i] + key[i + 1 :] for i in range(len(key))}


def _distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment edit distance (a transposition costs 1), cut at `limit` + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def _title_start(text: str, end: int) -> int | None:
    """Start of the run of Capitalised words (short glue words allowed inside) ending at `end`:
    the unknown title in "we watched Some Odd Film (2019)"; None when there is none."""
    start, words = end, 0
    while words < MAX_TITLE_TOKENS:
        m = _WORD_BEFORE_RE.search(text, 0, start)
        if not m:
            break
        word = m.group(1).strip(",:")
        titled = word[:1].isupper() or word[:1].isdigit() or word.lower() in _GLUE
        if not word or word[-1] in ".!?" or not titled:
            break
        start, words = m.start(1), words + 1
    while start < end:  # drop leading glue words ("the" stays only inside the title)
        m = re.match(r"([\w'’]+)\s+", text[start:end])
        if not m or m.group(1).lower() not in _GLUE or m.group(1)[0].isupper():
            break
        start += m.end()
    return start if start < end and text[start:end].strip() else None


@dataclass(frozen=True)
class Link:
    """One title found in a text.

    Attributes:
        text: the span as written (a following year included).
        item_id: catalogue id, or None for a title-like span that matches nothing.
        score: 1.0 exact; lower for a dropped article, a pre-colon alias or a typo.
        start: character offset of the span in the text searched.
        end: offset one past the span.
        year: the year written after the title, if any.
    """

    text: str
    item_id: str | None
    score: float
    start: int
    end: int
    year: int | None = None


@dataclass(frozen=True)
class _Entry:
    item_id: str
    year: int | None
    prior: float


def _strictness(key: str) -> str:
    """How a key may match: "single" (one content word: written as a standalone title, or
    lowercase right after a cue such as "seen"), "title" (only common words: written as a
    title) or "loose" (any case, typos allowed)."""
    words = key.split()
    content = words[1:] if len(words) > 1 and words[0] in _ARTICLES else words
    if len(content) == 1:
        return "single"
    return "title" if all(w in _COMMON for w in words) else "loose"


class TitleLinker:
    """Finds catalogue titles in text. Built once per catalogue; `find` takes milliseconds.

    Args:
        titles: (item_id, title, year) triples; a year of None is read from a trailing
            "(1995)" in the title when there is one.
        priors: optional popularity per item id; among same-named films without a year in the
            text, the most popular wins (else the first given).
        fuzzy: look for small typos (edit distance 1 below 10 characters, 2 from 10 on).
    """

    def __init__(
        self,
        titles: Iterable[tuple[str, str, int | None]],
        *,
        priors: Mapping[str, float] | None = None,
        fuzzy: bool = True,
    ) -> None:
        self.fuzzy = fuzzy
        self._keys: dict[str, list[tuple[_Entry, float]]] = {}
        self._titles: dict[str, str] = {}
        self._years: dict[str, int | None] = {}
        priors = priors or {}
        for item_id, title, year in titles:
            item_id, title = str(item_id), str(title or "")
            if year is None and (m := _TRAILING_YEAR_RE.search(title)):
                year = int(m.group(1))
            key = normalize_title(title)
            if not key:
                continue
            self._titles[item_id] = title
            self._years[item_id] = year
            words = key.split()
            entry = _Entry(item_id, year, float(priors.get(item_id, 0.0)))
            self._add(key, entry, SCORE_EXACT)
            if len(words) > 1 and words[0] in _ARTICLES:
                self._add(" ".join(words[1:]), entry, SCORE_NO_ARTICLE)
            main, alternate = _split_alternate(title)
            head = re.split(r"\s*:\s*", main, maxsplit=1)[0]
            alias = normalize_title(head)
            if alias != key and _strictness(alias) != "single":
                self._add(alias, entry, SCORE_ALIAS)
            if alternate and not alternate.lower().startswith(("a.k.a", "aka ")):
                self._add(normalize_title(alternate), entry, SCORE_ALIAS)
        longest = max((len(k.split()) for k in self._keys), default=1)
        self._max_tokens = min(MAX_TITLE_TOKENS, longest)
        self._deleted: dict[str, list[str]] = {}
        if fuzzy:
            for key in self._keys:
                if len(key) >= FUZZY_MIN_CHARS and _strictness(key) != "title":
                    for d in _deletes(key) | {key}:
                        self._deleted.setdefault(d, []).append(key)
        logger.debug("title linker: %d titles, %d keys", len(self._titles), len(self._keys))

    def _add(self, key: str, entry: _Entry, score: float) -> None:
        bucket = self._keys.setdefault(key, [])
        if all(e.item_id != entry.item_id for e, _ in bucket):
            bucket.append((entry, score))

    def __len__(self) -> int:
        return len(self._titles)

    def title(self, item_id: str) -> str | None:
        """The catalogue title of an id (None if unknown)."""
        return self._titles.get(item_id)

    def year(self, item_id: str) -> int | None:
        """The release year of an id, when known."""
        return self._years.get(item_id)

    @property
    def max_year(self) -> int | None:
        """The latest release year in the catalogue ("recent" is relative to it)."""
        years = [y for y in self._years.values() if y]
        return max(years) if years else None

    def link(self, text: str) -> list[tuple[str, str, float]]:
        """(span_text, item_id, score) for every catalogue title found, in text order."""
        return [(ln.text, ln.item_id, ln.score) for ln in self.find(text) if ln.item_id]

    def find(self, text: str, *, unknown: bool = True) -> list[Link]:
        """Every title found in `text`, in order; with `unknown`, also title-like spans that
        match nothing (quoted text, "Capitalised Words (2019)") with `item_id=None`."""
        if len(text) > MAX_LINK_CHARS:
            logger.info("linking only the first %d of %d characters", MAX_LINK_CHARS, len(text))
            text = text[:MAX_LINK_CHARS]
        toks = [(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]
        norm = [_norm_token(t) for t, _, _ in toks]
        quoted = [(m.start(1), m.end(1)) for m in _QUOTED_RE.finditer(text)]
        found: list[tuple[float, int, int, Link]] = []  # (rank key, first, last token, link)
        for i in range(len(toks)):
            for n in range(min(self._max_tokens, len(toks) - i), 0, -1):
                key = " ".join(norm[i : i + n])
                start, end = toks[i][1], toks[i + n - 1][2]
                art = _ARTICLE_AFTER_RE.match(text, end)  # "Dark Knight, The"
                if art and self._exact(f"{art.group(1).lower()} {key}"):
                    key, end = f"{art.group(1).lower()} {key}", art.end()
                year, year_end = self._year_after(text, end)
                if i + n < len(norm) and _is_sequel_number(norm[i + n], key):
                    continue  # "Toy Story 2" is not "Toy Story"
                hit = self._exact(key)
                if hit is None and self._fuzzy_span(norm[i : i + n], key):
                    hit = self._fuzzy(key)
                if hit is None:
                    continue
                entries, score, matched = hit
                if not self._allowed(matched, text, toks, i, n, quoted, year, score):
                    continue
                item_id, dated = self._choose(entries, year)
                span_end = year_end if year is not None else end
                link = Link(text[start:span_end], item_id, score, start, span_end, year)
                # a span whose written year confirms a dated title beats a longer guess
                rank = len(key) * score + (YEAR_BONUS if dated else 0.0)
                if (
                    n > 1
                    and norm[i] in _ARTICLES
                    and toks[i][0].islower()
                    and toks[i + 1][0][:1].isupper()
                ):
                    rank -= len(norm[i]) + 1  # "all the Scream (1996) movies": "the" is not in it
                found.append((rank, i, i + n - 1, link))
        links = self._select(found)
        if unknown:
            links = self._with_unknown(text, links, quoted)
        return links

    # -- matching -------------------------------------------------------------------------

    def _exact(self, key: str) -> tuple[list[_Entry], float, str] | None:
        bucket = self._keys.get(key)
        if not bucket:
            return None
        best = max(s for _, s in bucket)
        return [e for e, s in bucket if s == best], best, key

    def _fuzzy_span(self, words: Sequence[str], key: str) -> bool:
        return (
            self.fuzzy
            and len(key) >= FUZZY_MIN_CHARS
            and words[0] not in _COMMON
            and words[-1] not in _COMMON
            and not key.isdigit()
        )

    def _fuzzy(self, key: str) -> tuple[list[_Entry], float, str] | None:
        proposals: set[str] = set()
        for d in _deletes(key) | {key}:
            proposals.update(self._deleted.get(d, ()))
        best: tuple[float, str] | None = None
        for cand in sorted(proposals):
            limit = 1 if max(len(cand), len(key)) < 10 else 2
            dist = _distance(key, cand, limit)
            if dist > limit:
                continue
            score = 1.0 - dist / max(len(cand), len(key))
            if score >= MIN_SCORE and (best is None or score > best[0]):
                best = (score, cand)
        if best is None:
            return None
        hit = self._exact(best[1])
        assert hit is not None
        return hit[0], round(best[0] * hit[1], 4), best[1]

    @staticmethod
    def _allowed(
        key: str,
        text: str,
        toks: Sequence[tuple[str, int, int]],
        i: int,
        n: int,
        quoted: Sequence[tuple[int, int]],
        year: int | None,
        score: float,
    ) -> bool:
        """Whether a span may stand for the catalogue key `key` (see `_strictness`)."""
        strict = _strictness(key)
        if strict == "loose" or year is not None:
            return True
        start, end = toks[i][1], toks[i + n - 1][2]
        if any(qs <= start and end <= qe for qs, qe in quoted):
            return True
        if strict == "single" and key.split()[-1] in _COMMON:
            return False  # "It", "Up", "Yes": only quoted or with a year
        words = [t for t, _, _ in toks[i : i + n]]
        capital = words[0][:1].isupper() and all(
            w[:1].isupper() or w[:1].isdigit() or len(w) <= 3 for w in words
        )
        sentence_start = start == 0 or bool(_SENTENCE_END_RE.search(text[:start]))
        if strict == "title":
            return capital and (len(words) > 1 or not sentence_start)
        # one content word: a standalone Capitalised word away from a sentence start ...
        if capital:
            prev = toks[i - 1] if i > 0 else None
            prev_cap = (
                prev is not None
                and prev[0][:1].isupper()
                and prev[0] != "I"
                and not text[prev[2] : start].strip()  # "Amy Adams": part of a longer name
                and not (prev[1] == 0 or _SENTENCE_END_RE.search(text[: prev[1]]))
            )
            nxt = toks[i + n] if i + n < len(toks) else None
            next_cap = (
                nxt is not None
                and nxt[0][:1].isupper()
                and nxt[0] != "I"
                and not text[end : nxt[1]].strip()
            )
            return (not sentence_start or ALLOW_SENTENCE_START) and not prev_cap and not next_cap
        # ... or lowercase, exact, long and uncommon, right after "seen", "loved", "like" ...
        return (
            score >= SCORE_NO_ARTICLE
            and i > 0
            and _norm_token(toks[i - 1][0]) in _CUES
            and len(key.split()[-1]) >= 5
            and key.split()[-1] not in _COMMON
            and (i + n >= len(toks) or _norm_token(toks[i + n][0]) not in _GENRE_NOUNS)
        )

    @staticmethod
    def _year_after(text: str, end: int) -> tuple[int | None, int]:
        m = _YEAR_AFTER_RE.match(text, end)
        if m:
            return int(m.group(1) or m.group(2)), m.end()
        return None, end

    def _choose(self, entries: Sequence[_Entry], year: int | None) -> tuple[str | None, bool]:
        """The id among same-named entries, and whether a written year confirmed it. A year
        that matches none of the entries with a known year means a film not in the catalogue."""
        if year is not None:
            same = [e for e in entries if e.year is not None and abs(e.year - year) <= 1]
            if same:
                return min(same, key=lambda e: abs((e.year or 0) - year)).item_id, True
            undated = [e for e in entries if e.year is None]
            if not undated:
                return None, False
            entries = undated
        return max(entries, key=lambda e: e.prior).item_id, False

    @staticmethod
    def _select(found: list[tuple[float, int, int, Link]]) -> list[Link]:
        """Non-overlapping spans, the longest well-scored first."""
        taken: set[int] = set()
        chosen: list[Link] = []
        for _, first, last, link in sorted(found, key=lambda f: (-f[0], f[1])):
            if any(t in taken for t in range(first, last + 1)):
                continue
            if chosen and any(c.start < link.end and link.start < c.end for c in chosen):
                continue
            taken.update(range(first, last + 1))
            chosen.append(link)
        return sorted(chosen, key=lambda ln: ln.start)

    @staticmethod
    def _with_unknown(
        text: str, links: list[Link], quoted: Sequence[tuple[int, int]]
    ) -> list[Link]:
        spans: list[tuple[int, int, int | None]] = [(s, e, None) for s, e in quoted]
        for m in _YEAR_PAREN_RE.finditer(text):
            if (start := _title_start(text, m.start())) is not None:
                spans.append((start, m.end(), int(m.group(1))))
        out = list(links)
        for s, e, year in spans:
            if any(ln.start < e and s < ln.end for ln in out):
                continue
            span = text[s:e].strip()
            if span and len(_tokens(span)) <= MAX_TITLE_TOKENS:
                out.append(Link(span, None, 0.0, s, e, year))
        return sorted(out, key=lambda ln: ln.start)
