"""Where the app may listen and what it may serve: bind checks, user ids, media paths."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
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
def media_files(items: Iterable[Any], *, under: Path | None = None) -> list[str]:
    """Absolute paths of local image/audio files the cards may show (gradio `allowed_paths`).

    Exact files, not folders, so the server never serves a neighbour of a media file.
    With `under`, only files inside that folder count (uploaded catalogues).
    """
    out: set[str] = set()
    for item in items:
        for path, kinds in ((item.image, IMAGE_SUFFIXES), (item.audio, AUDIO_SUFFIXES)):
            if not path or "://" in path:
                continue
            p = Path(path)
            if p.suffix.lower() in kinds and p.is_file() and (under is None or inside(under, p)):
                out.add(str(p.resolve()))
    return sorted(out)


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
