"""Read one chat message by rules: how the speaker feels about each title, and what they ask for.

Rules only where they are reliable; what they cannot decide is left as None for the LLM
(`agent.chat.state` asks it through token probabilities). Everything here is pure string
work on one message, so it is fast (about a millisecond) and testable line by line.

- **Sentiment per mention.** The message is cut into clauses (sentences, then "but",
  "although", ...). A mention takes the nearest cue before it in its clause ("I loved Heat and
  hated Titanic"), else the first after it ("Heat was great"). Negation within three words
  flips a like/dislike cue ("didn't like"); "haven't seen", "never watched" give not_seen; a
  question ("Have you seen Heat?") gives asked. A clause with only "not X" after a clause
  with a cue takes the opposite ("I loved Heat but not Titanic").
- **The request.** Kinds ("to listen to" -> audio, "a photo" -> image, "a film" -> text),
  genres, moods (also from comparatives: "funnier" -> funny), attributes ("for kids"), era
  ("from the 80s", "before 1990", "older", "recent"), people ("with Tom Hanks"), "like X but Y"
  anchors, and exclusions ("not that one", "no horror", "nothing with Jim Carrey") are read
  from the message with the linked titles masked, so "Scary Movie" is not a mood.
- **References.** "the first", "the second one", "#2", "that one", "it" are returned as
  `Ref`s with a role (like / exclude / sentiment); `agent.chat.state` resolves them against
  the conversation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.chat.linking import Link

__all__ = ["Ref", "TurnParse", "clause_sentiments", "parse_turn", "request_words"]

SENTIMENTS = ("liked", "disliked", "not_seen", "asked", "neutral")
MAX_BUT_CHARS = 80  # the "but Y" of "like X but Y", cut
MAX_TERM_WORDS = 4  # longest free-text exclusion kept ("nothing with Jim Carrey")
ERA_MIN, ERA_MAX = 1870, 2100  # open ends of an era range
RECENT_YEARS = 5  # "recent": the last N years of the catalogue
DEFAULT_OLD_BEFORE = 2000  # "older" with nothing to compare against: before this year

_NEG = r"(?:not|n't|never|no|hardly|barely)"
_NOT_SEEN = re.compile(
    r"\b(?:(?:have|has|had|did|do)(?:n't| not)\s+(?:\w+\s+)?(?:seen|watched|saw|see|watch)"
    r"|(?:never|not)\s+(?:\w+\s+)?(?:seen|watched|saw|heard of)|not yet|yet to (?:see|watch)"
    r"|(?:check|try)\s+(?:it|that|this|them|those|\w+)?\s*out|on my (?:watch)?list"
    r"|(?:need|have|want|going|gonna|will|'ll|should)\s+(?:to\s+)?(?:go\s+)?(?:see|watch)"
    r"|sounds? (?:good|great|interesting|fun|cool|awesome|promising)|add (?:it|that|them) to"
    r"|looking forward to)\b",
    re.I,
)
_ASKED = re.compile(
    r"\b(?:have|did|do|ever)\s+(?:you|u|ya)\s+(?:\w+\s+)?(?:seen|see|watched|watch|heard|know|"
    r"like|liked|tried)|\bwhat about\b|\bhow about\b|\bis\s+(?:it|that)\s+(?:good|any good)|"
    r"\bany good\b|\bheard of\b|\bwhat is\b|\bwhat's\b",
    re.I,
)
_LIKED = re.compile(
    r"\b(?:lov(?:e|ed|es|ing)|liked|likes|(?:i|we|really|also|do|still|totally)\s+like|"
    r"(?<=n't )like|(?<=not )like|(?<=never )like|"
    r"enjoy(?:ed|s)?|ador(?:e|ed)|favou?rites?|fan of|into|great|awesome|amazing|excellent|"
    r"fantastic|brilliant|masterpiece|good|best|fun|funny|hilarious|beautiful|wonderful|"
    r"incredible|perfect|cool|classic|obsessed|can't get enough)\b",
    re.I,
)
_DISLIKED = re.compile(
    r"\b(?:hat(?:e|ed|es)|dislik(?:e|ed|es)|boring|bored|terrible|awful|horrible|bad|worst|"
    r"overrated|stupid|suck(?:ed|s)?|meh|disappoint(?:ing|ed)|(?:can't|couldn't|cannot) stand|"
    r"not for me|not my thing|fell asleep|annoying|waste|dumb|lame|too (?:long|slow|scary))\b",
    re.I,
)
_NEGATION_BEFORE = re.compile(
    r"(?:\b(?:not|never|no|hardly|barely)\b|n't\b)(?:\W+\w+){0,2}\W*$", re.I
)
# a clause that opens like a question is one, even without "?" ("Have you seen Jumanji (2017)")
_QUESTION_START = re.compile(
    r"\W*(?:(?:have|did|do|ever)\s+(?:you|u|ya)\b|what about\b|how about\b)", re.I
)
_CLAUSE_SPLIT = re.compile(r"[.!?;\n]+|\b(?:but|however|although|though|whereas|except)\b", re.I)
_LIKE_ANCHOR = re.compile(
    r"(?:(?<!\bi )(?<!\bwe )(?<!\byou )(?<!\bwould )(?<!'d )(?<!n't )(?<!not )(?<!\bdo )"
    r"(?<!never )\blike|similar to|"
    r"in the (?:style|vein|spirit) of|along the lines of|reminds? me of|same as|the likes of)"
    r"\s+(?:the\s+movie\s+|the\s+film\s+)?$",
    re.I,
)
_BUT = re.compile(r"\bbut\s+(?:more\s+|a\s+bit\s+|a\s+little\s+|less\s+)?([^.!?;,\n]{1,200})", re.I)

_KINDS = {
    "audio": r"listen(?:ing)?|songs?|music|tunes?|tracks?|melod(?:y|ies)|audio|podcasts?|"
    r"playlist|(?:a|some|the)\s+sounds?|sound effects?|sounds of|noises?|ambient|"
    r"(?<!\bit\s)(?<!\bthat\s)(?<!\bthis\s)(?<!\bwhich\s)(?<!\bwhat\s)sounds",  # "animal sounds"
    "image": r"pictures?|photos?|photographs?|images?|pics?|drawings?|illustrations?|"
    r"paintings?|wallpapers?|stamps?|something to look at",
    "text": r"movies?|films?|books?|stories|articles?|something to read|to watch",
}
_GENRES = {
    "action": r"action",
    "adventure": r"adventures?",
    "animation": r"animat(?:ed|ion)|cartoons?|anime|pixar",
    "comedy": r"comed(?:y|ies)|comedic|rom-?coms?|stand-?up",
    "crime": r"crime|gangsters?|mob(?:ster)?s?|heists?|detectives?",
    "documentary": r"documentar(?:y|ies)|docs?",
    "drama": r"dramas?|dramatic",
    "fantasy": r"fantasy|fantasies|wizards?|dragons?",
    "film-noir": r"noir",
    "horror": r"horror|slashers?|zombies?|haunted",
    "musical": r"musicals?",
    "mystery": r"myster(?:y|ies)|whodunn?its?",
    "romance": r"romance|romantic|love stor(?:y|ies)|rom-?coms?",
    "sci-fi": r"sci-?fi|science fiction|scifi|sci fi",
    "thriller": r"thrillers?|suspense(?:ful)?",
    "war": r"war (?:movies?|films?)|world war|ww2|wwii|military",
    "western": r"westerns?|cowboys?",
}
_MOODS = {
    "calm": r"calm(?:ing|er)?|relax(?:ing|ed)?|peaceful|soothing|chill(?:ed|y)?|quiet(?:er)?|"
    r"gentle|mellow|serene|tranquil|soft|meditat\w*|unwind|sleepy",
    "happy": r"happy|happier|cheerful|joyful|upbeat|feel-?good|uplifting|cheery|sunny|lighter",
    "energetic": r"energetic|upbeat|lively|pump(?:ed|ing)?|workout|danceable|high-energy|"
    r"fast-paced|intense",
    "exciting": r"exciting|thrilling|action-packed|adrenaline|gripping",
    "sad": r"sad|sadder|melanchol\w*|tear-?jerkers?|depressing",
    "tender": r"tender|sweet|heart-?warming|touching",
    "scary": r"scary|scarier|creepy|creepier|spooky|frightening|terrifying|eerie|chilling",
    "funny": r"funny|funnier|hilarious|laugh\w*|humou?r(?:ous)?|light-?hearted",
    "dark": r"dark|darker|gritty|grittier|bleak|grim",
    "nostalgic": r"nostalgic|nostalgia|retro",
    "epic": r"epic|majestic|heroic",
    "romantic": r"romantic",
    "thoughtful": r"thought-?provoking|thoughtful|mind-?bending|cerebral|clever|smart",
}
_ATTRIBUTES = {
    "for kids": r"for (?:the )?(?:kids|children|little ones|my (?:son|daughter|kids))|"
    r"kid-?friendly|family(?:-friendly)?|for the family|children's",
    "for adults": r"for adults|mature|grown-?up",
    "short": r"short (?:movies?|films?|songs?|clips?|sounds?|ones?)|shorter|quick",
    "long": r"long (?:movies?|films?|songs?|tracks?|ones?)|longer",
    "true story": r"true stor(?:y|ies)|based on (?:a )?true|real events|biopics?",
    "black and white": r"black and white|black-and-white",
    "foreign": r"foreign|subtitled|subtitles|non-english",
    "acclaimed": r"award-?winning|oscars?|acclaimed",
    "popular": r"popular|well-?known|blockbusters?|mainstream",
    "lesser known": r"obscure|hidden gems?|underrated|lesser-? known|indie",
    "instrumental": r"instrumental|no vocals|without vocals",
    "vocals": r"with vocals|singing|sung",
    "slow": r"slow|slower",
    "fast": r"fast|faster",
    "animals": r"animals?",
    "superhero": r"superhero(?:es)?|marvel|dc comics",
    "older": r"older|old|classics?|vintage|oldies|old-?school",
    "recent": r"recent|newer|latest|modern|new releases?|this year|last year",
}
_DECADE_WORDS = {"fifties": 1950, "sixties": 1960, "seventies": 1970, "eighties": 1980}
_DECADE_WORDS.update({"nineties": 1990, "twenties": 1920, "thirties": 1930, "forties": 1940})
_DECADE = re.compile(r"\b(?:the\s+)?(?:'|’)?(19|20)?(\d)0(?:'|’)?s\b", re.I)
_DECADE_WORD = re.compile(r"\b(" + "|".join(_DECADE_WORDS) + r")\b", re.I)
_BEFORE = re.compile(
    r"\b(?:before|pre-?|older than|earlier than|until|up to)\s*((?:18|19|20)\d\d)\b", re.I
)
_AFTER = re.compile(
    r"\b(?:after|since|post-?|newer than|later than|from)\s*((?:18|19|20)\d\d)\b", re.I
)
_BETWEEN = re.compile(
    r"\b(?:between|from)\s+((?:18|19|20)\d\d)\s*(?:and|to|-|–)\s*((?:18|19|20)\d\d)\b", re.I
)
_IN_YEAR = re.compile(r"\b(?:in|made in|released in|year)\s+((?:18|19|20)\d\d)\b", re.I)
_PEOPLE = re.compile(
    r"\b(?:with|starring|by|directed by|featuring|from director|actor|actress)\s+"
    r"((?:[A-Z][\w'’.-]+)(?:\s+(?:de |van |von |del )?[A-Z][\w'’.-]+){0,3})"
    r"|((?:[A-Z][a-z'’.-]+\s+){1,2}[A-Z][a-z'’.-]+)(?:'s)?\s+(?:movies|films|songs|music)\b"
)
_NOT_PEOPLE = frozenset("I The A An My Your This That It Something Anything Me".split())
_EXCLUDE = re.compile(
    r"\b(?P<kw>not (?:a |really )?(?:big |huge )?fan of|not (?:really )?into|no more|none of|"
    r"other than|anything but|(?:do not|don't|dont|doesn't) (?:want|like|need)(?: any)?|"
    r"nothing|without|except|exclude|skip|avoid|less|isn't|aren't|wasn't|weren't|not|no)\s+"
    r"(?:with\s+|that\s+has\s+|too\s+|so\s+|any\s+|more\s+|another\s+|like\s+|by\s+|"
    r"starring\s+|featuring\s+)?(?P<target>[^.!?;,\n]{1,60})",
    re.I,
)
_NOT_EXCLUSIONS = re.compile(
    r"^(?:bad|sure|really|yet|seen|watched|saw|problem|thanks|thank|worries|way|idea|much|"
    r"one\b(?!\s)|a fan|a big|for me|my thing|that much|so much|too bad|at all|quite|"
    r"exactly|only|just|i|me|you|it's|a lot)\b",
    re.I,
)
_LINK_GAP = re.compile(r"[\s,]*(?:(?:with|like|by|starring|any|more|another)\s+)?", re.I)
_POINTER = r"(?:that one|this one|that|this|it|those|them|those ones|either|both)"
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
_ORDINALS.update({"former": 1, "latter": -1})
_REF_RE = re.compile(
    r"#\s*(\d+)|\bnumber\s+(\d+)\b|\bthe\s+(first|second|third|fourth|fifth|last|former|latter)"
    r"(?:\s+one)?\b|\b(that one|this one|those ones|that|this|it|those|them|either|both)\b",
    re.I,
)
_REFINES = re.compile(
    r"\b(?:also|too|as well|still|again|more|less|another|else|similar|same|instead of|"
    r"\w+(?:ier|er) (?:one|ones)|funnier|scarier|darker|lighter|calmer|happier|sadder|"
    r"shorter|longer|slower|faster|louder|quieter|softer|gentler|newer|older)\b",
    re.I,
)
_RESET = re.compile(
    r"\b(?:start over|forget (?:all )?(?:that|it|about it)|never ?mind|new search|instead)\b",
    re.I,
)
_FILLER = frozenset(
    """
    i me my we you your a an the and or but so to of in on for with at by from is are was were
    be been am it its it's this that these those some something anything any one ones movie
    movies film films show please can could would should will do does did have has had get
    give want need looking look find recommend recommendation recommendations suggest
    suggestion suggestions like love loved liked hate hated more other another also just
    really very thanks thank hi hello hey ok okay yes no not too what how about maybe
    first second third fourth fifth last former latter number why explain reason show tell
    while listen listening hear watch watching see nothing
    """.split()
)


def _alt(patterns: dict[str, str]) -> dict[str, re.Pattern[str]]:
    return {k: re.compile(rf"\b(?:{v})\b", re.I) for k, v in patterns.items()}


_KIND_RES, _GENRE_RES, _MOOD_RES, _ATTR_RES = map(_alt, (_KINDS, _GENRES, _MOODS, _ATTRIBUTES))
_NOT_AUDIO = re.compile(
    r"\bsounds?\s+(?:good|great|interesting|like|fun|nice|cool|awesome)\b", re.I
)


@dataclass(frozen=True)
class Ref:
    """A pointer in the message that the conversation must resolve.

    Attributes:
        ordinal: 1-based position ("the first", -1 = last), or None for a pronoun.
        shown: True for "#2" / "number 2": an index into the list last shown.
        pointer: the pronoun ("that one", "it") when there is no ordinal.
        role: "like" (anchor of "like the first"), "exclude" ("not that one") or
            "sentiment" (a feeling about it, in `sentiment`).
        sentiment: for role "sentiment", the feeling; else None.
    """

    ordinal: int | None
    shown: bool
    pointer: str | None
    role: str
    sentiment: str | None = None


@dataclass
class TurnParse:
    """What one message says, before it is merged into the conversation state."""

    sentiments: list[str | None] = field(default_factory=list)  # per link; None = unsure
    like_links: list[int] = field(default_factory=list)  # indices of links used as "like X"
    exclude_links: list[int] = field(default_factory=list)  # indices of links excluded
    refs: list[Ref] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    moods: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    era: tuple[int, int] | None = None
    era_relative: str | None = None  # "older" | "recent": resolved against an anchor's year
    people: list[str] = field(default_factory=list)
    but: str | None = None
    exclude_terms: list[str] = field(default_factory=list)
    reset: bool = False
    has_words: bool = False  # words beyond titles and filler: worth an LLM re-rank
    words: str = ""  # content words asked for (titles, filler and exclusions removed)
    refines: bool = False  # builds on the request so far ("but funnier", "also", "older")


def _mask(text: str, links: Sequence[Link]) -> str:
    """The text with every title span replaced by spaces (offsets kept)."""
    chars = list(text)
    for ln in links:
        for k in range(max(0, ln.start), min(len(chars), ln.end)):
            chars[k] = " "
    return "".join(chars)


def _clauses(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_question) of each clause; a question mark ends its sentence's clauses."""
    out: list[tuple[int, int, bool]] = []
    start = 0
    for m in _CLAUSE_SPLIT.finditer(text):
        out.append((start, m.start(), "?" in m.group()))
        start = m.end()
    out.append((start, len(text), False))
    # a question mark makes every clause of its sentence a question
    sentence_q = False
    for k in range(len(out) - 1, -1, -1):
        s, e, q = out[k]
        boundary = k + 1 < len(out) and bool(re.search(r"[.!;\n]", text[e : out[k + 1][0]]))
        if boundary:
            sentence_q = False
        sentence_q = sentence_q or q
        out[k] = (s, e, sentence_q or bool(_QUESTION_START.match(text, s)))
    return [c for c in out if text[c[0] : c[1]].strip()]


