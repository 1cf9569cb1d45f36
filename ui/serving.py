"""Where the app may listen and what it may serve: bind checks, user ids, media paths."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from retrieval.errors import FusionrecError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".ogg", ".flac", ".m4a")
MAX_USER_ID_CHARS = 64  # free-text user ids are stored in the feedback log
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


# ---- binding -----------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool, has_auth: bool) -> None:
    """Refuse to listen beyond this machine unless asked twice: `--allow-remote` and a login.

    Raises:
        FusionrecError: `host` is not loopback and `allow_remote` is False, or no login is set.
    """
    if is_loopback(host):
        return
    if not allow_remote:
        raise FusionrecError(
            f"refusing to listen on {host!r}: it is reachable from other machines; "
            "pass --allow-remote as well (and set FUSIONREC_USER/FUSIONREC_PASSWORD)"
        )
    if not has_auth:
        raise FusionrecError(
            f"refusing to listen on {host!r} without a login: set FUSIONREC_USER and "
            "FUSIONREC_PASSWORD (everyone who can reach the port could read and change feedback)"
        )


def clean_user_id(text: Any) -> str:
    """A user id from the picker: stripped, printable, bounded; empty is refused.

    Raises:
        FusionrecError: empty, too long or with control characters.
    """
    uid = str(text or "").strip()
    if not uid:
        raise FusionrecError("pick a user from the list or type a new user id")
    if len(uid) > MAX_USER_ID_CHARS or not uid.isprintable():
        raise FusionrecError(f"a user id is at most {MAX_USER_ID_CHARS} printable characters")
    return uid


# ---- media -------------------------------------------------------------------------------------
def media_files(
    items: Iterable[Any],
    *,
    under: Path | None = None,
    sources: Mapping[str, str] | None = None,
    roots: Iterable[Path] = (),
) -> list[str]:
    """Absolute paths of local image/audio files the cards may show (gradio `allowed_paths`).

    Exact files, not folders, so the server never serves a neighbour of a media file.
    With `under`, only files inside that folder count (uploaded catalogues). With `sources`
    (item id -> the folder its catalogue was ingested from, `retrieval.ingest.item_sources`),
    a file counts only inside its own item's catalogue folder or one of `roots` (folders the
    operator chose: the upload folder, `--media-dir`); so a catalogue row naming a file
    elsewhere on disk never makes that file servable, before or after a restart.
    """
    roots = [Path(r) for r in roots]
    out: set[str] = set()
    for item in items:
        allowed = list(roots)
        if sources is not None and sources.get(item.id):
            allowed.append(Path(sources[item.id]))
        for path, kinds in ((item.image, IMAGE_SUFFIXES), (item.audio, AUDIO_SUFFIXES)):
            if not path or "://" in path:
                continue
            p = Path(path)
            if not (p.suffix.lower() in kinds and p.is_file()):
                continue
            if under is not None and not inside(under, p):
                continue
            if sources is not None and not any(inside(r, p) for r in allowed):
                continue
            out.add(str(p.resolve()))
    return sorted(out)


def allowed_media(
    agent: Any, *, upload_dir: Path, media_dirs: Iterable[str | Path] = ()
) -> set[str]:
    """The media files the app may serve for `agent`'s catalogue (see `media_files`)."""
    from retrieval.ingest import item_sources

    roots = [Path(upload_dir).expanduser(), *(Path(d).expanduser() for d in media_dirs)]
    return set(media_files(agent.items.values(), sources=item_sources(agent.store), roots=roots))


def servable(path: str | None, allowed: set[str]) -> str | None:
    """`path` when the app may serve it (a local file in the allow-list), else None."""
    if not path or "://" in path:
        return None  # remote media is never fetched: the app is offline
    resolved = str(Path(path).resolve())
    return resolved if resolved in allowed else None


def inside(base: Path, candidate: Path) -> bool:
    """True when `candidate` resolves to `base` or below it (symlinks followed)."""
    try:
        candidate.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True
