"""TV or radio speech in the room: test and training material for `speech.tv`.

A TV programme is speech of people who are not in the family, played by a small loudspeaker
across the room. The chain, in the order the sound goes through it:

1. programme: utterances of other speakers back to back with short gaps (`tv_programme`), so it
   runs continuously for as long as the recording;
2. music bed (with probability `music_prob`): synthetic chords and a bass line, 10-20 dB below
   the speech (`music_bed`; there is no music in ../shared, so it is synthesised);
3. broadcast compression: a 4:1 compressor on the 10 ms RMS envelope, 20 ms attack / 150 ms
   release, threshold 15-25 dB below the programme's peak level, then make-up gain;
4. TV loudspeaker: band-pass, high-pass at 150-350 Hz and low-pass at 3.5-7 kHz (4th-order
   Butterworth each);
5. the room: a synthetic reverberant tail (RT60 0.3-0.8 s) at a direct-to-reverberant ratio of
   -3..+6 dB (the set is 2-4 m away, further than the family talking to the recorder).

`tv_sound(n, utts, rng)` runs the chain and returns the signal plus the programme's speech spans;
`add_tv(conversation, tv, level_db)` scales it to `level_db` below the conversation's level.
Household noise goes on top afterwards (`training.noise.mix_at_snr`), as in make_conversations.
Every random choice comes from the `random.Random` passed in, so a seed gives the same material.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.signal import butter, fftconvolve, sosfilt

from speech.audio import SAMPLE_RATE
from training.noise import add_at_snr


@dataclass(frozen=True)
class TVChain:
    """The parameters one TV track was made with (drawn by `TVChain.draw`)."""

    highpass_hz: float
    lowpass_hz: float
    rt60: float
    drr_db: float
    threshold_db: float
    music_db: float | None        # music bed level relative to the speech; None = no music

    @classmethod
    def draw(cls, rng: random.Random, music_prob: float = 0.5) -> "TVChain":
        return cls(highpass_hz=rng.uniform(150, 350), lowpass_hz=rng.uniform(3500, 7000),
                   rt60=rng.uniform(0.3, 0.8), drr_db=rng.uniform(-3, 6),
                   threshold_db=rng.uniform(-25, -15),
                   music_db=rng.uniform(-20, -10) if rng.random() < music_prob else None)

    def to_dict(self) -> dict:
        return asdict(self)


def tv_programme(utts: list[np.ndarray], n: int, rng: random.Random,
                 gap: tuple[float, float] = (0.1, 0.6)) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Utterances back to back with short gaps, n samples long -> (waveform, speech spans in s)."""
    if not utts:
        raise ValueError("tv_programme needs at least one utterance")
    out = np.zeros(n, dtype=np.float32)
    spans = []
    t = 0
    while t < n:
        a = rng.choice(utts)
        k = min(len(a), n - t)
        out[t:t + k] = a[:k]
        spans.append((t / SAMPLE_RATE, (t + k) / SAMPLE_RATE))
        t += k + int(rng.uniform(*gap) * SAMPLE_RATE)
    return out, spans