def _cues(text: str, start: int, end: int, question: bool) -> list[tuple[int, str]]:
    """(offset, sentiment) of every sentiment cue in text[start:end]."""
    clause = text[start:end]
    taken: list[tuple[int, int]] = []
    cues: list[tuple[int, str]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    for m in _NOT_SEEN.finditer(clause):
        taken.append(m.span())
        cues.append((start + m.start(), "not_seen"))
    if question:
        for m in _ASKED.finditer(clause):
            if free(*m.span()):
                taken.append(m.span())
                cues.append((start + m.start(), "asked"))
    for regex, label, flipped in ((_DISLIKED, "disliked", "liked"), (_LIKED, "liked", "disliked")):
        for m in regex.finditer(clause):
            if not free(*m.span()):
                continue
            taken.append(m.span())
            negated = bool(_NEGATION_BEFORE.search(clause[: m.start()]))
            cues.append((start + m.start(), flipped if negated else label))
    return sorted(cues)


def clause_sentiments(text: str, links: Sequence[Link]) -> list[str | None]:
    """Rule sentiment of each link (None where no rule applies)."""
    masked = _mask(text, links)
    out: list[str | None] = [None] * len(links)
    previous: str | None = None
    for s, e, question in _clauses(masked):
        cues = _cues(masked, s, e, question)
        inside = [k for k, ln in enumerate(links) if s <= ln.start < e]
        for k in inside:
            before = [c for c in cues if c[0] < links[k].start]
            after = [c for c in cues if c[0] >= links[k].end]
            if before:
                out[k] = before[-1][1]
            elif after:
                out[k] = after[0][1]
            elif re.search(rf"\b{_NEG}\b", masked[s : links[k].start], re.I) and previous in (
                "liked",
                "disliked",
            ):
                out[k] = "disliked" if previous == "liked" else "liked"  # "...but not Titanic"
            elif question:
                out[k] = "asked"
            elif previous is not None and not masked[s : links[k].start].strip(" ,&-"):
                out[k] = previous  # "I loved Heat. Ronin too"
        if cues:
            previous = cues[-1][1]
        elif inside and out[inside[-1]] is not None:
            previous = out[inside[-1]]
    return out


def _find(regexes: dict[str, re.Pattern[str]], text: str) -> list[str]:
    return [k for k, rx in regexes.items() if rx.search(text)]


def _terms(regexes: dict[str, re.Pattern[str]], text: str) -> list[str]:
    """Excluded genres/moods: the canonical name when the word is a form of it ("comedies" ->
    comedy, "scarier" -> scary), else the word itself ("zombies" rules out zombies, not all
    horror)."""
    out: list[str] = []
    for name, rx in regexes.items():
        for m in rx.finditer(text):
            word = m.group(0).lower()
            out.append(name if word[:4] == name[:4] else word)
    return list(dict.fromkeys(out))


def _era(text: str, decade_context: str) -> tuple[tuple[int, int] | None, str | None]:
    if m := _BETWEEN.search(text):
        a, b = sorted((int(m.group(1)), int(m.group(2))))
        return (a, b), None
    if m := _BEFORE.search(text):
        return (ERA_MIN, int(m.group(1)) - 1), None
    if m := _AFTER.search(text):
        return (int(m.group(1)), ERA_MAX), None
    if m := _IN_YEAR.search(text):
        return (int(m.group(1)), int(m.group(1))), None
    if m := _DECADE.search(decade_context):
        century = int(m.group(1) or (19 if int(m.group(2)) >= 3 else 20)) * 100
        lo = century + int(m.group(2)) * 10
        return (lo, lo + 9), None
    if m := _DECADE_WORD.search(text):
        lo = _DECADE_WORDS[m.group(1).lower()]
        return (lo, lo + 9), None
    if _ATTR_RES["older"].search(text):
        return None, "older"
    if _ATTR_RES["recent"].search(text):
        return None, "recent"
    return None, None


def _ref_at(m: re.Match[str], role: str, sentiment: str | None = None) -> Ref:
    if m.group(1) or m.group(2):
        return Ref(int(m.group(1) or m.group(2)), True, None, role, sentiment)
    if m.group(3):
        return Ref(_ORDINALS[m.group(3).lower()], False, None, role, sentiment)
    return Ref(None, False, m.group(4).lower(), role, sentiment)


def request_words(text: str) -> list[str]:
    """Content words of a request (filler, pronouns and sentiment verbs removed)."""
    words = re.findall(r"[^\W\d_][\w'’-]*", text.lower())
    return [w for w in words if w not in _FILLER and len(w) > 1]


def parse_turn(text: str, links: Sequence[Link]) -> TurnParse:
    """Everything the rules can read from one user message whose titles are `links`.

    Args:
        text: the message (already cut to a bounded length by the caller).
        links: titles found in it (`TitleLinker.find`), item_id None for unknown ones.
    """
    out = TurnParse(sentiments=clause_sentiments(text, links))
    masked = _mask(text, links)

    # exclusions first: what they cover is not read as a wish ("no horror" is not horror)
    excluded = list(masked)
    for m in _EXCLUDE.finditer(masked):
        target = m.group("target")
        kw_end = m.end("kw")
        hit_links = [
            k
            for k, ln in enumerate(links)
            if kw_end <= ln.start <= m.end() and _LINK_GAP.fullmatch(masked[kw_end : ln.start])
        ]
        if hit_links:  # "not Titanic", "nothing like Heat"
            out.exclude_links.extend(hit_links[:1])
            continue
        if _NOT_EXCLUSIONS.match(target.strip()):
            continue
        # a pointer ends its phrase ("not that one", "nothing like that"); "nothing that
        # flies" is a description, not a pointer
        if pm := re.match(
            rf"\s*{_POINTER}\b(?=\s*(?:$|[^\w\s]|(?:one|ones|please)\b))", target, re.I
        ):
            r = _REF_RE.match(target, pm.start() + (len(pm.group()) - len(pm.group().lstrip())))
            if r:
                out.refs.append(_ref_at(r, "exclude"))
            continue
        words = target.strip()
        kinds = _terms(_GENRE_RES, words) + _terms(_MOOD_RES, words)
        if kinds:
            terms = kinds
        else:
            tokens = re.sub(r"^(?:that|which|who)\s+", "", words, flags=re.I).split()
            if len(tokens) > MAX_TERM_WORDS or not request_words(words):
                continue
            terms = [" ".join(tokens)]
        for term in terms:
            if term not in out.exclude_terms:
                out.exclude_terms.append(term)
        for k in range(m.start("target"), m.end("target")):
            excluded[k] = " "
    positive = "".join(excluded)

    kinds_text = _NOT_AUDIO.sub(" ", positive)
    out.kinds = _find(_KIND_RES, kinds_text)
    out.genres = [g for g in _find(_GENRE_RES, positive) if g not in out.exclude_terms]
    out.moods = [g for g in _find(_MOOD_RES, positive) if g not in out.exclude_terms]
    if "romantic" in out.moods and "romance" in out.genres:
        out.moods.remove("romantic")
    attrs = _find(_ATTR_RES, positive)
    out.era, out.era_relative = _era(positive, re.sub(r"\(\s*\d{4}\s*\)", " ", positive))
    out.attributes = [a for a in attrs if a not in ("older", "recent")]
    for m in _PEOPLE.finditer(positive):
        name = (m.group(1) or m.group(2) or "").strip(" .")
        if name and name.split()[0] not in _NOT_PEOPLE and name not in out.people:
            out.people.append(name)

    # "like X": anchors among the links, and "like the first" / "like that one" refs
    for k, ln in enumerate(links):
        if k in out.exclude_links:
            continue
        if _LIKE_ANCHOR.search(text[max(0, ln.start - 40) : ln.start]):
            out.like_links.append(k)
            if out.sentiments[k] != "disliked":  # "want to watch something like Heat"
                out.sentiments[k] = "liked"
    for m in _REF_RE.finditer(masked):
        before = masked[max(0, m.start() - 40) : m.start()]
        if _LIKE_ANCHOR.search(before) and (
            m.group(1)
            or m.group(2)
            or m.group(3)
            or (m.group(4) and m.group(4).lower() in ("that one", "this one", "that", "it"))
        ):
            out.refs.append(_ref_at(m, "like"))
    if (out.like_links or any(r.role == "like" for r in out.refs)) and (m := _BUT.search(masked)):
        but = " ".join(m.group(1).split())[:MAX_BUT_CHARS]
        out.but = but or None

    # feelings about a pointer with no title in its clause: "I haven't seen it", "loved #2"
    for s, e, question in _clauses(masked):
        if any(s <= ln.start < e for ln in links):
            continue
        cues = _cues(masked, s, e, question)
        if not cues:
            continue
        for m in _REF_RE.finditer(masked, s, e):
            if m.group(4) and m.group(4).lower() in ("that", "this") and not question:
                continue  # "that" alone is too often not a pointer ("I think that ...")
            if re.match(r"\s+if\b", masked[m.end() : m.end() + 4], re.I):
                continue  # "I'd love it if ..." is a wish, not a feeling about an item
            if any(
                r.role == "exclude" and r.pointer == (m.group(4) or "").lower() for r in out.refs
            ):
                continue
            before = [c for c in cues if c[0] <= m.start()]
            sentiment = (before[-1] if before else cues[0])[1]
            if sentiment == "asked":
                continue
            earlier = [k for k, ln in enumerate(links) if ln.end <= m.start() and ln.item_id]
            if m.group(4) and earlier:  # "... The Circle (2017). It was awful": that title
                if out.sentiments[earlier[-1]] is None:
                    out.sentiments[earlier[-1]] = sentiment
                break
            out.refs.append(_ref_at(m, "sentiment", sentiment))
            break

    out.refines = bool(
        out.refs or out.like_links or out.but or out.era_relative or _REFINES.search(masked)
    )
    out.words = " ".join(request_words(positive))
    out.reset = bool(_RESET.search(masked))
    out.has_words = bool(
        out.kinds
        or out.genres
        or out.moods
        or out.attributes
        or out.people
        or out.but
        or out.exclude_terms
        or out.era
        or out.era_relative
        or request_words(positive)
    )
    return out
