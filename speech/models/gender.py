"""The speaker-gender CNN (speech.gender loads and applies it): dimensions, then the network.

Three 3x3 conv blocks (BatchNorm, ReLU, max-pool 2x2: frequency and time halve each time)
-> per-frame linear projection -> temporal conv (context ~0.5 s) -> masked mean+std pooling ->
linear head. `forward` returns logits in every mode; probabilities come from
`speech.gender.GenderClassifier`, which divides by the calibrated temperature of the release.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from ..dataclass_dict import dataclass_from_dict

MODEL_TYPE = "gender-cnn"
LABELS = ("female", "male")       # adult voices; a release's own labels are in its config (dims.labels)
CHILD = "child"                   # third label of releases trained with synthetic children


@dataclass(frozen=True)
class GenderDims:
    n_features: int                     # FeatureConfig.n_features
    channels: tuple = (16, 32, 64)      # one 3x3 conv block each; every block halves freq and time
    hidden: int = 128                   # per-frame embedding size
    context: int = 5                    # temporal conv kernel (frames after subsampling)
    labels: tuple = LABELS
    dropout: float = 0.2

    def __post_init__(self):
        if self.n_features >> len(self.channels) < 1:
            raise ValueError(f"{len(self.channels)} pooling blocks need n_features >= {2 ** len(self.channels)}")
        if len(self.labels) < 2:
            raise ValueError("a classifier needs at least two labels")
        if self.context % 2 != 1:
            raise ValueError("context must be odd (a centred kernel)")

    @property
    def time_stride(self) -> int:
        return 2 ** len(self.channels)

    @property
    def conv_out(self) -> int:
        return self.channels[-1] * (self.n_features >> len(self.channels))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GenderDims":
        return dataclass_from_dict(cls, d, "GenderDims fields", tuples=True)


def _time_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x, lengths):
        # (B, C, F, T) -> (B, C', F/2, T/2); frames past the length are zeroed so an utterance
        # gives the same output alone and padded in a batch.
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        lengths = lengths // 2
        return x * _time_mask(lengths, x.shape[-1])[:, None, None, :], lengths


class GenderNet(nn.Module):
    def __init__(self, dims: GenderDims):
        super().__init__()
        self.dims = dims
        chans = (1,) + tuple(dims.channels)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.proj = nn.Linear(dims.conv_out, dims.hidden)
        self.temporal = nn.Conv1d(dims.hidden, dims.hidden, dims.context, padding=dims.context // 2)
        self.dropout = nn.Dropout(dims.dropout)
        self.head = nn.Linear(2 * dims.hidden, len(dims.labels))

    def output_lengths(self, frames: torch.Tensor) -> torch.Tensor:
        for _ in self.blocks:
            frames = frames // 2
        return frames

    def embed(self, feats: torch.Tensor, lengths: torch.Tensor):
        """(B, T, F) features, (B,) frame lengths -> (B, T', H) frame embeddings, (B,) lengths."""
        x = feats.transpose(1, 2).unsqueeze(1)                  # (B, T, F) -> (B, 1, F, T)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        b, c, f, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)          # (B, C, F', T') -> (B, T', C*F')
        x = F.relu(self.proj(x))
        mask = _time_mask(lengths, t)[:, :, None]
        x = x * mask
        x = F.relu(self.temporal(x.transpose(1, 2))).transpose(1, 2)  # (B, T', H)
        return x * mask, lengths

    def pool(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Masked mean and standard deviation over time: (B, T', H) -> (B, 2H)."""
        n = lengths.clamp(min=1)[:, None].to(h.dtype)
        mean = h.sum(1) / n
        var = (h.pow(2).sum(1) / n - mean.pow(2)).clamp(min=0)
        return torch.cat([mean, (var + 1e-5).sqrt()], dim=-1)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(pooled))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, F), (B,) -> logits (B, n_labels)."""
        h, out_len = self.embed(feats, lengths)
        return self.classify(self.pool(h, out_len))
