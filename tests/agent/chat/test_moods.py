"""Mood requests for something to listen to are matched against what the audio measured."""

from __future__ import annotations

from agent.chat.moods import is_music, measured, mood_scores
from agent.chat.request import parse_turn
from agent.chat.state import update_state
from agent.chat.turn import _kind_and_era_filters, _mood_fused, wants_music
from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from tests.agent.chat.catalogue_data import make_linker


def _track(
    i: str, tender: float, exciting: float, happy: float, bpm: float, onsets: float, loud: float
) -> Item:
    moods = {
        "Tender music": tender,
        "Exciting music": exciting,
        "Happy music": happy,
        "Sad music": 0.0,
        "Angry music": 0.0,
        "Scary music": 0.0,
    }
    meta = {
        "yamnet_moods": moods,
        "tempo_bpm": bpm,
        "tempo_confidence": 0.6,
        "onset_rate": onsets,
        "loudness_dbfs": loud,
    }
    return Item(i, f"Track {i}", audio=f"/x/{i}.ogg", tags=("music",), metadata=meta)


SOFT = _track("soft", 0.7, 0.05, 0.2, 70, 2.0, -20)
MID = _track("mid", 0.4, 0.2, 0.4, 100, 3.0, -15)
LOUD = _track("loud", 0.1, 0.5, 0.4, 150, 4.5, -9)
EFFECT = Item(
    "hurt",
    "Hurt sound effect 2",
    audio="/x/hurt.ogg",
    tags=("sound",),
    metadata={"loudness_dbfs": -5.0},
)


def test_calm_and_energetic_order_tracks_oppositely() -> None:
    tracks = [LOUD, MID, SOFT]
    calm = mood_scores(tracks, ["calm"])
    energetic = mood_scores(tracks, ["energetic"])
    assert calm is not None and energetic is not None
    assert list(calm.argsort()[::-1]) == [2, 1, 0]  # soft, mid, loud
    assert list(energetic.argsort()[::-1]) == [0, 1, 2]
    # "nothing energetic" ranks like a wish for the opposite
    not_energetic = mood_scores(tracks, [], ["energetic"])
    assert list(not_energetic.argsort()[::-1]) == [2, 1, 0]


def test_no_evidence_means_no_opinion() -> None:
    assert mood_scores([SOFT, LOUD], ["funny"]) is None  # no YAMNet class for funny
    assert mood_scores([EFFECT, EFFECT], ["calm"]) is None  # a bare loudness is not a mood
    assert measured(EFFECT) == {}
    assert is_music(SOFT) and not is_music(EFFECT)


def test_isnt_and_animal_sounds_are_read() -> None:
    p = parse_turn("music that isn't energetic", [])
    assert p.kinds == ["audio"] and p.exclude_terms == ["energetic"] and not p.moods
    assert parse_turn("animal sounds", []).kinds == ["audio"]
    assert parse_turn("that sounds like fun", []).kinds == []


def test_a_calm_request_wants_music_and_puts_the_soft_track_first() -> None:
    items = {i.id: i for i in (SOFT, MID, LOUD, EFFECT)}
    linker = make_linker()
    state = update_state(None, "user", "something calm to listen to while I read", linker=linker)
    assert wants_music(state)
    off, notes = _kind_and_era_filters(state, items, set(), 2)
    assert off == {"hurt"} and not notes  # sound effects are not what was asked for
    assert not wants_music(update_state(None, "user", "animal sounds", linker=linker))
    # the retriever liked the loud track best; the measured mood fit moves the soft one up
    cands = [
        Candidate(i, s, rank=n + 1)
        for n, (i, s) in enumerate([("loud", 0.9), ("mid", 0.8), ("soft", 0.7)])
    ]
    fused = _mood_fused(cands, state, items, 0.75)
    assert [c.item_id for c in fused][0] == "soft" and fused[0].rank == 1
    assert "mood" in fused[0].sources
    assert [c.item_id for c in _mood_fused(cands, state, items, 0.0)] == ["loud", "mid", "soft"]
