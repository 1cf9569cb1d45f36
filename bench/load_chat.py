"""Load test on loopback: N concurrent chat sessions against the running app's `/chat` API.

Each session is its own `gradio_client.Client` (its own Gradio session) and plays a short
conversation as one user: recommend, explain ("why #2?"), recommend again with a new request.
All sessions start together. A turn fails when the call raises or the reply is an apology.

    python -m bench.load_chat --url http://127.0.0.1:7860/            # against a running app
    python -m bench.load_chat --config fusionrec.toml --out docs/load.md  # starts app.py itself
    python -m bench.load_chat --build /tmp/load   # MovieLens store + identity/LLM configs

Each session asks for its own topic; every reply is checked against the cards returned with
it, the user its header names and the requests it quotes: no request may see another's state.

Prints p50/p95/max per message kind and overall; `--out` appends a Markdown section.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
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
TURNS = (  # (kind, message): what one session says, in order; {topic}: the session's own
    ("recommend", "recommend {topic}"),
    ("explain", "why #2?"),
    ("recommend", "something about space and stars"),
)
TOPICS = (  # one per session (cycled), each with a word no other topic has
    "a war film", "a romantic comedy", "a horror film", "a western", "a musical",
    "a documentary", "a crime thriller", "an animated film for children", "a film noir",
    "a mystery", "a fantasy adventure", "a science fiction film", "a sports drama",
    "a courtroom drama", "a martial arts film", "a spy thriller", "a disaster movie",
    "a pirate adventure", "a vampire film", "a jazz biography",
)  # fmt: skip


@dataclass
class Turn:
    session: int
    kind: str
    seconds: float
    ok: bool
    detail: str = ""
    isolated: bool | None = None  # None: not checkable (not a list reply)


def _plain(markdown: str) -> str:
    """Markdown-escaped text back to its characters (`\\[` -> `[`), for comparisons."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _listed_titles(reply: str) -> list[str]:
    """Titles of a chat list reply ("1. Title (tags)" lines), in order."""
    titles = []
    for line in _plain(reply).splitlines():
        m = re.match(r"^\s*(\d+)\. (.*?)(?: \([^()]*\))?\s*$", line)
        if m:
            titles.append(m.group(2).strip())
    return titles


def _card_titles(outputs: Sequence[object]) -> list[str]:
    """Titles of the visible cards in one /chat response (card text "**#1 Title**")."""
    titles = []
    for value in outputs:
        if isinstance(value, str):
            m = re.match(r"^\*\*#(\d+) (.*?)\*\*", value)
            if m:
                titles.append(_plain(m.group(2)).strip())
    return titles


