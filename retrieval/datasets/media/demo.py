"""`fusionrec demo`: the media demo store and the MovieLens-100K store, each with its config.

Why two stores: the media catalogue (pictures, music, sounds, four personas) and the
MovieLens films (text only, 943 users) answer different questions; mixed in one store, a
film's text vector would crowd a request for "a calm song". Each store gets its own
`fusionrec.toml`, so the app opens either one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from retrieval.config import RATING_SCALE, FusionrecConfig

logger = logging.getLogger(__name__)

MEDIA_CONFIG = "fusionrec.toml"  # DIR/fusionrec.toml: the media demo
MOVIELENS_DIR = "movielens"  # DIR/movielens/fusionrec.toml: the MovieLens-100K demo


def _toml_str(path: Path) -> str:
    return json.dumps(str(path))  # a TOML basic string is a JSON string for paths


# The media demo has four personas with disjoint histories and no community: collaborative
# sources (EASE, ItemKNN, transitions) and popularity have nothing to learn from, and after
# per-source min-max their noise would rank as high as a real signal (a persona's liked item
# became "popular" for everyone). So they are off; content and the request decide.
MEDIA_WEIGHTS = {
    "ease": 0.0,
    "itemknn": 0.0,
    "transitions": 0.0,
    "popularity": 0.0,
    "content-text": 1.0,
    "query": 1.0,
}


def media_config_text(root: Path) -> str:
    weights = "\n".join(f'"{k}" = {v}' for k, v in MEDIA_WEIGHTS.items())
    return (
        f"# fusionrec media demo (written by `fusionrec demo`)\n"
        f"[store]\npath = {_toml_str(root / 'store')}\n\n"
        f"[data]\ninteractions = {_toml_str(root / 'interactions.csv')}\n"
        f"items = {_toml_str(root / 'catalogue.jsonl')}\n"
        f"users_path = {_toml_str(root / 'users.jsonl')}\n\n"
        f"[hybrid]\n# the personas rate what they disliked 1 and liked 5: a dislike pushes the\n"
        f"# profile away (the default reads every rating as a like: MovieLens tuned it so)\n"
        f"content_like_threshold = {RATING_SCALE.like_min}\n\n"
        f"# no community to learn from: see MEDIA_WEIGHTS in retrieval/datasets/media/demo.py\n"
        f"[hybrid.weights]\n{weights}\n"
    )


def movielens_config_text(root: Path) -> str:
    ml = root / MOVIELENS_DIR
    return (
        f"# fusionrec MovieLens-100K demo (written by `fusionrec demo`)\n"
        f"[store]\npath = {_toml_str(ml / 'store')}\n\n"
        f'[data]\ninteractions = "ml-100k"\nusers_path = {_toml_str(ml / "users.jsonl")}\n'
    )


def _ingest(cfg_path: Path, items: Any, *, quiet: bool, catalogue: bool) -> Any:
    from retrieval.ingest import Encoders, ingest_catalogue, ingest_items
    from retrieval.store import VectorStore

    cfg = FusionrecConfig.from_toml(cfg_path)
    store = VectorStore.from_config(cfg)
    encoders = Encoders.from_config(cfg.encoders)
    limits = getattr(cfg, "ingest", None)
    kwargs: dict[str, Any] = {"show_progress": not quiet}
    if limits is not None:
        kwargs["limits"] = limits
    if catalogue:
        return ingest_catalogue(items, store, encoders, **kwargs)
    return ingest_items(items, store, encoders, **kwargs)


def build_demo(
    root: str | Path, *, movielens: bool = True, quiet: bool = False, cache: Path | None = None
) -> dict[str, Any]:
    """Build the media catalogue, ingest it (and MovieLens-100K), write both configs.

    Returns a summary with the config paths, counts and seconds per step.
    """
    from retrieval.datasets.media.build import build_media_catalogue

    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"seconds": {}}
    t = time.perf_counter()
    report = build_media_catalogue(root, cache=cache)
    out["catalogue"] = report.to_dict()
    out["seconds"]["catalogue"] = round(time.perf_counter() - t, 1)
    cfg_path = root / MEDIA_CONFIG
    cfg_path.write_text(media_config_text(root))
    t = time.perf_counter()
    media = _ingest(cfg_path, root / "catalogue.jsonl", quiet=quiet, catalogue=True)
    out["seconds"]["ingest_media"] = round(time.perf_counter() - t, 1)
    out["media_ingest"] = media.summary()
    out["media_config"] = str(cfg_path)
    if movielens:
        from retrieval.datasets.movielens import load_movielens_items

        ml_cfg = root / MOVIELENS_DIR / MEDIA_CONFIG
        ml_cfg.parent.mkdir(parents=True, exist_ok=True)
        ml_cfg.write_text(movielens_config_text(root))
        t = time.perf_counter()
        films = _ingest(ml_cfg, load_movielens_items(), quiet=quiet, catalogue=False)
        out["seconds"]["ingest_movielens"] = round(time.perf_counter() - t, 1)
        out["movielens_ingest"] = films.summary()
        out["movielens_config"] = str(ml_cfg)
    (root / "demo-report.json").write_text(json.dumps(out, indent=2))
    return out
