"""Progress ticks for long LLM work, so the page says what it is doing and for how long."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


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
