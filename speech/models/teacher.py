"""A small CTC head on frozen Whisper encoder states: the DeepSpeech2 student's teacher
(training.whisper_teacher). LayerNorm, a stride-2 convolution to `hidden` channels, GELU and a
convolution to the tokens: Whisper's 50 frames per second become 25, the student's rate."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from speech.dataclass_dict import dataclass_from_dict


@dataclass(frozen=True)
class TeacherHeadDims:
    d_in: int = 512          # Whisper base's encoder width
    hidden: int = 64
    n_tokens: int = 69       # the jamo tokenizer's size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherHeadDims":
        return dataclass_from_dict(cls, d, "TeacherHeadDims fields")


def head_frames(frames):
    """Frames out of the stride-2 convolution (kernel 3, padding 1)."""
    return (frames + 1) // 2


class TeacherHead(nn.Module):
    def __init__(self, dims: TeacherHeadDims):
        super().__init__()
        self.dims = dims
        self.norm = nn.LayerNorm(dims.d_in)
        self.conv1 = nn.Conv1d(dims.d_in, dims.hidden, 3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(dims.hidden, dims.n_tokens, 5, padding=2)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor):
        """states (B, T, d_in) -> log-probs (B, ceil(T / 2), n_tokens) and their lengths."""
        x = self.norm(states).transpose(1, 2)
        x = self.conv2(F.gelu(self.conv1(x)))
        return x.transpose(1, 2).log_softmax(-1), head_frames(lengths)
