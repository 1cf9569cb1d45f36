"""Safe catalogue uploads: names, sizes, zip archives (bombs, zip-slip), ingest reports."""

from __future__ import annotations

import logging
import re
import shutil
import stat
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from retrieval.errors import CatalogueError, FusionrecError
from ui.serving import AUDIO_SUFFIXES, IMAGE_SUFFIXES, inside, media_files  # noqa: F401

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # one uploaded file (catalogue or zip), also gradio's limit
MAX_UNZIPPED_BYTES = 500 * 1024 * 1024  # all members of one zip together (zip bombs)
MAX_ZIP_MEMBERS = 5_000  # files in one zip
CATALOGUE_SUFFIXES = (".jsonl", ".csv", ".parquet")  # what `ingest` reads
UPLOAD_SUFFIXES = (*CATALOGUE_SUFFIXES, ".zip")  # a zip carries a catalogue plus its media
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(CatalogueError):
    """An uploaded file is refused as a whole (name, size, type or archive layout)."""


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
    try:  # a refused upload leaves nothing behind (not even what a zip had unpacked so far)
        shutil.copyfile(src, dest)
        if not safe.lower().endswith(".zip"):
            return dest
        extract_zip(dest, folder / "files")
        dest.unlink()
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
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


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
            try:
                with zf.open(info) as fin, target.open("wb") as fout:
                    while chunk := fin.read(1 << 20):
                        written += len(chunk)
                        if written > max_total:
                            raise UploadError(
                                f"zip unpacks to more than {max_total / 2**20:.0f} MB"
                            )
                        fout.write(chunk)
            except UploadError:
                raise
            except (
                zipfile.BadZipFile,
                zlib.error,
                EOFError,
                NotImplementedError,
                RuntimeError,
            ) as e:
                # a false size, a bad CRC, a truncated member, encryption, an unknown method
                raise UploadError(
                    f"{Path(archive).name}: damaged or unsupported zip "
                    f"(member {info.filename!r}: {e})"
                ) from e
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
        # this upload's own folder: its rows may not name media anywhere else on the server
        own = (
            Path(upload_dir).expanduser() / path.relative_to(Path(upload_dir).expanduser()).parts[0]
        )
        report = agent.ingest(path, show_progress=True, media_root=own)
    except FusionrecError as e:
        logger.warning("upload refused: %s", e)
        return f"**Refused:** {e}", [], []
    if report.failed:  # the details stay in the server log; the page gets neutral wording
        logger.info("upload %s: %s", path, [e.to_dict() for e in report.failed])
    from retrieval.ingest import item_sources

    sources = item_sources(agent.store)
    files = media_files(agent.items.values(), under=upload_dir, sources=sources)
    new = sorted(set(files) - served)
    served.update(new)
    return report_markdown(report, path.name), report_rows(report), new


def report_markdown(report: Any, name: str) -> str:
    """One line saying what an ingest did; the per-row problems go to `report_rows`."""
    n = len(report.failed)
    tail = f" — {n} problem row(s) listed below" if n else ""
    return f"**{name}**: {report.summary()}{tail}."


def report_rows(report: Any) -> list[list[Any]]:
    """Per-row errors of an IngestReport as table rows: row, id, field, error.

    A media problem reads "not found or not readable" whatever it was (missing, outside the
    upload, unreadable, too large), so the page never tells a remote user whether some path
    exists on the server; the full reason is in the server log.
    """
    return [
        [
            e.row if e.row is not None else "",
            e.id or "",
            e.field,
            f"{e.field} not found or not readable" if e.field in ("image", "audio") else e.error,
        ]
        for e in report.failed
    ]
