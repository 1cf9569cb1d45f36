"""Load test on loopback: N concurrent chat sessions against the running app's `/chat` API.

Each session is its own `gradio_client.Client` (its own Gradio session) and plays a short
conversation as one user: recommend, explain ("why #2?"), recommend again with a new request.
All sessions start together. A turn fails when the call raises or the reply is an apology.

    python -m bench.load_chat --url http://127.0.0.1:7860/            # against a running app
    python -m bench.load_chat --config fusionrec.toml --out docs/load.md  # starts app.py itself

Prints p50/p95/max per message kind and overall; `--out` appends a Markdown section.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TURNS = (  # (kind, message): what one session says, in order
    ("recommend", "recommend something calm to listen to"),
    ("explain", "why #2?"),
    ("recommend", "something about space and stars"),
)


@dataclass
class Turn:
    session: int
    kind: str
    seconds: float
    ok: bool
    detail: str = ""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_session(
    n: int, url: str, user: str, k: int, start: threading.Barrier, out: list[Turn]
) -> None:
    """One user's conversation; every turn is timed from request to the final reply."""
    from gradio_client import Client

    try:
        client = Client(url, verbose=False, download_files=False)
    except Exception as e:  # noqa: BLE001 - a failed connect is a failed session, reported
        start.wait()
        out.append(Turn(n, "connect", 0.0, False, repr(e)[:200]))
        return
    start.wait()
    for kind, message in TURNS:
        t0 = time.perf_counter()
        try:
            result = client.predict(message, user, k, api_name="/chat")
            reply = result[0] if isinstance(result, (list, tuple)) else result
            ok = isinstance(reply, str) and bool(reply.strip()) and not reply.startswith("Sorry")
            detail = "" if ok else str(reply)[:200]
        except Exception as e:  # noqa: BLE001
            ok, detail = False, repr(e)[:200]
        out.append(Turn(n, kind, time.perf_counter() - t0, ok, detail))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(config: str, concurrency: int, log: Path) -> tuple[subprocess.Popen, str]:
    """Serve app.py on a free loopback port; returns the process and its URL once it answers."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "app.py"),
            "--config",
            config,
            "--port",
            str(port),
            "--concurrency",
            str(concurrency),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited ({proc.returncode}); see {log}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit(f"app.py did not answer in 300 s; see {log}")


def summarise(turns: list[Turn], wall: float, args: argparse.Namespace) -> str:
    """A Markdown section: set-up, then p50/p95/max per kind and overall."""
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M')} — {args.sessions} sessions × "
        f"{len(TURNS)} turns, k={args.k}",
        "",
        f"- app: `{'app.py --config ' + str(args.config) if args.config else args.url}`"
        + (f", `--concurrency {args.concurrency}`" if args.config else "")
        + (f"; {args.note}" if args.note else ""),
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU(s), load average before the run "
        f"{args.load_before}",
        f"- wall time {wall:.1f} s, {len(turns)} requests, "
        f"{sum(not t.ok for t in turns)} errors, {len(turns) / wall:.2f} requests/s",
        "",
        "| turn | n | errors | p50 s | p95 s | max s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    kinds = sorted(
        {t.kind for t in turns},
        key=lambda k: [x for x, _ in TURNS].index(k) if k in dict(TURNS) else 9,
    )
    for kind in [*kinds, "all"]:
        rows = [t for t in turns if kind in ("all", t.kind)]
        secs = [t.seconds for t in rows if t.ok] or [0.0]
        lines.append(
            f"| {kind} | {len(rows)} | {sum(not t.ok for t in rows)} | "
            f"{percentile(secs, 50):.2f} | {percentile(secs, 95):.2f} | {max(secs):.2f} |"
        )
    errors = [t for t in turns if not t.ok][:5]
    if errors:
        lines += [
            "",
            "First errors:",
            *[f"- session {t.session} {t.kind}: `{t.detail}`" for t in errors],
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="a running app, e.g. http://127.0.0.1:7860/")
    src.add_argument("--config", help="start app.py with this config on a free loopback port")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--k", type=int, default=5)
    p.add_argument(
        "--users", default="1-943", help="user ids to spread sessions over: 'a,b,c' or 'LO-HI'"
    )
    p.add_argument(
        "--concurrency", type=int, default=4, help="app.py --concurrency (with --config)"
    )
    p.add_argument("--note", default="", help="free text for the report (e.g. which re-ranker)")
    p.add_argument("--out", help="append the Markdown summary to this file")
    args = p.parse_args(argv)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    if "-" in args.users and "," not in args.users:
        lo, hi = (int(x) for x in args.users.split("-"))
        users = [str(u) for u in range(lo, hi + 1)]
    else:
        users = [u.strip() for u in args.users.split(",") if u.strip()]
    proc = None
    if args.config:
        proc, args.url = start_app(
            args.config, args.concurrency, Path(tempfile.gettempdir()) / "load_chat_app.log"
        )
    args.load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        turns: list[Turn] = []
        barrier = threading.Barrier(args.sessions + 1)
        threads = [
            threading.Thread(
                target=run_session,
                args=(n, args.url, users[(n * 47) % len(users)], args.k, barrier, turns),
            )
            for n in range(args.sessions)
        ]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    report = summarise(turns, wall, args)
    print(report)
    if args.out:
        with Path(args.out).open("a", encoding="utf-8") as fh:
            fh.write("\n" + report)
    return 0 if all(t.ok for t in turns) else 1


if __name__ == "__main__":
    raise SystemExit(main())
