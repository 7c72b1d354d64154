"""resemblyzer's voice encoder (GE2E, 3-layer LSTM) as a network built from its dimensions;
speech.speaker gives it its front end and loads it from a release (speech.bundle)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from ..dataclass_dict import dataclass_from_dict

MODEL_TYPE = "speaker-lstm"


@dataclass(frozen=True)
class SpeakerDims:
    n_mels: int = 40
    hidden: int = 256
    embedding: int = 256
    layers: int = 3
    partial_frames: int = 160            # 1.6 s: the length the encoder was trained on
    target_dbfs: float = -30.0           # input level raised to this (increase only)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpeakerDims":
        return dataclass_from_dict(cls, d, "SpeakerDims fields")


class SpeakerNet(nn.Module):
    batch_size = 64          # windows per forward pass at inference
    repeat_fill = False      # a short window is filled with zeros (as resemblyzer pads a last partial)

    def __init__(self, dims: SpeakerDims):
        super().__init__()
        self.dims = dims
        self.lstm = nn.LSTM(dims.n_mels, dims.hidden, dims.layers, batch_first=True)
        self.linear = nn.Linear(dims.hidden, dims.embedding)

    def for_inference(self) -> "SpeakerNet":
        return self.eval()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) power mels -> (B, E) embeddings, non-negative and L2-normed."""
        _, (hidden, _) = self.lstm(mels)
        e = torch.relu(self.linear(hidden[-1]))
        return e / e.norm(dim=1, keepdim=True).clamp(min=1e-12)
