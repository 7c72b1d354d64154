"""Is a speaker cluster a TV or radio? A score from how the cluster's speech *sounds*, not who speaks.

A TV voice reaches the recorder through broadcast compression, a small loudspeaker and the room,
often over music; a family member talks into the room directly. Measured over the cluster's spans
(16 kHz), the cues are:

* `hf_db`, `lf_db`: energy above 4 kHz and below 150 Hz relative to 300-3000 Hz, on the louder
  half of the frames (loudspeaker band limit);
* `dyn_db`: 95th minus 10th percentile of the 10 ms frame level (compression, music bed, reverb
  fill the dips between syllables);
* `fall_db`: the steepest 10 ms level drops (5th percentile of the frame-to-frame change);
  reverberation stretches every offset;
* `asym_db`: steepest rise plus steepest drop (rooms leave onsets sharp and smear offsets);
* `coverage` (reported, not used by the model): the share of the time between the first and last
  span that is inside a span;
* `hf_edge_db`, `lf_edge_db`: the steepest fall of the long-term spectrum (dB per 1/6 octave)
  between 2.5 and 7.8 kHz, and its steepest rise between 60 and 500 Hz: a loudspeaker's filters
  cut sharply where speech rolls off gently.

A logistic regression over these (standardised) gives `tv_probability`; its coefficients, the
decision threshold and their provenance live in `checkpoints/tv-ko/config.json` (written by
`training/train_tv.py`, which also measures it).

    from speech.tv import tv_probability, is_tv
    p = tv_probability(audio, [(12.0, 15.5), (20.1, 31.0)])   # audio: 16 kHz mono float array
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from .audio import SAMPLE_RATE

MODEL_TYPE = "tv-logistic"
# `coverage` is measured but not used: how spans are cut depends on the diarization and on how much
# the family talks over the TV, and a model fitted on it learns the material's span layout instead.
FEATURES = ("hf_db", "lf_db", "dyn_db", "fall_db", "asym_db", "hf_edge_db", "lf_edge_db")
N_FFT, HOP = 512, 160
MIN_SECONDS = 1.0          # less speech than this in a cluster: not called TV (see tv_probability)
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "checkpoints" / "tv-ko"


def _band(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (freqs >= lo) & (freqs < hi)


def _edge(ltas: np.ndarray, freqs: np.ndarray, lo: float, hi: float, falling: bool) -> float:
    """Steepest fall (or rise) of the long-term spectrum in dB between adjacent 1/6-octave bands."""
    edges = lo * 2 ** (np.arange(0, np.log2(hi / lo) + 1e-9, 1 / 6))
    db = np.array([10 * np.log10(ltas[_band(freqs, a, b)].mean()) if _band(freqs, a, b).any() else np.nan
                   for a, b in zip(edges[:-1], edges[1:])])
    step = np.diff(db[np.isfinite(db)])
    if len(step) == 0:
        return 0.0
    return float(-step.min() if falling else step.max())


def cluster_features(audio: np.ndarray, spans: list[tuple[float, float]], sr: int = SAMPLE_RATE) -> dict:
    """The cues above for the (start, end)-second spans of one 16 kHz recording."""
    if sr != SAMPLE_RATE:
        raise ValueError(f"tv features need {SAMPLE_RATE} Hz audio, got {sr}")
    spans = sorted((max(0.0, float(s)), min(len(audio) / sr, float(e))) for s, e in spans)
    spans = [(s, e) for s, e in spans if e - s >= N_FFT / sr]
    if not spans:
        raise ValueError("no span of at least 32 ms inside the audio")
    window = np.hanning(N_FFT).astype(np.float32)
    powers, levels, deltas = [], [], []
    for s, e in spans:
        x = audio[int(s * sr):int(e * sr)].astype(np.float32)
        n = 1 + (len(x) - N_FFT) // HOP
        idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
        p = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2         # (T, F)
        level = 10 * np.log10(p.sum(1) + 1e-10)
        powers.append(p)
        levels.append(level)
        deltas.append(np.diff(level))
    p, level = np.concatenate(powers), np.concatenate(levels)
    delta = np.concatenate(deltas) if sum(len(d) for d in deltas) else np.zeros(1)
    freqs = np.fft.rfftfreq(N_FFT, 1 / sr)
    loud = level >= np.median(level)
    mid = p[loud][:, _band(freqs, 300, 3000)].sum() + 1e-10
    # only steps within 40 dB of the loudest frames: the noise floor's flicker is not an offset
    active = (level[1:] > level.max() - 40) | (level[:-1] > level.max() - 40) if len(level) > 1 else np.ones(1, bool)
    d = delta[active[:len(delta)]] if active.any() else delta
    fall, rise = np.percentile(d, 5), np.percentile(d, 95)
    total = sum(e - s for s, e in spans)
    ltas = p[loud].mean(0) + 1e-10
    return {
        "hf_edge_db": _edge(ltas, freqs, 2500, 7800, falling=True),
        "lf_edge_db": _edge(ltas, freqs, 60, 500, falling=False),
        "hf_db": float(10 * np.log10(p[loud][:, _band(freqs, 4000, 7800)].sum() / mid + 1e-10)),
        "lf_db": float(10 * np.log10(p[loud][:, _band(freqs, 50, 150)].sum() / mid + 1e-10)),
        "dyn_db": float(np.percentile(level, 95) - np.percentile(level, 10)),
        "fall_db": float(fall),
        "asym_db": float(rise + fall),
        "coverage": float(total / max(1e-6, spans[-1][1] - spans[0][0])),
    }


@dataclass(frozen=True)
class TVDetector:
    """Standardise the features, then a logistic regression; `threshold` turns it into a decision."""

    mean: tuple
    scale: tuple
    coef: tuple
    intercept: float
    threshold: float = 0.5
    features: tuple = FEATURES
    config: Optional[dict] = None

    @classmethod
    def load(cls, folder: Optional[str] = None) -> "TVDetector":
        from .checkpoint import read_config

        config = read_config(Path(folder) if folder else DEFAULT_FOLDER)
        if config.get("model_type") != MODEL_TYPE:
            raise ValueError(f"{folder or DEFAULT_FOLDER} holds a {config.get('model_type')!r} model, "
                             f"but a {MODEL_TYPE!r} model is needed")
        m = config["model"]
        if tuple(m["features"]) != FEATURES:
            raise ValueError(f"the TV model uses features {m['features']}; this code computes {list(FEATURES)}")
        return cls(tuple(m["mean"]), tuple(m["scale"]), tuple(m["coef"]), float(m["intercept"]),
                   float(m.get("threshold", 0.5)), FEATURES, config)

    def probability_of(self, feats: dict) -> float:
        x = (np.array([feats[k] for k in self.features]) - np.array(self.mean)) / np.array(self.scale)
        z = float(x @ np.array(self.coef) + self.intercept)
        return float(1 / (1 + np.exp(-np.clip(z, -50, 50))))

    def probability(self, audio: np.ndarray, spans: list[tuple[float, float]]) -> float:
        return self.probability_of(cluster_features(audio, spans))


@lru_cache(maxsize=1)
def default_detector() -> TVDetector:
    return TVDetector.load()


def tv_probability(audio: np.ndarray, spans: list[tuple[float, float]],
                   detector: Optional[TVDetector] = None) -> float:
    """Probability that the speech in `spans` of `audio` (16 kHz mono) comes from a TV or radio.

    Spans with less than MIN_SECONDS of speech in all give 0.0: too little to call anything TV,
    and a family member must never be dropped from the shares on a guess."""
    if sum(max(0.0, e - s) for s, e in spans) < MIN_SECONDS:
        return 0.0
    return (detector or default_detector()).probability(np.asarray(audio, dtype=np.float32), spans)


def is_tv(audio: np.ndarray, spans: list[tuple[float, float]], detector: Optional[TVDetector] = None) -> bool:
    detector = detector or default_detector()
    return tv_probability(audio, spans, detector) >= detector.threshold
