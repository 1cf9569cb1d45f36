"""Mood requests for something to listen to are matched against what the audio measured."""

from __future__ import annotations

from agent.chat.moods import is_music, measured, mood_scores, taste_scores
from agent.chat.request import parse_turn
from agent.chat.state import update_state
from agent.chat.turn import _kind_and_era_filters, _mood_fused, _sound_taste, wants_music
from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from retrieval.config import HybridConfig
from retrieval.profiles import History
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


CALM_FAN = _track("calm-fan-liked", 0.8, 0.02, 0.1, 65, 1.8, -22)  # what the user liked
BANGER = _track("banger", 0.05, 0.6, 0.5, 160, 5.0, -8)  # what the user disliked


def test_what_you_liked_to_hear_orders_tracks_when_no_mood_is_named() -> None:
    fit = taste_scores([LOUD, MID, SOFT], [CALM_FAN])
    assert fit is not None and list(fit.argsort()[::-1]) == [2, 1, 0]  # soft, mid, loud
    # a fan of loud tracks gets the opposite order from the same candidates
    loud_fan = taste_scores([LOUD, MID, SOFT], [BANGER])
    assert loud_fan is not None and list(loud_fan.argsort()[::-1]) == [0, 1, 2]
    # a dislike pushes its like away: liking the middle track but not the loud one
    mid_not_loud = taste_scores([LOUD, SOFT], [MID], [BANGER])
    assert mid_not_loud is not None and mid_not_loud[1] > mid_not_loud[0]
    assert taste_scores([LOUD, SOFT], [EFFECT]) is None  # nothing liked was measured


def test_something_to_listen_to_follows_the_users_taste() -> None:
    items = {i.id: i for i in (SOFT, MID, LOUD, EFFECT, CALM_FAN, BANGER)}
    linker = make_linker()
    history = History(["calm-fan-liked"], disliked=["banger"])
    ask = update_state(None, "user", "something to listen to", linker=linker)
    liked, disliked = _sound_taste(ask, history, items, HybridConfig())
    assert [i.id for i in liked] == ["calm-fan-liked"] and [i.id for i in disliked] == ["banger"]
    cands = [
        Candidate(i, s, rank=n + 1)
        for n, (i, s) in enumerate([("loud", 0.9), ("mid", 0.8), ("soft", 0.7)])
    ]
    fused = _mood_fused(cands, ask, items, 1.0, (liked, disliked))
    assert [c.item_id for c in fused] == ["soft", "mid", "loud"] and "taste" in fused[0].sources
    # a named mood wins over the taste, and "a sound of ..." is a clip, not listening by taste
    for text in ("something energetic to listen to", "a sound for my kids", "a picture"):
        state = update_state(None, "user", text, linker=linker)
        assert _sound_taste(state, history, items, HybridConfig()) == ([], [])
