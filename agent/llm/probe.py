"""`backend = "auto"`: pick the LLM backend for this machine by rule, then by measurement.

Why: CPUs differ. On an AVX-512 BF16/AMX CPU transformers in bf16 reads prompts fast; on an
AVX2-only CPU transformers needs fp32 (bf16 is emulated) and llama.cpp's 4-bit kernels win by
far. So on a CPU the choice is measured, not assumed:

1. CUDA available (and device not forced to "cpu") -> transformers, 4-bit NF4.
2. Only one backend installed, or the model is not a GGUF (a Hugging Face folder or id) ->
   the one that can run it.
3. The packaged model has no converted bf16 copy yet -> llama.cpp: it reads the GGUF as it is,
   while transformers would first spend ~70 s and ~9 GB RAM converting it.
4. Not enough free memory for transformers' copy -> llama.cpp.
5. Otherwise a short probe: the same small scoring request (a ~100-token shared prefix, 8
   short suffixes) through each backend, each in its own subprocess (memory is not mixed up,
   and a crash cannot take the caller down); the one with more prompt tokens/s wins.

The probe's result is cached in `<model cache>/llm-backend-probe.json`, keyed by the CPU (model
name and flags), the model, the thread count and the library versions, so it runs once per
machine and set-up (`fusionrec prepare-llm` runs it ahead of the first request).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrieval.config import default_home

logger = logging.getLogger(__name__)

PROBE_FILE = "llm-backend-probe.json"
PROBE_TIMEOUT_S = 300.0  # per backend subprocess; the probe itself takes seconds
_TITLES = (
    "Toy Story", "The Matrix", "Blade Runner", "Alien", "Heat", "Fargo", "Casablanca", "Se7en",
)  # fmt: skip
_CANDIDATES = (
    "Aliens", "Akira", "Brazil", "Speed", "Babe", "Vertigo", "Psycho", "Die Hard",
)  # fmt: skip


@dataclass(frozen=True)
class BackendChoice:
    """What `auto` resolved to, and why.

    Attributes:
        backend: "transformers" or "llama.cpp".
        reason: one sentence for logs and `fusionrec prepare-llm`.
        measured: prompt tokens/s per backend label when a probe ran (or was cached).
        cached: the measurement came from the probe file.
    """

    backend: str
    reason: str
    measured: dict[str, float] = field(default_factory=dict)
    cached: bool = False


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def cpu_signature() -> str:
    """CPU model name and feature flags (what decides which kernels are fast)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:  # not Linux: the platform string is the best cheap proxy
        import platform

        return platform.processor() or platform.machine()
    model = flags = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = " ".join(sorted(value.split()))
    return f"{model} | {flags}"


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cuda(device: str | None) -> bool:
    if device is not None:
        return device.startswith("cuda")
    if not _installed("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _cache_dir(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else default_home() / "models"


def choose_backend(
    name: str,
    *,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    num_threads: int = 2,
    refresh: bool = False,
) -> BackendChoice:
    """Resolve `backend = "auto"` for model `name` on this machine (see the module docstring).

    Args:
        name: the model (packaged name, local .gguf, folder or hub id).
        device: the configured device; "cpu" skips the CUDA check.
        cache_dir: model cache (holds the converted copy and the probe file).
        num_threads: threads both backends would use (part of the probe key).
        refresh: ignore a cached probe result and measure again.
    """
    from agent.llm.weights import PACKAGED, converted_dir

    choice = _by_rule(name, device, _cache_dir(cache_dir), PACKAGED, converted_dir)
    if choice is None:
        choice = _by_probe(name, _cache_dir(cache_dir), num_threads, refresh)
    logger.info("LLM backend 'auto' -> %s: %s", choice.backend, choice.reason)
    return choice


def _by_rule(
    name: str, device: str | None, cache: Path, packaged: dict[str, Any], converted_dir: Any
) -> BackendChoice | None:
    if _cuda(device):
        return BackendChoice("transformers", "CUDA is available: transformers with 4-bit NF4")
    is_gguf = name in packaged or name.lower().endswith(".gguf")
    has_llamacpp, has_tf = _installed("llama_cpp"), _installed("transformers")
    if not is_gguf:
        return BackendChoice("transformers", f"'{name}' is not a GGUF model: llama.cpp needs one")
    if not has_llamacpp:
        return BackendChoice(
            "transformers", "llama-cpp-python is not installed (make setup builds it)"
        )
    if not has_tf:
        return BackendChoice("llama.cpp", "transformers is not installed")
    if name not in packaged:
        return BackendChoice(
            "llama.cpp",
            "a local .gguf file: llama.cpp reads it as it is, transformers would dequantise it "
            "at every load",
        )
    folder = converted_dir(packaged[name], cache)
    if not (folder / "fusionrec-manifest.json").exists():
        return BackendChoice(
            "llama.cpp",
            "no converted bf16 copy for transformers yet (making one costs ~70 s and ~9 GB "
            "RAM); llama.cpp reads the GGUF as it is",
        )
    need = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    from agent.llm.transformers import cpu_default_dtype

    if cpu_default_dtype() == "float32":
        need *= 2  # the converted copy is bf16; fp32 doubles it in memory
    avail = _available_memory()
    if avail is not None and avail < need * 1.3:
        return BackendChoice(
            "llama.cpp",
            f"{avail / 2**30:.1f} GiB free memory is too little for transformers' "
            f"{need / 2**30:.1f} GiB weights",
        )
    return None


def _probe_key(name: str, num_threads: int) -> str:
    from agent.llm.transformers import cpu_default_dtype
    from agent.llm.weights import PACKAGED

    parts = {
        "cpu": cpu_signature(),
        "model": name,
        "model_sha256": PACKAGED[name].sha256 if name in PACKAGED else "",
        "threads": num_threads,
        "llama_cpp": _version("llama_cpp_python"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "dtype": cpu_default_dtype(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _read_probe_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _by_probe(name: str, cache: Path, num_threads: int, refresh: bool) -> BackendChoice:
    path = cache / PROBE_FILE
    key = _probe_key(name, num_threads)
    stored = _read_probe_file(path)
    if not refresh and isinstance(stored.get(key), dict):
        entry = stored[key]
        return BackendChoice(entry["backend"], entry["reason"], entry["measured"], cached=True)
    measured: dict[str, float] = {}
    failures: list[str] = []
    for backend in ("llama.cpp", "transformers"):
        try:
            result = run_probe(backend, name, cache_dir=cache, num_threads=num_threads)
            measured[backend] = round(result["prompt_tokens_per_s"], 1)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            failures.append(f"{backend} failed its probe ({e})")
    if not measured:
        return BackendChoice("transformers", "; ".join(failures) or "probe failed")
    best = max(measured, key=lambda b: measured[b])
    shown = ", ".join(f"{b} {v:g} tokens/s" for b, v in measured.items())
    reason = f"measured prompt reading on this CPU: {shown}"
    if failures:
        reason += "; " + "; ".join(failures)
    choice = BackendChoice(best, reason, measured)
    if not failures:  # cache only a clean comparison
        stored[key] = {**asdict(choice), "cached": False, "when": time.strftime("%Y-%m-%d")}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored, indent=2))
            tmp.replace(path)
        except OSError as e:
            logger.warning("could not cache the backend probe in %s: %s", path, e)
    return choice


def run_probe(
    backend: str,
    name: str,
    *,
    cache_dir: Path,
    num_threads: int,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> dict[str, Any]:
    """Measure one backend in a subprocess; returns its JSON (prompt_tokens_per_s, load_s, ...).

    Raises:
        RuntimeError: the subprocess failed or timed out (the message has its last error line).
    """
    cmd = [
        sys.executable,
        "-m",
        "agent.llm.probe",
        "--backend",
        backend,
        "--model",
        name,
        "--threads",
        str(num_threads),
        "--cache-dir",
        str(cache_dir),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"timed out after {timeout_s:g} s") from e
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(last[:300])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def probe_prompt() -> tuple[str, list[str], str]:
    """(user message, suffixes, system) of the probe request: a re-rank-shaped prompt."""
    history = "\n".join(f'- "{t}"' for t in _TITLES)
    user = (
        f"Liked, most recent last:\n{history}\nDisliked:\n(none)\nAsked for: (none)\n\n"
        'For each candidate, would this person enjoy it? Answer one line per candidate, "title": '
        'Yes or "title": No.'
    )
    system = "You are a recommendation assistant."
    return user, [f'"{t}":' for t in _CANDIDATES], system


def measure(backend: str, name: str, *, cache_dir: Path, num_threads: int) -> dict[str, Any]:
    """Load `name` with `backend` in this process and time the probe request (after a warm-up)."""
    from agent.llm import load_llm

    start = time.perf_counter()
    kwargs: dict[str, Any] = {
        "backend": backend,
        "cache_dir": cache_dir,
        "num_threads": num_threads,
    }
    if backend == "transformers":
        kwargs["device"] = "cpu"
    llm = load_llm(name, **kwargs)
    load_s = time.perf_counter() - start
    user, suffixes, system = probe_prompt()
    prefix = llm.chat_text(user, system=system)
    yes_no = (("Yes", " Yes"), ("No", " No"))
    llm.choice_logprobs("Hello", ["!"], yes_no)  # warm-up: first-call allocations
    seconds = float("inf")
    for attempt in range(2):  # best of two: a busy CPU makes single timings noisy
        start = time.perf_counter()
        out = llm.choice_logprobs(
            f"({attempt}) {prefix}" if attempt else prefix,  # differs from token 0: no KV reuse
            suffixes,
            yes_no,
            batch_size=len(suffixes),
        )
        seconds = min(seconds, time.perf_counter() - start)
    return {
        "backend": backend,
        "model": name,
        "load_s": round(load_s, 2),
        "seconds": round(seconds, 3),
        "tokens": out.computed_tokens,
        "prompt_tokens_per_s": out.computed_tokens / seconds,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry point of `run_probe` (prints one JSON line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", required=True, choices=["llama.cpp", "transformers"])
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", required=True)
    args = p.parse_args(argv)
    result = measure(
        args.backend, args.model, cache_dir=Path(args.cache_dir), num_threads=args.threads
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
