"""Named demo personas with seeded histories, picked by package metadata.

Why seeded from the withheld labels: a persona should have a coherent taste ("calm music and
nature") that a visitor recognises at a glance, and the request benchmark can then ask what
a persona would like and judge the answer by the same labels. Histories are deterministic
(sorted ids, fixed seed), so the demo and the benchmark see the same people.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PERSONA_SEED = 13  # fixed, so histories are the same on every build
HISTORY_START = 1_700_000_000  # timestamp of a persona's first rating (epoch seconds)
PERSONAS_FILE = "personas.json"
LABEL_SUFFIX = " (demo persona)"

Labels = Mapping[str, Mapping[str, Any]]
Rule = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Persona:
    id: str  # the user id in the store and the UI picker
    name: str  # "Maya — calm music & nature"
    liked: tuple[str, ...]
    disliked: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.name + LABEL_SUFFIX


def _is(**want: str) -> Rule:
    def rule(lab: Mapping[str, Any]) -> bool:
        return all(lab.get(k) == v for k, v in want.items())

    return rule


def _one_of(*ids: str) -> Rule:
    """Matches the items whose id is listed (labels carry their own id as `_id`)."""
    return lambda lab: lab.get("_id") in ids


# id, display name, [(rule, how many liked)], [(rule, how many disliked)]
SPECS: tuple[tuple[str, str, list[tuple[Rule, int]], list[tuple[Rule, int]]], ...] = (
    (
        "maya",
        "Maya — calm music & nature",
        [
            (_is(source="immich", mood="calm"), 2),
            (_is(source="immich", mood="tender"), 1),
            (_is(source="tuxpaint", category="plants"), 3),
            (_one_of("gc-sound-rain-in-the-garden", "gc-sound-frogs-in-a-pond-during-a-storm"), 2),
        ],
        [
            (_is(source="immich", mood="energetic"), 1),
            (_is(source="tuxpaint", category="vehicles"), 1),
        ],
    ),
    (
        "leo",
        "Leo — space & machines",
        [
            (_is(source="tuxpaint", category="space"), 4),
            (_is(source="tuxpaint", category="vehicles"), 3),
            (_is(source="gcompris", category="space"), 1),
        ],
        [(_is(source="tuxpaint", category="plants"), 1), (_is(source="immich", mood="tender"), 1)],
    ),
    (
        "ana",
        "Ana — animals & kids' things",
        [
            (_is(source="gcompris", category="animals", subcategory="farm"), 3),
            (_is(source="tuxpaint", category="animals"), 3),
            (_is(source="gcompris", category="instruments"), 1),
        ],
        [
            (_is(source="gcompris", category="monuments"), 1),
            (_is(source="tuxpaint", category="military"), 1),
        ],
    ),
    (
        "sam",
        "Sam — upbeat music & food",
        [
            (_is(source="immich", mood="energetic"), 2),
            (_is(source="immich", mood="happy"), 2),
            (_is(source="tuxpaint", category="food"), 3),
        ],
        [(_is(source="immich", mood="calm"), 1), (_is(source="tuxpaint", category="medical"), 1)],
    ),
)


def make_personas(labels: Labels, seed: int = PERSONA_SEED) -> list[Persona]:
    """Pick each persona's liked/disliked items from `labels` (id -> withheld labels)."""
    rng = random.Random(seed)
    ids = sorted(labels)
    out: list[Persona] = []
    taken: set[str] = set()  # no item in two histories: with four users, one shared item is
    # enough for the collaborative sources to recommend one persona's taste to another
    for pid, name, likes, dislikes in SPECS:
        picked: dict[str, list[str]] = {"liked": [], "disliked": []}
        for kind, specs in (("liked", likes), ("disliked", dislikes)):
            for rule, n in specs:
                pool = [i for i in ids if rule({**labels[i], "_id": i}) and i not in taken]
                chosen = rng.sample(pool, min(n, len(pool)))
                picked[kind] += chosen
                taken.update(chosen)
        out.append(Persona(pid, name, tuple(picked["liked"]), tuple(picked["disliked"])))
    return out


def write_personas(out_dir: Path, labels: Labels) -> list[Persona]:
    """Write personas.json and interactions.csv (user_id,item_id,rating,timestamp)."""
    personas = make_personas(labels)
    (out_dir / PERSONAS_FILE).write_text(
        json.dumps([asdict(p) | {"label": p.label} for p in personas], indent=2, ensure_ascii=False)
    )
    with (out_dir / "interactions.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "rating", "timestamp"])
        for p in personas:
            events = [(i, 5.0) for i in p.liked] + [(i, 1.0) for i in p.disliked]
            for n, (item, rating) in enumerate(events):
                w.writerow([p.id, item, rating, HISTORY_START + 3600 * n])
    return personas


def load_personas(path: str | Path) -> list[Persona]:
    """Read personas.json; a missing or unreadable file gives no personas."""
    try:
        raw = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [
        Persona(str(p["id"]), str(p["name"]), tuple(p["liked"]), tuple(p["disliked"]))
        for p in raw
        if isinstance(p, dict) and {"id", "name", "liked", "disliked"} <= set(p)
    ]


def persona_labels(items_path: str | Path | None) -> dict[str, str]:
    """{user id: "Maya — calm music & nature (demo persona)"} for the personas.json that sits
    beside the configured catalogue file; {} when there is none (e.g. the MovieLens store)."""
    if not items_path:
        return {}
    return {
        p.id: p.label for p in load_personas(Path(items_path).expanduser().parent / PERSONAS_FILE)
    }
