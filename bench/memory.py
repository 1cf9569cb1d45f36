"""Peak RSS of hostile ingests beside a normal one (issue 11 #3): memory follows the work.

Usage: python -m bench.memory [--work DIR] [--hours 2] [--out docs/memory.json]

Each case runs in its own subprocess under `/usr/bin/time -f %M` (peak resident set, KB),
into a fresh store, with the default config (so all three encoders load in every case):

- normal: `fusionrec ingest` of 10 ordinary items: 5 scikit-image sample photos and 5 sounds
  (the test suite's speech clip and four 8-20 s 44.1 kHz stereo clips written here);
- flac: `fusionrec ingest` of one row whose audio is a 2-hour silent 44.1 kHz stereo FLAC
  (~1.4 MB; written here block by block with soundfile);
- sparse: `fusionrec ingest` of one row whose image is a 2 GB sparse file;
- zip: the app's upload path (`ui.uploads.ingest_upload` on a RecommendationAgent) with a
  zip holding a one-row catalogue and that FLAC; `zip-normal` is the same path with the
  10 normal items zipped, for reference.

Prints a table (peak MB and ratio to `normal`); the target is every hostile peak within 10%
of `normal`. Peaks are noisy by a few MB between runs; the machine is shared (say so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.10  # hostile peak / normal peak must stay at or below this


def _silent_flac(path: Path, hours: float, rate: int = 44_100) -> Path:
    """A silent stereo FLAC of `hours`, written 60 s at a time (never held whole)."""
    import numpy as np
    import soundfile as sf

    if path.is_file():
        return path
    tmp = path.with_suffix(".part")
    block = np.zeros((rate * 60, 2), dtype=np.int16)
    with sf.SoundFile(tmp, "w", rate, 2, subtype="PCM_16", format="FLAC") as fh:
        for _ in range(int(hours * 60)):
            fh.write(block)
    tmp.rename(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)  # holes: no disk used, but 2 GB to anyone who reads it
    return path


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _zip(path: Path, files: dict[str, Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, src in files.items():
            zf.write(src, arcname)
    return path


PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png")


def _normal_items(demo: Path) -> list[dict[str, Any]]:
    """10 ordinary rows with their media in `demo/media` (5 photos, 5 sounds); no download."""
    import shutil

    import numpy as np
    import skimage
    import soundfile as sf

    media = demo / "media"
    media.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name in PHOTOS:
        shutil.copyfile(Path(skimage.__file__).parent / "data" / name, media / name)
        rows.append({"id": name, "title": f"Photo {name}", "image": f"media/{name}"})
    shutil.copyfile(ROOT / "tests" / "data" / "speech.flac", media / "speech.flac")
    rows.append({"id": "speech", "title": "Spoken words", "audio": "media/speech.flac"})
    rng = np.random.default_rng(0)
    for n, (freq, seconds) in enumerate(((220, 8), (440, 12), (880, 16), (0, 20))):
        t = np.arange(44_100 * seconds) / 44_100
        x = 0.3 * np.sin(2 * np.pi * freq * t) if freq else 0.1 * rng.standard_normal(t.size)
        sf.write(media / f"clip{n}.flac", np.stack([x, x], axis=1).astype(np.float32), 44_100)
        rows.append({"id": f"clip{n}", "title": f"Clip {n}", "audio": f"media/clip{n}.flac"})
    return rows


def prepare(work: Path, hours: float) -> dict[str, tuple[str, Path, float]]:
    """Build the inputs once (reused between runs).

    Returns:
        case -> (mode, input path, MB of the hostile file or of all the media).
    """
    work.mkdir(parents=True, exist_ok=True)
    demo = work / "normal"
    normal_rows = _normal_items(demo)
    normal = _jsonl(demo / "normal10.jsonl", normal_rows)
    flac = _silent_flac(work / "silent-2h.flac", hours)
    hostile = work / "hostile"
    hostile.mkdir(exist_ok=True)
    flac_cat = _jsonl(
        hostile / "flac.jsonl",
        [{"id": "long", "title": "Two hours of nothing", "audio": str(flac)}],
    )
    big = _sparse(hostile / "huge.png", 2 * 2**30)
    sparse_cat = _jsonl(
        hostile / "sparse.jsonl", [{"id": "big", "title": "A 2 GB picture", "image": str(big)}]
    )
    zip_cat = _jsonl(
        work / "zip-catalogue.jsonl",
        [{"id": "long", "title": "Two hours of nothing", "audio": "silent.flac"}],
    )
    hostile_zip = _zip(work / "silent.zip", {"catalogue.jsonl": zip_cat, "silent.flac": flac})
    zipped_rows = []
    members: dict[str, Path] = {}
    for r in normal_rows:
        rel = r.get("image") or r.get("audio")
        members[rel] = demo / rel
        zipped_rows.append(r)
    members["catalogue.jsonl"] = _jsonl(work / "normal-zip.jsonl", zipped_rows)
    normal_zip = _zip(work / "normal10.zip", members)
    media_mb = sum(p.stat().st_size for p in members.values()) / 2**20
    return {
        "normal": ("ingest", normal, media_mb),
        "flac": ("ingest", flac_cat, flac.stat().st_size / 2**20),
        "sparse": ("ingest", sparse_cat, big.stat().st_size / 2**20),
        "zip": ("upload", hostile_zip, hostile_zip.stat().st_size / 2**20),
        "zip-normal": ("upload", normal_zip, normal_zip.stat().st_size / 2**20),
    }


def child(mode: str, path: Path, store: Path) -> int:
    """One measured run: the CLI ingest, or the app's upload handler on a fresh agent."""
    config = store.parent / f"{store.name}.toml"
    config.write_text(f'[store]\npath = "{store}"\n')
    if mode == "ingest":
        from agent.cli import main

        return main(["--config", str(config), "ingest", str(path), "--quiet"])
    from agent.agent import RecommendationAgent
    from ui.uploads import MAX_UPLOAD_BYTES, ingest_upload

    agent = RecommendationAgent.from_config(config)
    text, rows, _ = ingest_upload(
        agent,
        str(path),
        store.parent / f"{store.name}-uploads",
        max_bytes=MAX_UPLOAD_BYTES,
        served=set(),
    )
    for row in rows:
        print("  ", row)
    print(text)  # last: the summary line the parent shows
    return 0


