"""Per-user state: base interactions plus feedback from chat and the UI, persisted as JSONL.

Feedback is appended to a file so it survives restarts and is applied at once: the next
`recommend` call reads the updated history. Unknown users start cold and are remembered.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from retrieval.config import RATING_SCALE

LIKE_RATING = RATING_SCALE.like_value  # a "like" from chat/UI counts as a top rating
DISLIKE_RATING = RATING_SCALE.dislike_value  # a "dislike" counts as the lowest rating


@dataclass(frozen=True)
class Interaction:
    """One rating event. Later events for the same item replace earlier ones."""

    user_id: str
    item_id: str
    rating: float
    timestamp: float
    source: str = "history"  # "history" (imported), "feedback" (chat/UI)


@dataclass
class UserState:
    """What the agent knows about one user."""

    interactions: dict[str, Interaction] = field(default_factory=dict)  # by item id
    avoid: list[str] = field(default_factory=list)  # topics the user said no to ("horror")
    last_shown: list[str] = field(default_factory=list)  # item ids of the last list, for "#3"
    last_query: str | None = None  # the request behind the last list, cited in explanations

    def history(self) -> list[Interaction]:
        """Interactions oldest first."""
        return sorted(self.interactions.values(), key=lambda i: (i.timestamp, i.item_id))


class UserStore:
    """Thread-safe in-memory user states backed by an append-only JSONL file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path).expanduser() if path else None
        self._users: dict[str, UserState] = defaultdict(UserState)
        self._lock = threading.Lock()
        if self._path and self._path.exists():
            self._replay(self._path)

    def _replay(self, path: Path) -> None:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from a crash loses one event, not the file
                if ev.get("type") == "avoid":
                    self._users[ev["user_id"]].avoid.append(ev["text"])
                elif ev.get("type") == "rating":
                    ev.pop("type")
                    self._apply(Interaction(**ev))

    def _apply(self, it: Interaction) -> None:
        self._users[it.user_id].interactions[it.item_id] = it

    def _append(self, event: dict) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")

    def load_history(self, interactions: Iterable[Interaction]) -> None:
        """Seed base history (e.g. MovieLens ratings); not persisted, feedback wins over it."""
        with self._lock:
            for it in interactions:
                current = self._users[it.user_id].interactions.get(it.item_id)
                if current is None or current.source != "feedback":
                    self._apply(it)

    def add_feedback(self, user_id: str, item_id: str, liked: bool) -> Interaction:
        it = Interaction(
            user_id, item_id, LIKE_RATING if liked else DISLIKE_RATING, time.time(), "feedback"
        )
        with self._lock:
            self._apply(it)
            self._append({"type": "rating", **asdict(it)})
        return it

    def add_avoid(self, user_id: str, text: str) -> None:
        with self._lock:
            self._users[user_id].avoid.append(text)
            self._append(
                {"type": "avoid", "user_id": user_id, "text": text, "timestamp": time.time()}
            )

    def get(self, user_id: str) -> UserState:
        """The user's state; unknown users get an empty one that is remembered."""
        with self._lock:
            return self._users[user_id]

    def known(self, user_id: str) -> bool:
        return user_id in self._users

    def user_ids(self) -> list[str]:
        with self._lock:
            return sorted(
                self._users, key=lambda u: (not u.isdigit(), int(u) if u.isdigit() else 0, u)
            )
