"""Time from `python app.py` to the first LLM-scored chat answer (issue #14).

Starts `app.py --config CFG` on a free loopback port (`bench.load_chat.start_app`), then sends
one chat request through the `/chat` API, again until a reply is LLM re-ranked (at most
`--max-requests`). The app loads its LLM lazily, inside the first request that needs it, and
the re-rank's time budget (`[llm] time_budget_s`) counts that load: on a slow machine the first
reply can be the retriever's order with a note, and the second the first LLM-scored one.

Recorded per run: seconds from spawn to the port answering, to the first reply and to the
first LLM re-ranked reply; every request's seconds, marker and note; when (seconds after spawn)
the app logged the backend choice, the model load and any re-rank fallback (the log is read as
it grows, to ~0.2 s); whether the `auto` probe ran or came from its cache; load averages.

Whether a reply was LLM re-ranked is read from what the page shows: the header above the cards
says "re-ranked by the LLM" or "retriever order" (`ui.cards.result_header`), and LLM-scored
cards carry "LLM 0.xx".

`--cache` sets what the model cache holds when the app starts (the user's own files are never
touched; the other modes use a temporary FUSIONREC_HOME whose entries link to the real ones):

- `as-is`: the real cache (after `fusionrec prepare-llm`: the probe result is cached),
- `no-probe`: everything but the `auto` probe file, so the app measures the backends first,
- `empty`: no model files at all (a first start after install): the packaged GGUF is joined
  and hash-checked, and `auto` picks llama.cpp by rule (no converted copy for transformers).

    python -m bench.first_answer --config /tmp/P/demo/fusionrec.toml --out docs/first_answer.json
    python -m bench.first_answer --config CFG --cache no-probe --out docs/first_answer.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.load_chat import _plain, start_app

PROBE_FILE = "llm-backend-probe.json"  # agent.llm.probe.PROBE_FILE (not imported: no torch here)
DEFAULT_MESSAGE = "something calm to listen to while I read"
# app log lines worth a timestamp: (event name, pattern); the first match of each is kept
LOG_EVENTS = (
    ("auto_choice", re.compile(r"LLM backend 'auto' -> (?P<backend>\S+): (?P<reason>.*)")),
    ("gguf_joined", re.compile(r"joined \d+ parts into")),
    ("sha256_verified", re.compile(r"verified SHA-256 of")),
    ("converted", re.compile(r"converted \S+ into")),
    ("llm_loaded", re.compile(r"loaded (?:LLM )?\S+ (?:with llama\.cpp|on )")),
    ("rerank_budget_stop", re.compile(r"LLM re-rank stopped at the")),
    ("rerank_unavailable", re.compile(r"LLM unavailable \(")),
)


@dataclass
class Request:
    """One /chat request: when it was sent and answered (seconds after spawn), what it said."""

    n: int
    sent_at_s: float
    seconds: float
    done_at_s: float
    reranked: bool | None  # None: no list header in the reply (error or no list)
    llm_scored_cards: int
    header: str
    note: str = ""
    reply: str = ""


@dataclass
class Run:
    """One app start and its first answers."""

    config: str
    cache: str
    message: str
    user: str
    model: str
    backend_config: str
    threads: int
    time_budget_s: float
    loadavg_before: list[float]
    loadavg_after: list[float] = field(default_factory=list)
    port_s: float | None = None
    first_reply_s: float | None = None
    first_llm_answer_s: float | None = None
    requests: list[Request] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)  # log event -> seconds after spawn
    backend: str | None = None
    backend_reason: str | None = None
    probe_ran: bool | None = None  # the `auto` probe measured (not read from its cache)
    backend_by: str | None = None  # "probe", "probe cache" or "rule" (None: auto not run)
    probe_entry: dict[str, Any] | None = None
    log: str = ""
    when: str = ""
    error: str = ""


def reply_marker(result: object) -> tuple[bool | None, int, str, str]:
    """(re-ranked?, LLM-scored cards, header, note) from one /chat response.

    The response is (reply, shown ids, header, card slots...); the header says "re-ranked by
    the LLM" or "retriever order", a fallback's reason is its italic last paragraph.
    """
    if not isinstance(result, (list, tuple)):
        return None, 0, "", ""
    texts = [_plain(v) for v in result[1:] if isinstance(v, str)]
    header = next((t for t in texts if t.startswith(("Top ", "No recommendations"))), "")
    cards = sum(bool(re.search(r"· LLM -?\d", t)) for t in texts if t.startswith("**#"))
    first = header.split("\n", 1)[0]
    if "re-ranked by the LLM" in first:
        reranked: bool | None = True
    elif "retriever order" in first:
        reranked = False
    else:
        reranked = None
    paras = [p.strip() for p in header.split("\n\n")[1:]]
    note = next((p.strip("_") for p in reversed(paras) if p.startswith("_")), "")
    return reranked, cards, header, note


def scan_log(lines: Sequence[tuple[float, str]]) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds after spawn of the first occurrence of each `LOG_EVENTS` line, and the
    backend/reason of the `auto` choice (empty when `auto` did not run)."""
    events: dict[str, float] = {}
    found: dict[str, str] = {}
    for at, line in lines:
        for name, pattern in LOG_EVENTS:
            m = pattern.search(line)
            if m and name not in events:
                events[name] = round(at, 2)
                found.update(m.groupdict())
    return events, found


