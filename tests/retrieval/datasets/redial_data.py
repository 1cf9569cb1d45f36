"""A tiny hand-made ReDial-format directory (same files and fields as the real test split)."""

from __future__ import annotations

import json
from pathlib import Path

R = "<http://dbpedia.org/resource/{}>"
ENTITIES = {
    R.format("Super_Troopers"): 10,
    R.format("Police_Academy_(film)"): 11,
    R.format("American_Pie_(film)"): 12,
    R.format("Lethal_Weapon"): 13,
    R.format("The_Shining_(film)"): 14,
    R.format("Halloween_(1978_film)"): 15,
    R.format("Black_Panther_(film)"): 16,
    R.format("Toy_Story"): 17,
    R.format("Finding_Nemo"): 18,
    R.format("Water_(1985_film)"): 19,
    R.format("Tom_Hanks"): 100,  # not a film: never in item_ids.json
    "Comedy": 101,
}
FILMS = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]


def _turn(
    dialog: str, turn: int, lines: list[tuple[str, str]], rec: list[int], prev: list[int]
) -> dict:
    text = "".join(f"\n{s}: {t}" for s, t in lines) + "\nSystem: "
    return {
        "context": [""] + [t for _, t in lines],
        "input": text,
        "resp": "",
        "rec": rec,
        "entity": rec,
        "prev_entity": prev,
        "dialog_id": dialog,
        "turn_id": turn,
        "is_user": 0,
        "entity_name": [],
    }


TURNS = [
    # dialogue 1 (validation under a 20% split of 5 dialogues)
    _turn(
        "d1", 1, [("User", "Hi I am looking for a movie like Super Troopers (2001)")], [11], [10]
    ),
    _turn(
        "d1",
        2,
        [
            ("User", "Hi I am looking for a movie like Super Troopers (2001)"),
            ("System", "You should watch Police Academy (1984)"),
            ("User", "I have seen American Pie (1999). Any others?"),
        ],
        [11, 13],  # 11 was mentioned before: only 13 is a sample
        [10, 11, 12],
    ),
    # dialogue 2: no film mentioned yet, asks for a genre
    _turn("d2", 3, [("User", "Hello! I want a scary horror movie tonight")], [14, 15], [101]),
    # dialogue 3: a 2018 film nobody outside knows
    _turn(
        "d3", 4, [("User", "I loved Toy Story (1995), something for kids?")], [18, 16], [17, 100]
    ),
    # dialogue 4: target is not a legal film (a person): no sample
    _turn("d4", 5, [("User", "Who is in Toy Story (1995)?")], [100], [17]),
    # dialogue 5
    _turn("d5", 6, [("User", "I liked The Shining (1980) a lot")], [15], [14]),
]


def write_redial(folder: Path, turns: list[dict] | None = None) -> Path:
    """Write test.jsonl, entity2id.json and item_ids.json into `folder`; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "entity2id.json").write_text(json.dumps(ENTITIES))
    (folder / "item_ids.json").write_text(json.dumps(FILMS))
    lines = [json.dumps(t) for t in (TURNS if turns is None else turns)]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    return folder
