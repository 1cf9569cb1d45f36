"""ReDial-format reading: entity names -> titles/years, dialogue parsing, samples, enrichment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.datasets.redial import load_redial, parse_dialogue, parse_entity
from retrieval.errors import CatalogueError
from tests.retrieval.datasets.redial_data import write_redial


@pytest.mark.parametrize(
    ("uri", "title", "year"),
    [
        ("<http://dbpedia.org/resource/Water_(1985_film)>", "Water", 1985),
        ("<http://dbpedia.org/resource/Blade_Runner>", "Blade Runner", None),
        ("<http://dbpedia.org/resource/Ender's_Game_(film)>", "Ender's Game", None),
        ("<http://dbpedia.org/resource/The_Crown_(season_1)>", "The Crown", None),
        (
            "<http://dbpedia.org/resource/L%C3%A9on:_The_Professional>",
            "Léon: The Professional",
            None,
        ),
        (
            "<http://dbpedia.org/resource/Yours,_Mine_&_Ours_(2005_film)>",
            "Yours, Mine & Ours",
            2005,
        ),
        ("<http://dbpedia.org/resource/(500)_Days_of_Summer>", "(500) Days of Summer", None),
        ("Comedy", "Comedy", None),
    ],
)
def test_parse_entity(uri: str, title: str, year: int | None) -> None:
    assert parse_entity(uri) == (title, year)


def test_parse_dialogue_keeps_speakers_and_drops_the_open_system_turn() -> None:
    text = "\nUser: Hi I like Heat (1995)\nSystem: Try Ronin (1998)\nUser: ok\nSystem: "
    assert parse_dialogue(text) == (
        ("user", "Hi I like Heat (1995)"),
        ("system", "Try Ronin (1998)"),
        ("user", "ok"),
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_redial(write_redial(tmp_path_factory.mktemp("redial")))


def test_catalogue_from_entity_names(tiny) -> None:  # type: ignore[no-untyped-def]
    items = {it.id: it for it in tiny.items}
    assert list(items) == [str(i) for i in range(10, 20)]  # item_ids.json order, films only
    assert items["19"].title == "Water" and items["19"].metadata["year"] == 1985
    assert items["14"].title == "The Shining"
    # enrichment from movies.db + MovieLens latest-small (real packages)
    shining = items["14"]
    assert shining.metadata["year"] == 1980
    assert "Horror" in shining.tags
    assert "Stanley Kubrick" in shining.metadata["directors"]
    assert "Kubrick" in shining.description
    assert shining.metadata.get("movielens_id") is not None
    # a 2018 film is in neither source: no text, no popularity, no ratings
    assert items["16"].description == "" and tiny.popularity["16"] == 0.0
    assert tiny.popularity["17"] > 0.5  # Toy Story is well known
    assert set(tiny.interactions["item_id"]) <= set(items)
    assert (tiny.interactions["item_id"] == "17").sum() > 50


def test_samples_follow_the_recommendation_condition(tiny) -> None:  # type: ignore[no-untyped-def]
    got = [(tiny.turns[s.turn].turn_id, s.target) for s in tiny.samples()]
    # turn 2: 11 was mentioned before -> only 13; turn 5: a person -> no sample
    assert got == [("1", "11"), ("2", "13"), ("3", "14"), ("3", "15"), ("4", "18"), ("4", "16"),
                   ("6", "15")]  # fmt: skip
    assert tiny.dialog_ids() == ["d1", "d2", "d3", "d4", "d5"]
    assert tiny.turns[1].utterances[1] == ("system", "You should watch Police Academy (1984)")


def test_without_enrichment_titles_only(tmp_path: Path) -> None:
    data = load_redial(write_redial(tmp_path), enrich=False, ratings=False)
    assert all(
        it.description in ("",) or it.description.startswith("Released") for it in data.items
    )
    assert data.interactions.empty and len(data.items) == 10


def test_bad_directories_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="not found"):
        load_redial(tmp_path / "nowhere")
    folder = write_redial(tmp_path / "a")
    (folder / "item_ids.json").unlink()
    with pytest.raises(CatalogueError, match="item_ids.json not found"):
        load_redial(folder)
    folder = write_redial(tmp_path / "b")
    (folder / "item_ids.json").write_text(json.dumps([10, 999]))
    with pytest.raises(CatalogueError, match="no name in entity2id.json.*999"):
        load_redial(folder, enrich=False, ratings=False)
    folder = write_redial(tmp_path / "c")
    with (folder / "test.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(CatalogueError, match="line 7"):
        load_redial(folder, enrich=False, ratings=False)
