"""CAM++ (Wang et al., "CAM++: A Fast and Efficient Network for Speaker Verification Using
Context-Aware Masking", Interspeech 2023): a 2-D convolutional front (FCM) over 80 Kaldi fbanks,
then densely connected TDNN layers whose outputs are gated by context-aware masks (the layer's
mean over the whole input plus its mean over 100-frame segments), statistics pooling and a 192-dim
embedding. Written from the paper and 3D-Speaker's description; the parameter names follow
3D-Speaker's (`speakerlab/models/campplus`) so its released weights load unchanged
(training/convert_campplus.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..dataclass_dict import dataclass_from_dict

MODEL_TYPE = "speaker-campplus"


@dataclass(frozen=True)
class CamPlusDims:
    n_mels: int = 80
    embedding: int = 192
    growth: int = 32                     # channels each dense TDNN layer adds
    bottleneck: int = 128                # channels inside each dense layer (4 x growth)
    channels: int = 128                  # after the first TDNN layer
    head_channels: int = 32              # the 2-D front's
    blocks: tuple = ((12, 3, 1), (24, 3, 2), (16, 3, 2))   # (layers, kernel, dilation) per dense block
    segment: int = 100                   # frames per segment of the context-aware mask
    partial_frames: int = 160            # frames per window the diarization embeds (1.6 s)
    target_dbfs: float = -30.0           # input level raised to this (increase only); after the
                                         # per-window mean normalisation only the log floor sees it

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = [list(b) for b in self.blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CamPlusDims":
        d = dict(d)
        if "blocks" in d:
            d["blocks"] = tuple(tuple(b) for b in d["blocks"])
        return dataclass_from_dict(cls, d, "CamPlusDims fields")


def _bn_relu(channels: int) -> nn.Sequential:
    s = nn.Sequential()
    s.add_module("batchnorm", nn.BatchNorm1d(channels))
    s.add_module("relu", nn.ReLU())
    return s


class _ResBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class _FCM(nn.Module):
    """(B, F, T) -> (B, C * F / 8, T): 2-D residual convolutions halving frequency three times."""

    def __init__(self, c: int, n_mels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.layer1 = nn.Sequential(_ResBlock2d(c, c, 2), _ResBlock2d(c, c, 1))
        self.layer2 = nn.Sequential(_ResBlock2d(c, c, 2), _ResBlock2d(c, c, 1))
        self.conv2 = nn.Conv2d(c, c, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.out_channels = c * (n_mels // 8)

    def fold_batchnorm(self) -> None:
        """Inference only: each convolution absorbs the batch norm after it (on the 2-core CPU 10.8 vs
        13.0 ms per window in batches of 64, 7.4 vs 7.5 in batches of 16: results/analysis_benchmark.md)."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        pairs = [(self, "conv1", "bn1"), (self, "conv2", "bn2")]
        for block in (*self.layer1, *self.layer2):
            pairs += [(block, "conv1", "bn1"), (block, "conv2", "bn2")]
            if len(block.shortcut):
                block.shortcut = nn.Sequential(fuse_conv_bn_eval(block.shortcut[0], block.shortcut[1]))
        for owner, conv, bn in pairs:
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
            setattr(owner, bn, nn.Identity())
        self.to(memory_format=torch.channels_last)

    def forward(self, x):
        # channels-last: oneDNN's 2-D convolutions run about 1.4x faster on CPU (same numbers)
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(x)))))
        return x.contiguous().flatten(1, 2)


class _CAM(nn.Module):
    """A dilated convolution gated by a mask from the input's global and per-segment means."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, segment: int):
        super().__init__()
        self.segment = segment
        self.linear_local = nn.Conv1d(cin, cout, kernel, padding=(kernel - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(cin, cin // 2, 1)
        self.linear2 = nn.Conv1d(cin // 2, cout, 1)

    def forward(self, x):
        t = x.shape[-1]
        seg = F.avg_pool1d(x, self.segment, self.segment, ceil_mode=True)
        seg = seg.repeat_interleave(self.segment, dim=-1)[..., :t]
        context = x.mean(-1, keepdim=True) + seg
        return self.linear_local(x) * torch.sigmoid(self.linear2(F.relu(self.linear1(context))))


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, dims: CamPlusDims, kernel: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _bn_relu(cin)
        self.linear1 = nn.Conv1d(cin, dims.bottleneck, 1, bias=False)
        self.nonlinear2 = _bn_relu(dims.bottleneck)
        self.cam_layer = _CAM(dims.bottleneck, dims.growth, kernel, dilation, dims.segment)

    def forward(self, x):
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseBlock(nn.ModuleDict):
    def forward(self, x):
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.nonlinear = _bn_relu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.linear(self.nonlinear(x))


class _TDNN(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 5, stride=2, padding=2, bias=False)
        self.nonlinear = _bn_relu(cout)

    def forward(self, x):
        return self.nonlinear(self.linear(x))


class _Embedding(nn.Module):
    """Mean and standard deviation over time -> a 1x1 convolution and a batch norm without affine."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.linear = nn.Conv1d(2 * cin, cout, 1, bias=False)
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(cout, affine=False))

    def forward(self, x):
        stats = torch.cat([x.mean(-1), x.std(-1)], dim=-1).unsqueeze(-1)
        return self.nonlinear(self.linear(stats)).squeeze(-1)


class CamPlusNet(nn.Module):
    # windows per forward pass at inference: about 14 MB of activations per window (the network alone
    # peaked at 1536 MB in batches of 64, 864 MB in batches of 16), and batches of 16 ran faster on
    # the 2-core CPU (7.5 vs 13.0 ms per window: results/analysis_benchmark.md)
    batch_size = 16
    repeat_fill = True       # a short window is filled with its own frames, repeated: zeros would pull
                             # the per-window mean, which the network subtracts, towards silence

    def __init__(self, dims: CamPlusDims):
        super().__init__()
        self.dims = dims
        self.head = _FCM(dims.head_channels, dims.n_mels).to(memory_format=torch.channels_last)
        self.xvector = nn.Sequential()
        self.xvector.add_module("tdnn", _TDNN(self.head.out_channels, dims.channels))
        c = dims.channels
        for i, (layers, kernel, dilation) in enumerate(dims.blocks, 1):
            block = _DenseBlock()
            for j in range(layers):
                block[f"tdnnd{j + 1}"] = _DenseLayer(c + j * dims.growth, dims, kernel, dilation)
            self.xvector.add_module(f"block{i}", block)
            c += layers * dims.growth
            self.xvector.add_module(f"transit{i}", _Transit(c, c // 2))
            c //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(c))
        self.xvector.add_module("dense", _Embedding(c, dims.embedding))

    def for_inference(self) -> "CamPlusNet":
        """Eval mode with the 2-D front's batch norms folded into its convolutions (the weights of
        a release are no longer this module's state dict afterwards)."""
        self.eval()
        self.head.fold_batchnorm()
        return self

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) log fbanks -> (B, E) L2-normed embeddings (cosine = dot product). Each
        window is mean-normalised over its own frames first, as the network was trained."""
        feats = feats - feats.mean(1, keepdim=True)
        e = self.xvector(self.head(feats.transpose(1, 2)))
        return e / e.norm(dim=1, keepdim=True).clamp(min=1e-12)
