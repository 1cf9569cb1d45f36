"""How well an item's *measured* sound fits the moods a request asks for (or rules out).

Why: matched by text similarity alone, "something calm to listen to" found animal sounds and
energetic tracks, because the words "calm" and "relaxing" appear in no track's text. The mood
of a track is a property of its audio, and the catalogue build measures it: the share of each
of YAMNet's six AudioSet music-mood classes (`metadata["yamnet_moods"]`) and the signal's
tempo, onset rate and loudness (`tempo_bpm`, `onset_rate`, `loudness_dbfs`).

`MOOD_EVIDENCE` says, per canonical mood of `agent.chat.request`, which measurements speak for
it (+) and against it (-), from what the AudioSet classes mean ("Tender music" is calm, "Exciting
music" is not) and what the signal means (calm is slow, sparse and quiet). Each measurement is
z-scored over the candidates being ranked, so units and catalogue-wide offsets do not matter;
an item without measurements scores 0 (neutral). Moods the request rules out ("nothing
energetic") count with the opposite sign.

The score is fused with the retriever's in `agent.chat.turn` at `[hybrid] chat_mood_weight`
(chosen on the validation requests of `bench.requests`; docs/requests.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from retrieval.catalogue import Item

__all__ = ["MOOD_EVIDENCE", "MUSIC_WORDS", "is_music", "measured", "mood_scores", "taste_scores"]

# mood -> {measurement: weight}. YAMNet class names as AudioSet spells them; "tempo" (BPM,
# counted only where the beat tracker was confident), "onsets" (note onsets per second) and
# "loudness" (dBFS) from the signal. Moods without a row (e.g. "funny": YAMNet's six mood
# classes have no funny one) are left to the text match and the LLM.
MOOD_EVIDENCE: dict[str, dict[str, float]] = {
    "calm": {
        "Tender music": 1.0,
        "Happy music": -0.5,
        "Exciting music": -1.0,
        "Angry music": -1.0,
        "Scary music": -0.5,
        "tempo": -0.5,
        "onsets": -0.5,
        "loudness": -0.5,
    },
    "energetic": {
        "Exciting music": 1.0,
        "Happy music": 0.5,
        "Angry music": 0.5,
        "Tender music": -1.0,
        "tempo": 0.5,
        "onsets": 0.5,
        "loudness": 0.5,
    },
    "exciting": {"Exciting music": 1.0, "Tender music": -0.5, "tempo": 0.5, "onsets": 0.5},
    "happy": {"Happy music": 1.0, "Sad music": -0.5, "Scary music": -0.5, "Angry music": -0.5},
    "sad": {"Sad music": 1.0, "Happy music": -0.5, "Exciting music": -0.5},
    "tender": {"Tender music": 1.0, "Exciting music": -0.5, "Angry music": -0.5},
    "romantic": {"Tender music": 1.0, "Angry music": -0.5, "Scary music": -0.5},
    "nostalgic": {"Tender music": 0.5, "Sad music": 0.5, "Exciting music": -0.5},
    "scary": {"Scary music": 1.0, "Happy music": -0.5},
    "dark": {"Scary music": 0.5, "Sad music": 0.5, "Happy music": -0.5},
    # attributes of the request that are measurements of the signal
    "fast": {"tempo": 1.0, "onsets": 0.5},
    "slow": {"tempo": -1.0, "onsets": -0.5},
}
MIN_TEMPO_CONFIDENCE = 0.3  # below this the beat tracker's BPM is not used
# a request naming one of these (with "to listen to", or a mood) wants music, not sound effects
MUSIC_WORDS = re.compile(
    r"\b(?:music|songs?|tunes?|tracks?|melod(?:y|ies)|playlist|soundtracks?)\b", re.I
)


def is_music(item: Item) -> bool:
    """A music track: tagged "music" by its catalogue, or measured for music moods."""
    meta = item.metadata if isinstance(item.metadata, Mapping) else {}
    return bool(item.audio) and (
        "music" in (t.lower() for t in item.tags) or bool(meta.get("yamnet_moods"))
    )


def measured(item: Item) -> dict[str, float]:
    """The item's mood-relevant measurements (empty when its sound was not measured)."""
    meta = item.metadata if isinstance(item.metadata, Mapping) else {}
    out: dict[str, float] = {}
    moods = meta.get("yamnet_moods")
    if isinstance(moods, Mapping):
        for name, share in moods.items():
            if _finite(share):
                out[str(name)] = float(share)
    if _finite(meta.get("tempo_bpm")) and _finite(meta.get("tempo_confidence")):
        if float(meta["tempo_confidence"]) >= MIN_TEMPO_CONFIDENCE:
            out["tempo"] = float(meta["tempo_bpm"])
    if _finite(meta.get("onset_rate")):
        out["onsets"] = float(meta["onset_rate"])
    if _finite(meta.get("loudness_dbfs")):
        out["loudness"] = float(meta["loudness_dbfs"])
    return out if "tempo" in out or len(out) > 2 else {}  # a bare loudness is not a mood


