"""A few requests as a new user would type them: what was understood, the top 3 and the Why of #1.

The chat's own path (`update_conversation`, `recommend_conversation`) and `explain`, with
whatever LLM the config names. Prints one JSON line per request (the closing-note examples).

    python -m bench.request_examples --config DIR/fusionrec.toml [--out examples.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

REQUESTS = (
    "something calm to listen to while I read",
    "upbeat energetic music for a workout",
    "pictures of birds",
    "animal pictures but no insects",
    "music that isn't energetic",
)


def main(argv: Sequence[str] | None = None) -> int:
    from agent.agent import RecommendationAgent

    p = argparse.ArgumentParser(prog="python -m bench.request_examples", description=__doc__)
    p.add_argument("--config", required=True, help="a media demo's fusionrec.toml")
    p.add_argument("--out", help="JSON file for the list of examples")
    args = p.parse_args(argv)
    agent = RecommendationAgent.from_config(args.config)
    out = []
    for n, text in enumerate(REQUESTS):
        user = f"example-{n}"  # a new user each time
        agent.reset_conversation(user)
        agent.update_conversation(user, text)
        result = agent.recommend_conversation(user, k=3)
        t = time.perf_counter()
        why = agent.explain(user, result.items[0].item.id)
        out.append(
            {
                "request": text,
                "understood": result.understood,
                "top3": [r.item.title for r in result.items],
                "why_1": why.text,
                "path": why.path,
                "rejected": why.rejected,
                "reason": why.reason,
                "seconds": round(time.perf_counter() - t, 1),
            }
        )
        print(json.dumps(out[-1], ensure_ascii=False), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
