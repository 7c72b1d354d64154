"""Household noise and room reverberation for augmentation and for noisy test variants.

Shared by the trainers (random SNRs) and the evaluation and data scripts (fixed SNRs, far-field
variant, synthetic conversations).

The one peak rule (`limit_peak`, PEAK = 0.99): a finished waveform, whether mixed with noise,
reverberated or given a random gain, is scaled down as a whole when its peak exceeds 0.99 of full
scale, and left alone otherwise. A recorder's gain control does the same; scaling (not clipping)
keeps the SNR, and 0.99 leaves the 16-bit PCM a script writes one step short of clipping.
`mix_at_snr` applies it; every trainer's augmentation ends with it.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from speech.audio import load_audio

PEAK = 0.99

# The noise categories of a home (../shared/data/noise); the others (music, speech-like) are left
# to the TV simulation.
HOUSEHOLD = ["air_conditioner", "dishwasher", "street", "vacuum_cleaner", "kitchen_dishes",
             "kitchen_tap", "exercise_bike", "baby_cry"]


class NoiseBank:
    """Household noise clips (float32 on the device) to mix into speech at a chosen SNR."""

    def __init__(self, folder: str, device="cpu", categories: Optional[list] = None):
        folder = Path(folder)
        with open(folder / "manifest.tsv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if categories:
            rows = [r for r in rows if r.get("category") in categories]
        self.clips = [torch.from_numpy(load_audio(folder / r["path"], check=False)).to(device) for r in rows]
        self.categories = [r.get("category", "") for r in rows]
        if not self.clips:
            raise ValueError(f"no noise clips in {folder}")

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """A random stretch of n samples from a random clip (looped if the clip is shorter)."""
        k = int(torch.randint(len(self.clips), (1,), generator=gen))
        clip = self.clips[k]
        if len(clip) <= n:
            reps = n // len(clip) + 1
            clip = clip.repeat(reps)
        start = int(torch.randint(len(clip) - n + 1, (1,), generator=gen))
        return clip[start:start + n]


def noise_part(bank: NoiseBank, part: str, fraction: float = 0.7) -> NoiseBank:
    """Keep the training ('train': first `fraction`) or held-out ('test': the rest) part of every clip."""
    if part not in ("train", "test"):
        raise ValueError("part must be 'train' or 'test'")
    clips = []
    for c in bank.clips:
        cut = int(len(c) * fraction)
        clips.append(c[:cut] if part == "train" else c[cut:])
    bank.clips = clips
    return bank


def limit_peak(x, peak: float = PEAK):
    """`x` (tensor or array) scaled down as a whole if its peak exceeds `peak`; otherwise `x` itself."""
    top = float(x.abs().max()) if isinstance(x, torch.Tensor) else float(np.abs(x).max(initial=0.0))
    return x * (peak / top) if top > peak else x


def add_at_snr(speech: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """speech + noise scaled to `snr_db` below it (powers over the whole signal; torchaudio's
    add_noise), no peak rule: for a layer that more sound goes on top of. Silent noise, or noise
    into silent speech, adds nothing."""
    import torchaudio.functional as AF

    if not (bool(noise.abs().max() > 0) and bool(speech.abs().max() > 0)):
        return speech
    return AF.add_noise(speech, noise, torch.tensor(float(snr_db), dtype=speech.dtype))


def mix_at_snr(speech: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Noise mixed into speech at `snr_db`, then the one peak rule."""
    return limit_peak(add_at_snr(speech, noise, snr_db))


def noisy_copies(audio, bank: Optional[NoiseBank], snr: Optional[float], seed: int):
    """Fixed noisy variants of float32 arrays for evaluation (same noise per utterance for a given seed)."""
    if snr is None or bank is None:
        return audio
    gen = torch.Generator().manual_seed(seed)
    return [mix_at_snr(torch.from_numpy(a), bank.sample(len(a), gen), snr).numpy() for a in audio]


def synthetic_rir(rt60: float, sr: int, gen: torch.Generator, device) -> torch.Tensor:
    """Exponentially decaying noise: a cheap, generic room impulse response."""
    n = int(rt60 * sr)
    t = torch.arange(n, device=device) / sr
    rir = torch.randn(n, generator=gen).to(device) * torch.exp(-6.9 * t / rt60)
    rir[0] = 1.0
    return rir / rir.norm()