class LogTail:
    """Reads a growing log file in a thread and stamps each line with seconds since `t0`."""

    def __init__(self, path: Path, t0: float, every_s: float = 0.2) -> None:
        self.path, self.t0, self.every_s = path, t0, every_s
        self.lines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LogTail:
        self._thread.start()
        return self

    def _run(self) -> None:
        pos, partial = 0, ""
        while True:
            stopping = self._stop.is_set()
            try:
                with self.path.open("r", encoding="utf-8", errors="replace") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos = fh.tell()
            except OSError:
                chunk = ""
            now = time.perf_counter() - self.t0
            *done, partial = (partial + chunk).split("\n")
            self.lines += [(now, line) for line in done]
            if stopping:
                if partial:
                    self.lines.append((now, partial))
                return
            time.sleep(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def model_home(mode: str, models: Path, workdir: Path) -> Iterator[Path | None]:
    """FUSIONREC_HOME for the app: None (`as-is`), or a temporary home (deleted afterwards)
    whose entries link to the real home's, with `models/` holding links to every model file
    but the probe result (`no-probe`) or nothing (`empty`)."""
    if mode == "as-is":
        yield None
        return
    real_home = models.parent
    home = Path(tempfile.mkdtemp(prefix="fusionrec-home-", dir=workdir))
    try:
        if real_home.is_dir():
            for entry in real_home.iterdir():
                if entry.name != "models":
                    (home / entry.name).symlink_to(entry)
        (home / "models").mkdir()
        if mode == "no-probe" and models.is_dir():
            for entry in models.iterdir():
                if entry.name != PROBE_FILE and not entry.name.endswith(".tmp"):
                    (home / "models" / entry.name).symlink_to(entry)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)  # links only, and what the app wrote there


def _probe_file_state(path: Path) -> tuple[float | None, dict[str, Any]]:
    try:
        return path.stat().st_mtime, json.loads(path.read_text())
    except (OSError, ValueError):
        return None, {}


