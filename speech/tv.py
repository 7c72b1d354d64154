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
from typing import Optional

import numpy as np

from .audio import SAMPLE_RATE
from .hub import default_model

MODEL_TYPE = "tv-logistic"
# `coverage` is measured but not used: how spans are cut depends on the diarization and on how much
# the family talks over the TV, and a model fitted on it learns the material's span layout instead.
FEATURES = ("hf_db", "lf_db", "dyn_db", "fall_db", "asym_db", "hf_edge_db", "lf_edge_db")
N_FFT, HOP = 512, 160
MIN_SECONDS = 1.0          # less speech than this in a cluster: not called TV (see tv_probability)
MAX_SECONDS = 300.0        # a longer cluster is judged on spans spread over it, this much in all:
                           # its spectra would otherwise take ~0.7 GB per hour of speech
DEFAULT_FOLDER = default_model("tv")


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
        from .bundle import load_bundle   # (torch only when a detector is loaded)

        bundle = load_bundle(folder, MODEL_TYPE)
        config = bundle.to_config()
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
    return (detector or default_detector()).probability(np.asarray(audio, dtype=np.float32), spread(spans))


def spread(spans: list[tuple[float, float]], seconds: float = MAX_SECONDS) -> list[tuple[float, float]]:
    """At most about `seconds` of the spans, taken evenly over all of them (all when they hold less)."""
    spans = sorted(spans)
    total = sum(max(0.0, e - s) for s, e in spans)
    if total <= seconds:
        return spans
    keep = max(1, int(np.ceil(len(spans) * seconds / total)))
    return [spans[i] for i in sorted(set(np.linspace(0, len(spans) - 1, keep).round().astype(int).tolist()))]


def is_tv(audio: np.ndarray, spans: list[tuple[float, float]], detector: Optional[TVDetector] = None) -> bool:
    detector = detector or default_detector()
    return tv_probability(audio, spans, detector) >= detector.threshold


# Speakers of one recording judged together (`tv_speakers`). Chosen on train conversations only
# by training/tune_tv.py (results/tv_speakers.md): a family quiet for 10-40 s while the TV talks
# (make_conversations --quiet-prob 0.3) at 0-5 dB over household noise, with and without a parent
# across the room, and families with a child.
MIN_TV_SECONDS = 15.0     # a TV talks for long stretches: less in all is family whatever the scores
FAR_DB = -9.0             # "far": speech level this far under the loudest family-sounding speaker ...
FAR_PROBABILITY = 0.2     # ... and this TV-like. Parents across the room (make_conversations --far-db 8)
                          # came out 2.5-6.9 dB under the loudest speaker, p 0.08-0.61
SOUNDS_DB = -9.0          # one that sounds like a TV must be this far under it (None: any level); a
                          # synthetic child scored 0.876 1.5 dB under, a parent 16 dB further away 0.87 6.9 dB under
REFERENCE_SECONDS = 10.0  # the loudest speaker is one with at least this much speech
MIN_TV_SPEAKERS = 2       # far-and-somewhat-TV-like speakers are TV only with this many candidates in all: a
                          # programme reaches the diarization as several voices, a parent 12-16 dB further
                          # away in a room without a TV (make_conversations --far-db 12/16) as one (0.21-0.87)


def speech_level(audio: np.ndarray, spans: list[tuple[float, float]], sr: int = SAMPLE_RATE) -> float:
    """Level of the louder part of the speech in `spans`: the 90th percentile of their frame levels
    (`speech.level.frame_levels`, dBFS), so pauses and soft syllable ends inside the spans do not
    lower it."""
    from .level import frame_levels

    levels = [frame_levels(audio[int(s * sr):int(e * sr)], sr) for s, e in spans if e > s]
    levels = np.concatenate(levels) if levels else np.zeros(0)
    return float(np.percentile(levels, 90)) if levels.size else -100.0