def check_isolation(
    result: object, *, user: str, own: Sequence[str], others: Sequence[str]
) -> tuple[bool | None, str]:
    """Whether one /chat response shows only this session's state.

    The response is (reply, header, card outputs...). A list reply must match the cards
    returned with it (same titles, same order), the header must name this session's user,
    and no reply or header may show another session's request (`others`); a request the
    reply quotes ("your request \"...\"", or the header's “...”) must hold one of `own`.

    Returns (None, "") when there is nothing to check (no list, no quoted request).
    """
    if not isinstance(result, (list, tuple)):
        return None, ""
    reply = _plain(str(result[0]))
    texts = [v for v in result[1:] if isinstance(v, str)]
    header = next((_plain(t) for t in texts if t.startswith(("Top ", "No recommendations"))), "")
    seen = reply + "\n" + header
    leaked = [m for m in others if m in seen]
    if leaked:
        return False, f"shows another session's request {leaked[0]!r}"
    quoted = re.findall(r'your request "([^"]*)"', reply) + re.findall(r"“([^”]*)”", header)
    if quoted and not any(m in q for q in quoted for m in own):
        return False, f"quotes a request this session never made: {quoted[0]!r}"
    listed = _listed_titles(str(result[0]))
    checked = bool(quoted)
    if listed:
        cards = _card_titles(texts)
        if f"user {user} " not in header.replace("**", "") + " ":
            return False, f"header is not for user {user}: {header[:120]!r}"
        if cards and cards != listed[: len(cards)]:
            return False, f"chat list {listed[:3]} but cards {cards[:3]}"
        checked = True
    return (True, "") if checked else (None, "")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_session(
    n: int, url: str, user: str, k: int, start: threading.Barrier, out: list[Turn]
) -> None:
    """One user's conversation; every turn is timed from request to the final reply.

    Every response is checked by `check_isolation` (own cards, own user, own requests).
    """
    from gradio_client import Client

    try:
        client = Client(url, verbose=False, download_files=False)
    except Exception as e:  # noqa: BLE001 - a failed connect is a failed session, reported
        start.wait()
        out.append(Turn(n, "connect", 0.0, False, repr(e)[:200]))
        return
    start.wait()
    topic = TOPICS[n % len(TOPICS)]
    own = [m.format(topic=topic) for _, m in TURNS]
    others = [m.format(topic=t) for t in TOPICS if t != topic for _, m in TURNS if "{topic}" in m]
    for kind, message in TURNS:
        t0 = time.perf_counter()
        isolated: bool | None = None
        try:
            result = client.predict(message.format(topic=topic), user, k, api_name="/chat")
            seconds = time.perf_counter() - t0
            reply = result[0] if isinstance(result, (list, tuple)) else result
            ok = isinstance(reply, str) and bool(reply.strip()) and not reply.startswith("Sorry")
            detail = "" if ok else str(reply)[:200]
            if ok:
                isolated, detail = check_isolation(result, user=user, own=own, others=others)
        except Exception as e:  # noqa: BLE001
            seconds, ok, detail = time.perf_counter() - t0, False, repr(e)[:200]
        out.append(Turn(n, kind, seconds, ok, detail, isolated))


def build_store(folder: Path) -> tuple[Path, Path]:
    """A MovieLens-100K store for the load runs: the 1,682 films (text only) and users 1-943.

    Writes two configs beside it: `fusionrec-identity.toml` (no LLM) and `fusionrec-llm.toml`
    (SmolLM2-135M writes the explanations and re-ranks with alpha 0.25, 15 s budget).
    Returns (identity config, LLM config); ingest is skipped when the store is complete.
    """
    from retrieval.config import FusionrecConfig
    from retrieval.datasets.movielens import load_movielens_items
    from retrieval.ingest import Encoders, ingest_items
    from retrieval.store import VectorStore

    folder.mkdir(parents=True, exist_ok=True)
    common = (
        f'[store]\npath = "{folder / "store"}"\n\n'
        '[encoders]\nimage = "none"\naudio = "none"\nnum_threads = 1\n\n'
        f'[data]\ninteractions = "ml-100k"\nusers_path = "{folder / "users-RUN.jsonl"}"\n\n'
    )
    identity = folder / "fusionrec-identity.toml"
    identity.write_text(
        common.replace("RUN", "identity") + '[llm]\nreranker = "identity"\nexplain = false\n'
    )
    llm = folder / "fusionrec-llm.toml"
    llm.write_text(
        common.replace("RUN", "llm")
        + '[llm]\nmodel = "smollm2-135m"\nbackend = "transformers"\nreranker = "llm-pointwise"\n'
        "alpha = 0.25\nexplain = true\ntime_budget_s = 15.0\nnum_threads = 2\n"
    )
    cfg = FusionrecConfig.from_toml(identity)
    store = VectorStore.from_config(cfg)
    items = load_movielens_items()
    if store.count("text") < len(items):
        report = ingest_items(items, store, Encoders.from_config(cfg.encoders), batch_size=64)
        print(f"store: {report.summary()}")
    return identity, llm


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
        f"- isolation: {sum(t.isolated is True for t in turns)} replies checkable (a list with "
        f"its cards and user, or a quoted request), "
        f"{sum(t.isolated is False for t in turns)} showed another session's state",
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
    errors = [t for t in turns if not t.ok or t.isolated is False][:5]
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
    src.add_argument(
        "--build",
        type=Path,
        help="build the MovieLens load-test store and its two configs in this folder, then exit",
    )
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
    if args.build:
        for path in build_store(args.build):
            print(path)
        return 0
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
    return 0 if all(t.ok and t.isolated is not False for t in turns) else 1


if __name__ == "__main__":
    raise SystemExit(main())