def mood_scores(
    items: Sequence[Item], wanted: Sequence[str], ruled_out: Sequence[str] = ()
) -> np.ndarray | None:
    """Per item, how well its measured sound fits `wanted` moods minus `ruled_out` ones.

    Returns None when no mood in either list has evidence or no item was measured (the caller
    then keeps the retriever's order). Scores are sums of z-scored measurements over `items`.
    """
    weights: dict[str, float] = {}
    for sign, moods in ((1.0, wanted), (-1.0, ruled_out)):
        for mood in dict.fromkeys(moods):
            for feature, w in MOOD_EVIDENCE.get(mood, {}).items():
                weights[feature] = weights.get(feature, 0.0) + sign * w
    if not weights:
        return None
    rows = [measured(it) for it in items]
    if not any(rows):
        return None
    out = np.zeros(len(items), dtype=np.float64)
    for feature, w in weights.items():
        z = _zscored(rows, feature) if w != 0.0 else None
        if z is not None:
            out += w * z
    return out


def _zscored(rows: Sequence[Mapping[str, float]], feature: str) -> np.ndarray | None:
    """`feature` z-scored over the rows that measured it, 0 for the others; None when fewer
    than two rows measured it or all of them measured the same value."""
    have = np.asarray([feature in r for r in rows])
    if have.sum() < 2:
        return None
    vals = np.asarray([r[feature] for r in rows if feature in r], dtype=np.float64)
    sd = vals.std()
    if sd <= 1e-12:
        return None
    z = np.zeros(len(rows))
    z[have] = (vals - vals.mean()) / sd
    return z


def taste_scores(
    items: Sequence[Item],
    liked: Sequence[Item],
    disliked: Sequence[Item] = (),
    *,
    negative_weight: float = 0.5,
) -> np.ndarray | None:
    """Per item, how much its measured sound is like the tracks the user liked (and unlike the
    ones they disliked): the mood of "something to listen to" when the words name none.

    Why: Maya, who liked three calm tracks, asked for "something to listen to" and got an
    energetic one; the tracks' texts are alike, their sounds are not. Every measurement is
    z-scored over the candidates and the history together; the taste is the mean liked row
    minus `negative_weight` x the mean disliked row, and an item's score is its dot product
    with it (0 for an item that was not measured). None when no liked item was measured.
    """
    pool = [*items, *liked, *disliked]
    rows = [measured(it) for it in pool]
    n, n_liked = len(items), len(liked)
    if not any(rows[n : n + n_liked]):
        return None
    features = sorted({f for r in rows for f in r})
    z = np.zeros((len(pool), len(features)))
    for j, feature in enumerate(features):
        col = _zscored(rows, feature)
        if col is not None:
            z[:, j] = col
    was = np.asarray([bool(r) for r in rows])
    likes = z[n : n + n_liked][was[n : n + n_liked]]
    taste = likes.mean(0)
    dis = z[n + n_liked :][was[n + n_liked :]]
    if len(dis):
        taste = taste - negative_weight * dis.mean(0)
    return z[:n] @ taste


def _finite(value: Any) -> bool:
    try:
        return value is not None and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False
