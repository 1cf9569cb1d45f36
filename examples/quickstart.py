"""Recommend, explain, give feedback and chat from Python.

Run `fusionrec demo` once first (or point CONFIG at your own store), then:
    python examples/quickstart.py [CONFIG]
Pass `--no-llm` to use the retriever order and template explanations (fast on any CPU).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from agent import RecommendationAgent
from retrieval.config import FusionrecConfig


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--no-llm"]
    path = Path(args[0] if args else "~/.fusionrec/demo/fusionrec.toml").expanduser()
    cfg = FusionrecConfig.from_toml(path)
    if "--no-llm" in sys.argv:
        cfg = dataclasses.replace(
            cfg, llm=dataclasses.replace(cfg.llm, reranker="identity", explain=False)
        )
    agent = RecommendationAgent.from_config(cfg)

    result = agent.recommend("42", k=5)  # MovieLens user 42: history-driven
    for rec in result.items:
        print(f"{rec.rank}. {rec.item.title}  ({rec.score:.3f})")
    if result.note:
        print("note:", result.note)
    top = result.items[0].item
    print("\nWhy?", agent.explain("42", top.id).text)

    agent.feedback("42", top.id, liked=False)
    print("\nAfter disliking it:", [r.item.title for r in agent.recommend("42", k=5).items])

    *_, reply = agent.chat("newcomer", "something calm to listen to")  # last = whole reply
    print("\nChat:", reply)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
