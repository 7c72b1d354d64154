"""Does a recording carry the voice's whole band? A check that warns about telephone-band audio.

The gender / child model (`checkpoints/gender-child-ko`) was trained on 16 kHz recordings. Through
a telephone band (8 kHz, 300-3400 Hz) it got 67.0 % of held-out adults' utterances right (33.0 %
called `child`; one of the two men 5 %), through a 300 Hz high-pass alone 24.3 % (74.8 % `child`),
through a 3.4 kHz low-pass alone 79.1 % (one woman called `male`), while a 5.5 kHz low-pass and a
200 Hz high-pass changed nothing (`results/gender_bandwidth.md`; the pitch baseline kept 93.9 % of
the adults through the telephone band). So a recording whose spectrum stops near 4 kHz goes to
the release gender-child-ko names for it (`GenderClassifier.for_band`:
`checkpoints/gender-child-ko-narrowband`, adults 100 % right through the telephone band), and its
reports say so; a release without one answers with the plain warning, its labels unreliable.

The measure is the long-term spectrum of the louder half of the recording's frames: the energy
from 4.3 to 7.5 kHz against 300-3400 Hz. Over the same 257 held-out utterances it was -44.3 dB at
the lowest for 16 kHz speech (1 s crops; whole utterances -41.2, in household noise -38.8,
low-passed at 5.5 kHz -42.5), -63.8 at the highest through the telephone band and -77.3 low-passed
at 3.4 kHz; the warning sits between, at NARROWBAND_DB (a 4 kHz Butterworth low-pass, -71.9 to
-45.1, is mostly caught; an 8 kHz file has nothing above 4 kHz at all).

    from speech.band import band_warnings
    band_warnings(audio)        # [] or ["Narrowband audio ..."]; audio: 16 kHz mono float array
"""
from __future__ import annotations

import numpy as np

from .audio import SAMPLE_RATE

N_FFT = 512
MAX_FRAMES = 4000          # frames spread over a long recording (about a minute of audio in all)
HIGH_BAND = (4300.0, 7500.0)
SPEECH_BAND = (300.0, 3400.0)
NARROWBAND_DB = -50.0      # high band this far or further under the speech band: narrowband
NARROWBAND_AUDIO = "Narrowband audio: nothing above about 4 kHz (a telephone line or an 8 kHz recording)."
NARROWBAND = (NARROWBAND_AUDIO + " The gender and child labels are unreliable on such audio: a 16 kHz "
              "recording of the same voices is needed (measured: results/gender_bandwidth.md).")


def narrowband_used(model: str) -> str:
    """The warning when a narrowband release (speech.gender.GenderClassifier.for_band) labelled the audio."""
    return (f"{NARROWBAND_AUDIO} Labelled by {model}, the gender model fine-tuned for such audio (through a "
            f"telephone band: held-out adults 100 % right, children made from adults 99.6 % called child; "
            f"results/gender_band_finetune.md).")


def high_band_db(audio: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Energy in HIGH_BAND against SPEECH_BAND (dB) of the louder half of `audio`'s frames."""
    if sr != SAMPLE_RATE:
        raise ValueError(f"high_band_db needs {SAMPLE_RATE} Hz audio, got {sr}")
    x = np.asarray(audio, dtype=np.float32)
    n = (len(x) - N_FFT) // N_FFT + 1
    if n < 1:
        return 0.0                                   # too short to say: no warning
    starts = np.linspace(0, len(x) - N_FFT, min(n, MAX_FRAMES)).astype(int)
    frames = x[starts[:, None] + np.arange(N_FFT)[None, :]] * np.hanning(N_FFT).astype(np.float32)
    p = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    level = p.sum(1)
    loud = p[level >= np.median(level)].mean(0)
    f = np.fft.rfftfreq(N_FFT, 1 / sr)
    band = lambda lo, hi: float(loud[(f >= lo) & (f < hi)].mean())
    speech = band(*SPEECH_BAND)
    if speech <= 0:
        return 0.0
    return float(10 * np.log10(band(*HIGH_BAND) / speech + 1e-30))


def band_warnings(audio: np.ndarray, sr: int = SAMPLE_RATE) -> list:
    """[] for a recording with the voice's whole band, [NARROWBAND] for telephone-band audio."""
    return [NARROWBAND] if high_band_db(audio, sr) <= NARROWBAND_DB else []
