"""Pitch (F0) tracking: what the plots draw under a spectrogram, and what the gender evaluation
and the child-voice synthesis measure. Analysis only; speech.plots draws.
"""
from __future__ import annotations

import numpy as np

from .audio import SAMPLE_RATE


def pitch_track(audio: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = 60.0, fmax: float = 500.0,
                hop: float = 0.01, frame: float = 0.064, min_periodicity: float = 0.5,
                min_level_db: float = -40.0) -> tuple[np.ndarray, np.ndarray]:
    """F0 per frame: -> (times in seconds, f0 in Hz with NaN where unvoiced).

    YIN (librosa.yin) gives the period; a frame counts as voiced when the normalised
    autocorrelation at that period reaches `min_periodicity` and its level is within
    `min_level_db` of the loudest frame. ~100x faster than pYIN, which matters for hour-long input.
    """
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    hop_length = max(1, int(round(hop * sr)))
    frame_length = int(2 ** np.ceil(np.log2(frame * sr)))
    if len(audio) < frame_length:
        audio = np.pad(audio, (0, frame_length - len(audio)))
    f0 = librosa.yin(audio, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop_length,
                     center=True)
    padded = np.pad(audio, frame_length // 2)
    frames = librosa.util.frame(padded, frame_length=frame_length, hop_length=hop_length)[:, :len(f0)]  # (L, N)
    period = np.clip(np.round(sr / f0).astype(int), 1, frame_length // 2)
    width = frame_length - int(np.ceil(sr / fmin))
    idx = np.arange(width)[:, None]
    x = frames[:width]
    y = np.take_along_axis(frames, idx + period[None, :], axis=0)
    num = (x * y).sum(0)
    den = np.sqrt((x * x).sum(0) * (y * y).sum(0)) + 1e-12
    periodicity = num / den
    level = 10 * np.log10((frames ** 2).mean(0) + 1e-12)
    voiced = (periodicity >= min_periodicity) & (level >= level.max() + min_level_db)
    times = np.arange(len(f0)) * hop_length / sr
    return times, np.where(voiced, f0, np.nan).astype(np.float32)


def median_f0(audio: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Median F0 over voiced frames (NaN when nothing is voiced)."""
    _, f0 = pitch_track(audio, sr)
    f0 = f0[np.isfinite(f0)]
    return float(np.median(f0)) if f0.size else float("nan")
