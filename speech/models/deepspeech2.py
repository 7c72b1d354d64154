"""DeepSpeech2 (Amodei et al. 2016) for CTC, built only from a dimensions dataclass.

Layout follows deepspeech.pytorch (the study's code) so its checkpoints map onto this module:
2-D conv front end with masking -> stacked (bi)RNNs (directions summed, sequence-wise BatchNorm
before every layer but the first) -> optional lookahead conv (unidirectional models) -> BatchNorm
+ bias-free linear head. `forward` returns log-probabilities and output lengths in every mode.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from ..dataclass_dict import dataclass_from_dict

# Conv front ends: (out_channels, kernel (freq, time), stride (freq, time), padding (freq, time)).
FRONTENDS = {
    # The original DS2 / deepspeech.pytorch front end: time subsampling 2.
    "ds2": [((41, 11), (2, 2), (20, 5)), ((21, 11), (2, 1), (10, 5))],
    # A lighter front end: two 3x3 convs of stride 2 (time subsampling 4, 4x fewer RNN steps).
    "light": [((3, 3), (2, 2), (1, 1)), ((3, 3), (2, 2), (1, 1))],
}

# nn.RNN's default nonlinearity is tanh, as in deepspeech.pytorch's `supported_rnns`.
RNN_CLASSES = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


@dataclass(frozen=True)
class DS2Dims:
    n_features: int                 # feature bins per frame (FeatureConfig.n_features)
    n_tokens: int                   # output classes, CTC blank at index 0
    frontend: str = "light"         # key of FRONTENDS
    conv_channels: int = 32
    rnn_type: str = "gru"           # "gru", "lstm" or "rnn" (tanh; deepspeech.pytorch's plain RNN)
    rnn_hidden: int = 256
    rnn_layers: int = 3
    bidirectional: bool = True
    lookahead: int = 0              # future frames seen by a unidirectional model (0 = none)
    dropout: float = 0.0            # between RNN layers, training only

    def __post_init__(self):
        if self.frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {sorted(FRONTENDS)}, got {self.frontend!r}")
        if self.rnn_type not in RNN_CLASSES:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_CLASSES)}, got {self.rnn_type!r}")
        if self.bidirectional and self.lookahead:
            raise ValueError("lookahead is for unidirectional models; set bidirectional=False or lookahead=0")
        if self.rnn_layers < 1 or self.rnn_hidden < 1 or self.n_tokens < 2:
            raise ValueError("rnn_layers, rnn_hidden must be >= 1 and n_tokens >= 2")

    @property
    def time_stride(self) -> int:
        s = 1
        for _, stride, _ in FRONTENDS[self.frontend]:
            s *= stride[1]
        return s

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DS2Dims":
        return dataclass_from_dict(cls, d, "DeepSpeech2 dimensions")


def conv_out_length(length, kernel: int, stride: int, padding: int):
    return (length + 2 * padding - kernel) // stride + 1


class ConvFrontEnd(nn.Module):
    """(B, T, F) features -> (B, T', C * F') with everything past each length zeroed."""

    def __init__(self, dims: DS2Dims):
        super().__init__()
        self.spec = FRONTENDS[dims.frontend]
        layers = []
        in_ch, freq = 1, dims.n_features
        for kernel, stride, padding in self.spec:
            layers += [nn.Conv2d(in_ch, dims.conv_channels, kernel, stride, padding),
                       nn.BatchNorm2d(dims.conv_channels), nn.Hardtanh(0, 20, inplace=True)]
            in_ch = dims.conv_channels
            freq = conv_out_length(freq, kernel[0], stride[0], padding[0])
        self.seq_module = nn.Sequential(*layers)
        self.out_dim = dims.conv_channels * freq

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for kernel, stride, padding in self.spec:
            lengths = conv_out_length(lengths, kernel[1], stride[1], padding[1])
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        mask = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]
        x = x.masked_fill(mask[:, :, None], 0.0)
        x = x.transpose(1, 2).unsqueeze(1)                      # (B, T, F) -> (B, 1, F, T)
        for module in self.seq_module:
            x = module(x)
            if isinstance(module, nn.Conv2d):
                (kt, st, pt) = module.kernel_size[1], module.stride[1], module.padding[1]
                lengths = conv_out_length(lengths, kt, st, pt)
            # Zero the padded tail so batched and single utterances see the same inputs.
            mask = torch.arange(x.shape[-1], device=x.device)[None, :] >= lengths[:, None]
            x = x.masked_fill(mask[:, None, None, :], 0.0)
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).transpose(1, 2)              # (B, C, F', T') -> (B, T', C*F')
        return x, lengths


class SequenceBatchNorm(nn.Module):
    """BatchNorm1d over (B, T, C) applied frame by frame (DS2's sequence-wise normalisation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.module = nn.BatchNorm1d(channels)

    def forward(self, x):
        b, t, c = x.shape
        return self.module(x.reshape(b * t, c)).reshape(b, t, c)


class RNNBlock(nn.Module):
    def __init__(self, in_dim: int, hidden: int, rnn_type: str, bidirectional: bool, batch_norm: bool):
        super().__init__()
        self.batch_norm = SequenceBatchNorm(in_dim) if batch_norm else None
        self.rnn = RNN_CLASSES[rnn_type](in_dim, hidden, batch_first=True, bidirectional=bidirectional, bias=True)
        self.bidirectional = bidirectional

    def forward(self, x, lengths):
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        total = x.shape[1]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        x, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        if self.bidirectional:
            b, t, _ = x.shape
            x = x.view(b, t, 2, -1).sum(2)                     # sum the two directions
        return x


class Lookahead(nn.Module):
    """Row convolution over `context` future frames (DS2 section 3.5), per channel."""

    def __init__(self, channels: int, context: int):
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(channels, channels, kernel_size=context + 1, groups=channels, bias=False)

    def forward(self, x, lengths):
        mask = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]
        x = x.masked_fill(mask[:, :, None], 0.0).transpose(1, 2)  # (B, T, C) -> (B, C, T)
        x = F.pad(x, (0, self.context))
        return self.conv(x).transpose(1, 2)