def _uptime() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_once(args: argparse.Namespace) -> Run:
    """Start the app under `args.cache`, ask until an LLM-scored reply (or the limit), stop it."""
    from gradio_client import Client

    from retrieval.config import FusionrecConfig

    cfg = FusionrecConfig.from_toml(args.config)
    if args.cache != "as-is" and cfg.llm.cache_dir:
        raise SystemExit(
            f"--cache {args.cache} replaces the default model cache; this config sets "
            f"[llm] cache_dir = {cfg.llm.cache_dir!r} (use --cache as-is)"
        )
    run = Run(
        config=str(args.config),
        cache=args.cache,
        message=args.message,
        user=args.user,
        model=cfg.llm.model,
        backend_config=cfg.llm.backend,
        threads=cfg.llm.num_threads,
        time_budget_s=cfg.llm.time_budget_s,
        loadavg_before=_uptime(),
        when=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    )
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"first_answer_app_{args.cache}_{time.strftime('%H%M%S')}.log"
    run.log = str(log)
    log.write_text("")
    with model_home(args.cache, cfg.model_cache(), workdir) as home:
        models = home / "models" if home is not None else cfg.model_cache()
        before = _probe_file_state(models / PROBE_FILE)
        saved = os.environ.get("FUSIONREC_HOME")
        if home is not None:
            os.environ["FUSIONREC_HOME"] = str(home)  # start_app passes os.environ on
        proc = None
        t0 = time.perf_counter()
        tail = LogTail(log, t0).start()
        try:
            proc, url = start_app(str(args.config), 1, log)
            run.port_s = round(time.perf_counter() - t0, 2)
            client = Client(url, verbose=False, download_files=False)
            for n in range(1, args.max_requests + 1):
                t = time.perf_counter()
                result = client.predict(args.message, args.user, args.k, api_name="/chat")
                done = time.perf_counter()
                reranked, cards, header, note = reply_marker(result)
                reply = result[0] if isinstance(result, (list, tuple)) else result
                run.requests.append(
                    Request(
                        n,
                        round(t - t0, 2),
                        round(done - t, 2),
                        round(done - t0, 2),
                        reranked,
                        cards,
                        header.split("\n", 1)[0],
                        note,
                        str(reply)[:400],
                    )
                )
                run.first_reply_s = run.first_reply_s or round(done - t0, 2)
                if reranked:
                    run.first_llm_answer_s = round(done - t0, 2)
                    break
        except Exception as e:  # noqa: BLE001 - reported in the run, the app is still stopped
            run.error = f"{type(e).__name__}: {e}"[:500]
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            tail.stop()
            if home is not None:
                if saved is None:
                    os.environ.pop("FUSIONREC_HOME", None)
                else:
                    os.environ["FUSIONREC_HOME"] = saved
        run.loadavg_after = _uptime()
        run.events, found = scan_log(tail.lines)
        run.backend, run.backend_reason = found.get("backend"), found.get("reason")
        after = _probe_file_state(models / PROBE_FILE)
        run.probe_ran = after[0] is not None and after != before
        if run.backend_reason:
            entry = next(
                (
                    v
                    for v in after[1].values()
                    if isinstance(v, dict) and v.get("reason") == run.backend_reason
                ),
                None,
            )
            run.probe_entry = entry
        run.backend_by = chosen_by(run)
    return run


def chosen_by(run: Run) -> str | None:
    """How `auto` decided: measured now, read from the probe cache, or by a rule."""
    if not run.backend:
        return None
    if run.probe_ran:
        return "probe"
    return "probe cache" if run.probe_entry is not None else "rule"


def summary(run: Run) -> str:
    """A few lines for the terminal (and the docs)."""

    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f} s"

    lines = [
        f"{run.when} · cache {run.cache} · {run.model} backend={run.backend_config} "
        f"threads={run.threads} budget {run.time_budget_s:g} s · load average before "
        f"{run.loadavg_before}, after {run.loadavg_after}",
        f"port open {s(run.port_s)}; first reply {s(run.first_reply_s)}; first LLM-scored "
        f"answer {s(run.first_llm_answer_s)}",
        f"auto -> {run.backend or '(not run)'}"
        + (f" ({run.backend_reason})" if run.backend_reason else "")
        + (f"; decided by: {run.backend_by}" if run.backend else ""),
        "log events (s after spawn): "
        + (", ".join(f"{k} {v:.1f}" for k, v in run.events.items()) or "none"),
    ]
    for r in run.requests:
        lines.append(
            f"  request {r.n}: sent at {r.sent_at_s:.1f} s, took {r.seconds:.1f} s "
            f"re-ranked={r.reranked} LLM-scored cards={r.llm_scored_cards}"
            + (f" note: {r.note}" if r.note else "")
        )
    if run.error:
        lines.append(f"error: {run.error}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="fusionrec.toml the app starts with")
    p.add_argument("--message", default=DEFAULT_MESSAGE, help="the chat request sent")
    p.add_argument("--user", default="maya", help="user id (default: a media demo persona)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument(
        "--max-requests",
        type=int,
        default=3,
        help="send the request again until a reply is LLM re-ranked, at most this many times",
    )
    p.add_argument(
        "--cache",
        choices=("as-is", "no-probe", "empty"),
        default="as-is",
        help="model cache at start: the real one, without the auto probe result, or empty",
    )
    p.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "fusionrec-first-answer"),
        help="app log and temporary model homes",
    )
    p.add_argument("--out", help="append this run to a JSON file ({'runs': [...]})")
    args = p.parse_args(argv)
    if args.max_requests < 1:
        p.error("--max-requests must be >= 1")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    run = run_once(args)
    print(summary(run))  # noqa: T201 - a command-line report
    if args.out:
        out = Path(args.out)
        data = json.loads(out.read_text()) if out.exists() else {"runs": []}
        data["runs"].append(asdict(run))
        out.write_text(json.dumps(data, indent=2) + "\n")
    return 0 if run.first_llm_answer_s is not None and not run.error else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
