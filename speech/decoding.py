"""CTC decoding: greedy here; beam search with an optional n-gram LM in `speech.beam`.

A decoder turns one utterance's log-probabilities (T, V) into a `Hypothesis`: the emitted token
ids (blanks removed, repeats collapsed) and, for each, the output frame where it was emitted.
Frame indices become seconds with the model's frame shift, so timestamps need no alignment pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Hypothesis:
    ids: list[int]                      # token ids, no blanks, CTC-collapsed
    frames: list[int]                   # output frame of each id (same length as ids)
    score: float = 0.0                  # decoder score (log domain); greedy: sum of best log-probs
    extra: dict = field(default_factory=dict)


def collapse(path, blank: int = 0) -> tuple[list[int], list[int]]:
    """A frame-level CTC path -> (token ids without repeats and blanks, frame of each)."""
    ids: list[int] = []
    frames: list[int] = []
    prev = blank
    for t, i in enumerate(path):
        if i != blank and i != prev:
            ids.append(i)
            frames.append(t)
        prev = i
    return ids, frames


def greedy_decode(log_probs: torch.Tensor, blank: int = 0) -> Hypothesis:
    """Best path: argmax per frame, then drop repeats and blanks. log_probs: (T, V)."""
    if log_probs.dim() != 2:
        raise ValueError(f"greedy_decode expects (T, V) log-probabilities, got shape {tuple(log_probs.shape)}")
    best, idx = log_probs.max(dim=-1)  # (T,)
    ids, frames = collapse(idx.tolist(), blank)
    return Hypothesis(ids=ids, frames=frames, score=float(best.sum()))


class GreedyDecoder:
    """Same interface as `speech.beam.BeamSearchDecoder`: decode((T, V)) -> Hypothesis."""

    name = "greedy"

    def __init__(self, blank: int = 0):
        self.blank = blank

    def decode(self, log_probs: torch.Tensor) -> Hypothesis:
        return greedy_decode(log_probs, self.blank)