def measure(case: str, mode: str, path: Path, size_mb: float, stores: Path) -> dict[str, Any]:
    """Run one case under /usr/bin/time; returns peak RSS (MB), exit code and its output."""
    cmd = [
        "/usr/bin/time",
        "-f",
        "peak_kb=%M",
        sys.executable,
        "-m",
        "bench.memory",
        "--child",
        mode,
        str(path),
        str(stores / case),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    lines = proc.stderr.strip().splitlines()
    peak = next(int(x.split("=")[1]) for x in reversed(lines) if x.startswith("peak_kb="))
    said = (proc.stdout.strip().splitlines() or [""])[-1]
    problems = [x.strip() for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("  ")]
    return {
        "case": case,
        "mode": mode,
        "input_mb": round(size_mb, 2),
        "problem": problems[0][:300] if problems else "",
        "peak_mb": round(peak / 1024, 1),
        "rc": proc.returncode,
        "output": proc.stdout.strip()[-600:],
        "summary": said[:160],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="input folder, reused (default: a temp dir)")
    ap.add_argument("--hours", type=float, default=2.0, help="length of the silent FLAC")
    ap.add_argument("--cases", default="normal,flac,sparse,zip,zip-normal")
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "INPUT", "STORE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, path, store = args.child
        return child(mode, Path(path), Path(store))
    work = args.work or Path(tempfile.mkdtemp(prefix="fusionrec-memory-"))
    inputs = prepare(work, args.hours)
    stores = Path(tempfile.mkdtemp(prefix="fusionrec-memory-stores-"))
    results = []
    for case in args.cases.split(","):
        mode, path, size_mb = inputs[case]
        res = measure(case, mode, path, size_mb, stores)
        results.append(res)
        print(f"{case}: {res['peak_mb']} MB (rc {res['rc']}) {res['summary']}", flush=True)
        if res["problem"]:
            print(f"    {res['problem']}", flush=True)
    base = next((r["peak_mb"] for r in results if r["case"] == "normal"), None)
    print("\n| case | file MB | peak RSS MB | vs normal |\n|---|---:|---:|---:|")
    for r in results:
        ratio = r["peak_mb"] / base if base else float("nan")
        r["ratio"] = round(ratio, 3)
        print(f"| {r['case']} | {r['input_mb']:,.1f} | {r['peak_mb']:,.1f} | {ratio:.2f} |")
    hostile = [r for r in results if r["case"] in ("flac", "sparse", "zip")]
    ok = bool(base) and all(r["peak_mb"] <= TARGET * base for r in hostile)
    print(f"\ntarget: every hostile peak <= {TARGET:.2f} x normal: {'met' if ok else 'NOT met'}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "results": results,
                    "target_ratio": TARGET,
                    "met": ok,
                    "hours": args.hours,
                    "python": platform.python_version(),
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                },
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