def speaker_scores(audio: np.ndarray, spans_of: dict, detector: Optional[TVDetector] = None) -> dict:
    """{key: spans} -> {key: (seconds of speech, tv_probability, speech_level)}: what `judge` needs."""
    detector = detector or default_detector()
    audio = np.asarray(audio, dtype=np.float32)
    out = {}
    for k, v in spans_of.items():
        seconds = sum(max(0.0, e - s) for s, e in v)
        out[k] = (seconds, tv_probability(audio, v, detector) if seconds > 0 else 0.0, speech_level(audio, spread(v)))
    return out


def judge(scores: dict, threshold: float, far_db: float = FAR_DB, far_probability: float = FAR_PROBABILITY,
          sounds_db: Optional[float] = SOUNDS_DB, min_seconds: float = MIN_TV_SECONDS,
          min_speakers: int = MIN_TV_SPEAKERS) -> set:
    """The decision of `tv_speakers` on `speaker_scores`' numbers (separate so that
    training/tune_tv.py can try other settings without measuring again). `sounds_db` None: a
    speaker that sounds like a TV is a candidate at any level."""
    sounds = {k for k, (_, p, _) in scores.items() if p >= threshold}
    family_like = [level for k, (sec, _, level) in scores.items() if k not in sounds and sec >= REFERENCE_SECONDS]
    top = max(family_like, default=None)
    if top is not None and sounds_db is not None:
        sounds = {k for k in sounds if scores[k][2] <= top + sounds_db}
    far = {k for k, (_, p, level) in scores.items() if top is not None and level <= top + far_db and p >= far_probability}
    candidates = sounds | far
    found = candidates if len(candidates) >= min_speakers else sounds
    return found if sum(scores[k][0] for k in found) >= min_seconds else set()


TV_COUNTED = "A TV or radio may have been on:"


def tv_counted_as_family(ids: list, seconds: float) -> str:
    """The report's warning when TV detection is off and `tv_speakers` finds speakers `ids`."""
    verbs = ("sounds", "is") if len(ids) == 1 else ("sound", "are")
    return (f"{TV_COUNTED} {', '.join(ids)} ({seconds:.0f} s) {verbs[0]} like one and {verbs[1]} counted as family. If one "
            f"was on, analyse again with TV detection (--detect-tv; in the app, 'A TV or radio was on') to leave "
            f"them out of the shares (results/tv_speakers.md).")


def tv_speakers(audio: np.ndarray, spans_of: dict, detector: Optional[TVDetector] = None) -> set:
    """Which speakers of one recording are a TV or radio: {key: [(start, end), ...]} -> set of keys.

    Diarization splits a TV programme into several voices, each with too little speech to judge
    alone, so the speakers are judged together. The reference is the loudest speaker that does not
    sound like a TV (with REFERENCE_SECONDS of speech): the recorder is with the family, the TV
    across the room. A speaker is a candidate when it *sounds* like a TV (`tv_probability` at least
    the detector's threshold) and its `speech_level` is SOUNDS_DB or more under the reference (a man
    in vacuum-cleaner noise sounded like a TV at the family's level), or when it is far and somewhat
    TV-like: FAR_DB or more under the reference, probability at least FAR_PROBABILITY. The
    candidates are TV when together they have MIN_TV_SECONDS of speech; the far ones only when there
    are MIN_TV_SPEAKERS candidates in all (one far voice alone is a parent away from the recorder,
    one that sounds like a TV may be a programme heard as one voice); otherwise none is. A TV
    quiet under household noise loses the loudspeaker's marks that `tv_probability` listens for, but
    stays far under the family; the level rule is also what can take a parent far from the recorder
    for a TV (`detect_tv` is opt-in for that reason)."""
    if sum(e - s for spans in spans_of.values() for s, e in spans) < MIN_TV_SECONDS:
        return set()              # judge's answer on any scores: too little speech in all to hold a TV
    detector = detector or default_detector()
    return judge(speaker_scores(audio, spans_of, detector), detector.threshold)