class DeepSpeech2(nn.Module):
    def __init__(self, dims: DS2Dims):
        super().__init__()
        self.dims = dims
        self.conv = ConvFrontEnd(dims)
        rnns = []
        in_dim = self.conv.out_dim
        for i in range(dims.rnn_layers):
            rnns.append(RNNBlock(in_dim, dims.rnn_hidden, dims.rnn_type, dims.bidirectional, batch_norm=i > 0))
            in_dim = dims.rnn_hidden
        self.rnns = nn.ModuleList(rnns)
        self.lookahead = Lookahead(dims.rnn_hidden, dims.lookahead) if dims.lookahead else None
        self.fc_norm = SequenceBatchNorm(dims.rnn_hidden)
        self.fc = nn.Linear(dims.rnn_hidden, dims.n_tokens, bias=False)
        self.dropout = nn.Dropout(dims.dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.conv.output_lengths(lengths)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, return_hidden: bool = False):
        """features (B, T, F), lengths (B,) -> log_probs (B, T', V), out_lengths (B,); with
        `return_hidden` also the top layer's states (B, T', rnn_hidden) that the output layer reads
        (a distillation target, training.distill.TeacherStates)."""
        # Packing needs the lengths on the CPU: computed once here, and with no device sync at all
        # when the caller passes them on the CPU (the trainer does).
        host_lengths = self.conv.output_lengths(lengths.cpu())
        x, lengths = self.conv(features, lengths.to(features.device, non_blocking=True))   # (B, T', D)
        for i, rnn in enumerate(self.rnns):
            if i > 0:
                x = self.dropout(x)
            x = rnn(x, host_lengths)
        if self.lookahead is not None:
            x = F.hardtanh(self.lookahead(x, lengths), 0, 20)
        hidden = x
        x = self.fc(self.fc_norm(x))                            # (B, T', V)
        if return_hidden:
            return F.log_softmax(x.float(), dim=-1), lengths, hidden
        return F.log_softmax(x.float(), dim=-1), lengths

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
