"""Tempo, loudness and onset rate measured from a waveform (numpy only).

Why: YAMNet's top labels rarely name a mood for music, but "calm" and "energetic" differ in
things a signal measurement sees directly: beats per minute, how loud, how many note onsets
per second. These numbers are measured from the audio, so storing them as item metadata (and
words derived from them as tags) is evidence the system may read, not a leaked label.

The tempo estimate is the classic one: a spectral-flux onset envelope, its autocorrelation
over lags of 40-200 BPM, weighted by a log-normal prior around 110 BPM (tempo estimators
otherwise pick half or double the beat). Expect octave errors on sparse or rubato music.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FRAME = 1024  # STFT frame (samples at `rate`)
HOP = 512  # STFT hop; at 22.05 kHz this gives ~43 envelope frames per second
MIN_BPM, MAX_BPM = 40.0, 200.0  # tempo search range
PRIOR_BPM = 110.0  # centre of the log-normal tempo prior (pop/classical typical beat)
PRIOR_OCTAVES = 1.0  # prior width, in octaves (standard deviation of log2 tempo)
MIN_SECONDS = 3.0  # below this, no tempo is estimated (too few beats to see a period)
SLOW_BPM = 85.0  # tempo below this is described as "slow"
FAST_BPM = 125.0  # tempo above this is described as "fast"
QUIET_DBFS = -24.0  # RMS level below this is described as "quiet"
LOUD_DBFS = -14.0  # RMS level above this is described as "loud"


@dataclass(frozen=True)
class AudioFeatures:
    """What was measured; `tempo_bpm` is None for clips too short to have a beat."""

    duration_s: float
    loudness_dbfs: float  # RMS level of the whole clip, dB relative to full scale
    peak_dbfs: float
    onset_rate: float  # detected note/event onsets per second
    tempo_bpm: float | None
    tempo_confidence: float  # autocorrelation peak height, 0..1

    def to_metadata(self) -> dict[str, Any]:
        return {
            k: (round(float(v), 2) if isinstance(v, float) else v) for k, v in asdict(self).items()
        }

    def words(self) -> list[str]:
        """Plain descriptions of the measurements ("slow tempo", "quiet") for tags."""
        out: list[str] = []
        if self.tempo_bpm is not None and self.tempo_confidence >= 0.2:
            if self.tempo_bpm < SLOW_BPM:
                out.append("slow tempo")
            elif self.tempo_bpm > FAST_BPM:
                out.append("fast tempo")
            else:
                out.append("moderate tempo")
        if self.loudness_dbfs < QUIET_DBFS:
            out.append("quiet")
        elif self.loudness_dbfs > LOUD_DBFS:
            out.append("loud")
        return out


def _db(x: float) -> float:
    return 20.0 * math.log10(max(x, 1e-10))


def onset_envelope(wave: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Half-wave-rectified log-spectral flux, one value per hop. Returns (envelope, fps)."""
    if wave.size < FRAME:
        return np.zeros(0, dtype=np.float64), rate / HOP
    n = 1 + (wave.size - FRAME) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    frames = wave[idx] * np.hanning(FRAME)[None, :]
    mag = np.log1p(100.0 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(mag, axis=0), 0.0).sum(axis=1)
    if flux.size >= 16:  # remove slow trends (a crescendo is not an onset)
        flux = flux - np.convolve(flux, np.ones(16) / 16, mode="same")
    return np.maximum(flux, 0.0), rate / HOP


def estimate_tempo(env: np.ndarray, fps: float) -> tuple[float | None, float]:
    """(BPM, confidence) from an onset envelope; (None, 0) when it is too short or flat."""
    if env.size < fps * MIN_SECONDS or not np.any(env > 0):
        return None, 0.0
    # Smooth first: a beat period is rarely a whole number of frames, and unsmoothed peaks
    # that alternate between two frame spacings make twice the period look stronger.
    x = np.convolve(env, np.hanning(7)[1:-1] / np.hanning(7)[1:-1].sum(), mode="same")
    x = x - x.mean()
    spec = np.fft.rfft(x, n=2 * x.size)
    ac = np.fft.irfft(spec * np.conj(spec))[: x.size]
    if ac[0] <= 0:
        return None, 0.0
    ac = ac / ac[0]
    lo = max(1, int(fps * 60.0 / MAX_BPM))
    hi = min(x.size - 1, int(fps * 60.0 / MIN_BPM) + 1)
    if hi <= lo:
        return None, 0.0
    lags = np.arange(lo, hi)
    bpm = 60.0 * fps / lags
    prior = np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    weighted = ac[lo:hi] * prior
    best = int(np.argmax(weighted))
    lag = float(lags[best])
    if 0 < best < len(lags) - 1:  # parabolic interpolation for a sub-frame lag
        a, b, c = ac[lo + best - 1], ac[lo + best], ac[lo + best + 1]
        denom = a - 2 * b + c
        if denom < 0:
            lag += 0.5 * (a - c) / denom
    return 60.0 * fps / lag, float(max(0.0, ac[lo + best]))


def measure(wave: np.ndarray, rate: int) -> AudioFeatures:
    """Measure a mono float waveform in [-1, 1] at `rate` Hz.

    Raises:
        ValueError: empty input or a non-positive rate.
    """
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    if x.size == 0 or rate <= 0:
        raise ValueError("measure: empty audio or non-positive sample rate")
    rms = float(np.sqrt(np.mean(x**2)))
    env, fps = onset_envelope(x, rate)
    onsets = 0
    if env.size > 2:
        thr = env.mean() + env.std()
        peaks = (env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & (env[1:-1] > thr)
        onsets = int(peaks.sum())
    tempo, conf = estimate_tempo(env, fps)
    return AudioFeatures(
        duration_s=x.size / rate,
        loudness_dbfs=_db(rms),
        peak_dbfs=_db(float(np.max(np.abs(x)))),
        onset_rate=onsets / (x.size / rate),
        tempo_bpm=tempo,
        tempo_confidence=conf,
    )
