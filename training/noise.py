"""Household noise and room reverberation for augmentation and for noisy test variants.

Shared by the trainers (random SNRs) and the evaluation scripts (fixed SNRs, far-field variant).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import torch

from speech.audio import load_audio


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


def mix_at_snr(speech: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    ps = speech.pow(2).mean().clamp(min=1e-10)
    pn = noise.pow(2).mean().clamp(min=1e-10)
    scale = torch.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return speech + scale * noise


def synthetic_rir(rt60: float, sr: int, gen: torch.Generator, device) -> torch.Tensor:
    """Exponentially decaying noise: a cheap, generic room impulse response."""
    n = int(rt60 * sr)
    t = torch.arange(n, device=device) / sr
    rir = torch.randn(n, generator=gen).to(device) * torch.exp(-6.9 * t / rt60)
    rir[0] = 1.0
    return rir / rir.norm()