def music_bed(n: int, rng: random.Random, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Synthetic background music: a chord every beat (harmonic tones with a decaying envelope)
    over a bass note, in a random key and tempo. Unit RMS."""
    beat = int(sr * 60 / rng.uniform(70, 130))
    root = 110.0 * 2 ** (rng.randrange(12) / 12)
    chords = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (-3, 0, 4)]     # I IV V vi
    t = np.arange(beat) / sr
    env = np.exp(-t * rng.uniform(2, 6)).astype(np.float32)
    out = np.zeros(n + beat, dtype=np.float32)
    for k, start in enumerate(range(0, n, beat)):
        chord = chords[(k // 4) % len(chords)]
        note = np.zeros(beat, dtype=np.float32)
        for semis in chord:
            f = 2 * root * 2 ** (semis / 12)
            for h in range(1, 5):       # a few harmonics: an organ/piano-like tone, not a sine
                if f * h < sr / 2:
                    note += np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6.3)).astype(np.float32) / h
        bass = root / 2 * 2 ** (chord[0] / 12)
        note += 1.5 * np.sin(2 * np.pi * bass * t).astype(np.float32)
        out[start:start + beat] += note * env
    out = out[:n]
    return out / max(1e-8, float(np.sqrt(np.mean(out ** 2))))


def compress(x: np.ndarray, threshold_db: float, ratio: float = 4.0, sr: int = SAMPLE_RATE,
             attack: float = 0.02, release: float = 0.15) -> np.ndarray:
    """Feed-forward compressor on the 10 ms RMS envelope; threshold relative to the peak frame."""
    hop = sr // 100
    m = len(x) // hop
    if m == 0:
        return x
    rms = np.sqrt(np.mean(x[:m * hop].reshape(m, hop) ** 2, axis=1) + 1e-12)
    level = 20 * np.log10(rms)
    thr = level.max() + threshold_db
    target = np.where(level > thr, thr + (level - thr) / ratio, level) - level   # gain in dB, <= 0
    a_att, a_rel = np.exp(-0.01 / attack), np.exp(-0.01 / release)
    g = np.zeros(m)
    prev = 0.0
    for i, v in enumerate(target):           # gain falls at the attack rate, recovers at release
        a = a_att if v < prev else a_rel
        prev = a * prev + (1 - a) * v
        g[i] = prev
    gain = 10 ** (np.interp(np.arange(len(x)), np.arange(m) * hop + hop / 2, g) / 20)
    y = x * gain.astype(np.float32)
    return y * (np.sqrt(np.mean(x ** 2)) / max(1e-12, np.sqrt(np.mean(y ** 2))))   # make-up gain


def loudspeaker(x: np.ndarray, highpass_hz: float, lowpass_hz: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    sos = np.concatenate([butter(4, highpass_hz, "highpass", fs=sr, output="sos"),
                          butter(4, min(lowpass_hz, 0.45 * sr), "lowpass", fs=sr, output="sos")])
    return sosfilt(sos, x).astype(np.float32)


def room(x: np.ndarray, rt60: float, drr_db: float, rng: random.Random, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Direct sound plus an exponentially decaying noise tail (starting 5 ms later)."""
    n = int(rt60 * sr)
    nprng = np.random.default_rng(rng.randrange(2 ** 32))
    tail = nprng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / (rt60 * sr))
    tail /= np.linalg.norm(tail)
    rir = np.zeros(n + sr // 200)
    rir[0] = 10 ** (drr_db / 20)
    rir[sr // 200:] = tail
    return fftconvolve(x, rir)[:len(x)].astype(np.float32)


def apply_chain(programme: np.ndarray, chain: TVChain, rng: random.Random) -> np.ndarray:
    x = programme.astype(np.float32)
    if chain.music_db is not None:
        speech_rms = float(np.sqrt(np.mean(x[np.abs(x) > 1e-4] ** 2))) if np.any(np.abs(x) > 1e-4) else 0.0
        x = x + music_bed(len(x), rng) * speech_rms * 10 ** (chain.music_db / 20)
    x = compress(x, chain.threshold_db)
    x = loudspeaker(x, chain.highpass_hz, chain.lowpass_hz)
    return room(x, chain.rt60, chain.drr_db, rng)


def tv_sound(n: int, utts: list[np.ndarray], rng: random.Random, music_prob: float = 0.5):
    """A TV track n samples long -> (waveform, programme speech spans in s, the chain's parameters)."""
    programme, spans = tv_programme(utts, n, rng)
    chain = TVChain.draw(rng, music_prob)
    return apply_chain(programme, chain, rng), spans, chain


def add_tv(conversation: np.ndarray, tv: np.ndarray, level_db: float) -> np.ndarray:
    """conversation + tv scaled so that its mean power is `level_db` relative to the conversation's."""
    mixed = add_at_snr(torch.from_numpy(np.asarray(conversation, np.float32)), torch.from_numpy(np.asarray(tv, np.float32)),
                       -level_db)
    return mixed.numpy().astype(np.float32)   # no peak rule yet: noise goes on top (mix_at_snr)
