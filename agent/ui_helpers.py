"""Pure helpers behind the Gradio app: safe uploads, host checks, card and evidence text.

Kept free of gradio so they are unit-tested without a server, and so `app.py` stays a
thin layout file. Everything here calls only the public agent API.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shutil
import stat
import time
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from retrieval.errors import CatalogueError, FusionrecError

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # one uploaded file (catalogue or zip), also gradio's limit
MAX_UNZIPPED_BYTES = 500 * 1024 * 1024  # all members of one zip together (zip bombs)
MAX_ZIP_MEMBERS = 5_000  # files in one zip
CATALOGUE_SUFFIXES = (".jsonl", ".csv", ".parquet")  # what `ingest` reads
UPLOAD_SUFFIXES = (*CATALOGUE_SUFFIXES, ".zip")  # a zip carries a catalogue plus its media
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".ogg", ".flac", ".m4a")
MAX_USER_ID_CHARS = 64  # free-text user ids are stored in the feedback log
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(CatalogueError):
    """An uploaded file is refused as a whole (name, size, type or archive layout)."""


CSS = """
.fr-card {border: 1px solid var(--border-color-primary); border-radius: 10px;
          padding: 8px !important;}
.fr-card img {object-fit: cover;}
.fr-card .fr-buttons button {min-width: 0; padding: 2px 6px;}
#fr-why {border: 2px solid var(--color-accent); border-radius: 10px;}
"""  # the app's few style rules: card frames, compact buttons, a highlighted Why panel


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


# ---- uploads -----------------------------------------------------------------------------------
def sanitize_filename(name: str, *, suffixes: Iterable[str] = UPLOAD_SUFFIXES) -> str:
    """The last path component of `name`, reduced to `[A-Za-z0-9._-]`, with an allowed suffix.

    Both `/` and `\\` count as separators, so `../../etc/passwd` and `C:\\x\\cat.csv` lose
    their folders. Hidden names, `..` and unknown suffixes are refused.

    Raises:
        UploadError: nothing usable is left, or the suffix is not one of `suffixes`.
    """
    raw = str(name or "").replace("\x00", "")
    base = PureWindowsPath(PurePosixPath(raw).name).name
    cleaned = _SAFE_CHARS.sub("_", base).strip("._ ")[:120]
    allowed = tuple(s.lower() for s in suffixes)
    if not cleaned or base.startswith(".") or cleaned in ("", ".", ".."):
        raise UploadError(f"unusable file name {name!r}")
    if not cleaned.lower().endswith(allowed):
        raise UploadError(f"{cleaned!r}: unsupported file type; upload one of {', '.join(allowed)}")
    return cleaned


def inside(base: Path, candidate: Path) -> bool:
    """True when `candidate` resolves to `base` or below it (symlinks followed)."""
    try:
        candidate.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def save_upload(
    src: str | Path,
    upload_dir: str | Path,
    *,
    name: str | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> Path:
    """Copy one uploaded file into a fresh folder under `upload_dir` and return the catalogue.

    A `.zip` is unpacked there (see `extract_zip`) and must hold exactly one catalogue file.
    Nothing is ever written outside `upload_dir`.

    Args:
        src: the file as received (gradio's temporary copy).
        upload_dir: the only folder uploads may be written to; created if missing.
        name: the name the user gave the file (default: `src`'s name); only its sanitised
            last component is used.
        max_bytes: larger files are refused before anything is copied.

    Raises:
        UploadError: bad name, too large, not a regular file, or a bad archive.
    """
    src = Path(src)
    safe = sanitize_filename(name if name is not None else src.name)
    try:
        st = src.stat()
    except OSError as e:
        raise UploadError(f"{safe}: the upload cannot be read ({e.strerror})") from e
    if not stat.S_ISREG(st.st_mode):
        raise UploadError(f"{safe}: not a regular file")
    if st.st_size > max_bytes:
        raise UploadError(
            f"{safe}: {st.st_size / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB limit"
        )
    root = Path(upload_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    dest = folder / safe
    if not inside(root, dest):  # cannot happen after sanitising; kept as the last line of defence
        raise UploadError(f"{safe}: refusing to write outside the upload folder")
    shutil.copyfile(src, dest)
    if not safe.lower().endswith(".zip"):
        return dest
    try:
        extract_zip(dest, folder / "files")
    finally:
        dest.unlink(missing_ok=True)
    found = sorted(
        p
        for p in (folder / "files").rglob("*")
        if p.is_file() and p.suffix.lower() in CATALOGUE_SUFFIXES
    )
    if len(found) != 1:
        names = ", ".join(p.name for p in found[:5]) or "none"
        raise UploadError(
            f"{safe}: a zip must hold exactly one catalogue "
            f"({', '.join(CATALOGUE_SUFFIXES)}); found {len(found)} ({names})"
        )
    return found[0]


def extract_zip(
    archive: str | Path,
    dest: str | Path,
    *,
    max_total: int = MAX_UNZIPPED_BYTES,
    max_members: int = MAX_ZIP_MEMBERS,
) -> list[Path]:
    """Unpack `archive` into `dest`, refusing any member that would land outside it.

    Absolute names, drive letters, `..` parts, symlinks and special files are refused
    (zip-slip), as are archives whose declared or actual size passes `max_total`.

    Raises:
        UploadError: on the first unsafe member, or when the archive is unreadable or too big.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise UploadError(f"{Path(archive).name}: not a readable zip file") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise UploadError(f"zip has {len(infos)} files; the limit is {max_members}")
        if sum(i.file_size for i in infos) > max_total:
            raise UploadError(f"zip unpacks to more than {max_total / 2**20:.0f} MB")
        written = 0
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            mode = info.external_attr >> 16
            if (
                name.startswith("/")
                or re.match(r"^[A-Za-z]:", name)
                or ".." in parts
                or stat.S_ISLNK(mode)
                or "\x00" in name
            ):
                raise UploadError(f"zip member {info.filename!r} points outside the upload folder")
            if info.is_dir():
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # no type bits = plain file
                raise UploadError(f"zip member {info.filename!r} is not a regular file")
            target = dest.joinpath(*parts)
            if not inside(dest, target):
                raise UploadError(f"zip member {info.filename!r} points outside the upload folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as fin, target.open("wb") as fout:
                while chunk := fin.read(1 << 20):
                    written += len(chunk)
                    if written > max_total:
                        raise UploadError(f"zip unpacks to more than {max_total / 2**20:.0f} MB")
                    fout.write(chunk)
            out.append(target)
    return out


def ingest_upload(
    agent: Any, file: str | None, upload_dir: Path, *, max_bytes: int, served: set[str]
) -> tuple[str, list[list[Any]], list[str]]:
    """Save one upload safely, ingest it, and allow its media (inside `upload_dir`) to be served.

    Returns:
        (summary markdown, per-row problem rows, media files newly added to `served`).
        A refused upload gives its reason as the summary, never an exception.
    """
    if not file:
        return (
            "Choose a catalogue file first (JSONL, CSV, Parquet, or a zip with its media).",
            [],
            [],
        )
    try:
        path = save_upload(file, upload_dir, name=Path(file).name, max_bytes=max_bytes)
        report = agent.ingest(path, show_progress=True)
    except FusionrecError as e:
        logger.warning("upload refused: %s", e)
        return f"**Refused:** {e}", [], []
    new = sorted(set(media_files(agent.items.values(), under=upload_dir)) - served)
    served.update(new)
    return report_markdown(report, path.name), report_rows(report), new


def report_markdown(report: Any, name: str) -> str:
    """One line saying what an ingest did; the per-row problems go to `report_rows`."""
    n = len(report.failed)
    tail = f" — {n} problem row(s) listed below" if n else ""
    return f"**{name}**: {report.summary()}{tail}."


def report_rows(report: Any) -> list[list[Any]]:
    """Per-row errors of an IngestReport as table rows: row, id, field, error."""
    return [
        [e.row if e.row is not None else "", e.id or "", e.field, e.error] for e in report.failed
    ]


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


# ---- cards and evidence ------------------------------------------------------------------------
def _md(text: Any) -> str:
    """Escape markdown control characters in catalogue text (titles can hold `*` or `_`)."""
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", str(text))


def card_markdown(rec: Any, *, max_tags: int = 5) -> str:
    """Title, tags and scores of one Recommendation, as the card's text."""
    tags = ", ".join(_md(t) for t in rec.item.tags[:max_tags])
    scores = f"score {rec.score:.3f}"
    if rec.llm_score is not None:
        scores += f" · LLM {rec.llm_score:.2f}"
    lines = [f"**#{rec.rank} {_md(rec.item.title)}**"]
    if tags:
        lines.append(f"<small>{tags}</small>")
    lines.append(f"<small>{scores}</small>")
    return "\n\n".join(lines)


def result_header(result: Any | None, user_id: str) -> str:
    """Line above the cards: whose list, for what request, and whether the LLM re-ranked it."""
    if result is None or not result.items:
        return f"No recommendations yet for user **{_md(user_id)}**: ask in the chat."
    text = f"Top {len(result.items)} for user **{_md(user_id)}**"
    if result.query:
        text += f" — “{_md(result.query)}”"
    text += " · re-ranked by the LLM" if result.reranked else " · retriever order"
    if result.note:
        text += f"\n\n_{_md(result.note)}_"
    return text


def evidence_markdown(exp: Any, *, max_rows: int = 8) -> str:
    """The evidence behind an Explanation: history links, modalities, co-likes, tags, path."""
    ev = exp.evidence
    path = (
        "written by the LLM and checked against this evidence"
        if exp.path == "llm"
        else "deterministic template (no LLM text used)"
    )
    out = [f"**Explanation path:** {exp.path} — {path}"]
    if exp.path != "llm" and exp.reason:
        label = "LLM text rejected" if exp.rejected else "LLM not used"
        out.append(f"<small>{label}: {_md(exp.reason)}</small>")
    if ev.rank is not None:
        out.append(
            f"**Rank** #{ev.rank}"
            + (f" · retriever {ev.retriever_score:.3f}" if ev.retriever_score is not None else "")
            + (f" · LLM {ev.llm_score:.2f}" if ev.llm_score is not None else "")
        )
    if ev.history:
        rows = [
            "**Your history that drove it** (per modality; contributions sum to the content score)",
            "",
            "| history item | modality | cosine | contribution | your rating |",
            "|---|---|---:|---:|---:|",
        ]
        for link in sorted(ev.history, key=lambda h: -h.contribution)[:max_rows]:
            rating = "" if link.rating is None else f"{link.rating:g}"
            rows.append(
                f"| {_md(link.title)} | {link.modality} | {link.cosine:.3f} | "
                f"{link.contribution:+.4f} | {rating} |"
            )
        if len(ev.history) > max_rows:
            rows.append(f"| _and {len(ev.history) - max_rows} more_ | | | | |")
        out.append("\n".join(rows))
    if ev.modality_scores:
        mods = ", ".join(
            f"{m} {s:+.3f}" for m, s in sorted(ev.modality_scores.items(), key=lambda kv: -kv[1])
        )
        out.append(f"**Modality scores:** {mods} (content score {ev.content_score:+.3f})")
    if ev.co_liked:
        co = "; ".join(
            f"{_md(title)} ({n} user{'s' if n != 1 else ''})" for _, title, n in ev.co_liked[:5]
        )
        out.append(f"**Liked together with:** {co}")
    if ev.matched_tags:
        out.append(f"**Matched tags:** {', '.join(_md(t) for t in ev.matched_tags)}")
    if ev.request:
        score = f" (similarity {ev.request_score:.3f})" if ev.request_score is not None else ""
        out.append(f"**Your request:** “{_md(ev.request)}”{score}")
    if ev.disliked_tags:
        out.append(f"**Tags you tend to dislike:** {', '.join(_md(t) for t in ev.disliked_tags)}")
    if not (ev.history or ev.co_liked or ev.matched_tags or ev.request):
        out.append("_No personal evidence yet (cold start): popularity or your request placed it._")
    return "\n\n".join(out)


def explain_with_evidence(
    agent: Any, user_id: str, item_id: str
) -> Iterator[tuple[str, Any | None]]:
    """Stream `(text so far, None)` from `explain_stream`, then `(final text, Explanation)`."""
    gen = agent.explain_stream(user_id, item_id)
    while True:
        try:
            text = next(gen)
        except StopIteration as stop:
            exp = stop.value
            yield exp.text, exp
            return
        yield text, None


def with_ticks(items: Iterator[Any], *, every: float = 1.0) -> Iterator[tuple[Any | None, float]]:
    """Consume `items` in a worker thread; yield `(item, seconds)` per item and `(None, seconds)`
    after each `every` seconds without one, so the page can show a live timer while the LLM
    loads or thinks. An exception in `items` is re-raised here.
    """
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue()

    def work() -> None:
        try:
            for item in items:
                q.put(("item", item))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, not swallowed
            q.put(("error", e))
        q.put(("done", None))

    start = time.monotonic()
    threading.Thread(target=work, name="fusionrec-ui-worker", daemon=True).start()
    while True:
        try:
            kind, value = q.get(timeout=every)
        except queue.Empty:
            yield None, time.monotonic() - start
            continue
        if kind == "done":
            return
        if kind == "error":
            raise value
        yield value, time.monotonic() - start


def working(text: str, seconds: float) -> str:
    """`text` plus a live timer line, shown while the agent is still busy."""
    hint = (
        " (the first request loads the language model; on a CPU allow a minute or two)"
        if seconds > 5
        else ""
    )
    return f"{text}\n\n_working… {seconds:.0f} s{hint}_".lstrip()


# ---- chat --------------------------------------------------------------------------------------
