"""Level normalisation: quiet recordings are brought up to a speech level before the VAD.

    from speech.level import normalize_level
    audio = normalize_level(load_audio(path))        # float32 (N,), same length

Home recordings are often quiet (a phone on the table: -35 to -50 dBFS), and Silero VAD at its
default threshold misses speech that quiet. `normalize_level` applies one linear gain, so the
waveform keeps its shape:

1. Level: the RMS of 30 ms frames, in dBFS. The *active level* is the 95th percentile of the
   frames (the loud part, i.e. speech, even when most of the recording is pause); the *floor*
   is the 10th percentile (the pauses: room noise).
2. Gain = TARGET_DBFS - active level. Audio louder than the target is turned down to it; a boost
   is capped so that silence stays silence:
   - at most MAX_GAIN_DB;
   - the floor may rise to FLOOR_CEILING_DBFS at most: a steady hum or hiss (floor close to
     its active level) gets little or no gain, so noise is not turned into something the VAD
     or a recogniser takes for speech;
   - the peak stays at or below PEAK_DBFS (no clipping).

Digital silence never gets here: `speech.audio.load_audio` refuses it (SilentAudioError) first.
The gain is the same for a clip and for the clip attenuated by up to ~40 dB (until a cap binds),
so both give the same VAD regions.

One implementation for speech to text (both engines), gender and conversation analysis. Where the
normalised audio also feeds a recogniser is decided per engine by measurement; releases imported
from the study (speech.import_deepspeech) keep the study's features exactly, so for them the
normalised audio is used for the VAD only (`feeds_recogniser`).
"""
from __future__ import annotations

import numpy as np

from .audio import peak_level

TARGET_DBFS = -20.0        # active (speech) level after normalisation
MAX_GAIN_DB = 40.0         # never boost more than this
FLOOR_CEILING_DBFS = -45.0  # the pauses (10th-percentile frame) may not be raised above this
PEAK_DBFS = -1.0           # no clipping: the peak stays below this
FRAME_SECONDS = 0.03
ACTIVE_PERCENTILE = 95.0
FLOOR_PERCENTILE = 10.0
_EPS = 1e-10


def _db(x: float) -> float:
    return 20.0 * float(np.log10(max(x, _EPS)))


def frame_levels(audio: np.ndarray, sr: int = 16000) -> np.ndarray:
    """RMS level in dBFS of each FRAME_SECONDS frame (the last, partial frame included). Works on
    a view of the audio: an hour costs one value per frame, not float64 copies of the samples."""
    n = max(1, int(round(FRAME_SECONDS * sr)))
    x = np.asarray(audio, dtype=np.float32)
    if x.size == 0:
        return np.zeros(0)
    full = x.size // n
    frames = x[:full * n].reshape(full, n)                       # a view
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / n   # cast in buffered chunks
    if x.size > full * n:                                         # the partial last frame
        tail = x[full * n:].astype(np.float64)
        power = np.append(power, float(np.dot(tail, tail)) / tail.size)
    return 10.0 * np.log10(np.maximum(power, _EPS ** 2))


def level_gain_db(audio: np.ndarray, sr: int = 16000) -> float:
    """The gain in dB that `normalize_level` applies to `audio` (negative: turned down); the rule is
    in the module doc."""
    levels = frame_levels(audio, sr)
    if levels.size == 0:
        return 0.0
    active = float(np.percentile(levels, ACTIVE_PERCENTILE))
    floor = float(np.percentile(levels, FLOOR_PERCENTILE))
    peak = _db(peak_level(np.asarray(audio)))
    gain = TARGET_DBFS - active
    if gain <= 0.0:
        return gain
    return max(0.0, min(gain, MAX_GAIN_DB, FLOOR_CEILING_DBFS - floor, PEAK_DBFS - peak))


def normalize_level(audio: np.ndarray, sr: int = 16000) -> np.ndarray:
    """16 kHz mono float32 audio -> the same audio times one gain (see the module doc); float32."""
    audio = np.asarray(audio, dtype=np.float32)
    gain = level_gain_db(audio, sr)
    if gain == 0.0:
        return audio
    return (audio * np.float32(10.0 ** (gain / 20.0))).astype(np.float32, copy=False)


def feeds_recogniser(config: dict) -> bool:
    """Whether a DeepSpeech2 release may be given level-normalised audio: not when it was imported
    from the study (its features must stay the study's exactly)."""
    return "imported_from" not in config
