"""Speaker gender from speech: a small CNN on log-mel frames, any input length.

Model: three 3x3 conv blocks (BatchNorm, ReLU, max-pool 2x2: frequency and time halve each time)
-> per-frame linear projection -> temporal conv (context ~0.5 s) -> masked mean+std pooling ->
linear head. `forward` returns logits in every mode; probabilities come from `GenderClassifier`,
which divides by the calibrated temperature saved in the checkpoint.

Labels come from the release: `("female", "male")` (older releases) or `("female", "male",
"child")`; female and male keep indices 0 and 1 either way, and every caller reads
`GenderClassifier.labels` instead of assuming two.

Frame embeddings are pooled with means, so the analysis can score every window of a long span from
one pass (`GenderClassifier.window_logits`) instead of re-running the CNN per window.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .audio import SAMPLE_RATE, AudioError, AudioSource, NoSpeechError  # noqa: F401 (re-exported)
from .checkpoint import load_release
from .features import FeatureConfig, batched_features, compute_features
from .hub import resolve_model
from .level import normalize_level

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
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown GenderDims fields {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


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


@dataclass
class GenderResult:
    label: str
    probabilities: dict
    duration: float
    speech: float = field(default=0.0)   # seconds of speech the decision rests on

    def to_dict(self) -> dict:
        return asdict(self)


class GenderClassifier:
    """A loaded gender model: features, network, labels and temperature from one release folder."""

    min_frames = 16  # 0.15 s: the conv stack needs this many frames to leave one output frame

    def __init__(self, model: GenderNet, features: FeatureConfig, config: dict, folder: Optional[Path] = None):
        self.model = model.eval()
        self.features = features
        self.config = config
        self.folder = folder
        self.labels = tuple(model.dims.labels)
        self.temperature = float(config.get("calibration", {}).get("temperature", 1.0))
        self.frame_seconds = features.frame_shift * model.dims.time_stride

    @classmethod
    def load(cls, ref: Optional[str] = None, token: Optional[str] = None) -> "GenderClassifier":
        folder = resolve_model(ref, "gender", token=token)
        state, config = load_release(folder, expected_type=MODEL_TYPE)
        model = GenderNet(GenderDims.from_dict(config["dims"]))
        model.load_state_dict(state, strict=True)
        return cls(model, FeatureConfig.from_dict(config["features"]), config, Path(folder))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.temperature, dim=-1)

    @torch.inference_mode()
    def span_logits(self, chunks: list, batch_size: int = 16) -> torch.Tensor:
        """Waveforms (each >= 0.15 s) -> (N, n_labels) uncalibrated logits, batched by length."""
        out = torch.zeros(len(chunks), len(self.labels))
        for idx, feats, frames in batched_features(chunks, self.features, batch_size):
            out[idx] = self.model(feats, frames)
        return out

    def score_spans(self, audio: np.ndarray, spans: list, batch_size: int = 16) -> np.ndarray:
        """Probabilities (N, n_labels) for (start, end)-second spans of one 16 kHz array."""
        chunks = [audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in spans]
        short = [i for i, c in enumerate(chunks) if len(c) < self.min_samples]
        if short:
            raise ValueError(f"spans {short} are shorter than {self.min_samples / SAMPLE_RATE:.2f} s")
        if not chunks:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.probabilities(self.span_logits(chunks, batch_size)).numpy()

    @property
    def min_samples(self) -> int:
        return self.min_frames * self.features.hop_length

    @torch.inference_mode()
    def window_logits(self, audio: np.ndarray, window: float = 1.5) -> tuple[np.ndarray, float]:
        """Logits for a window of `window` seconds centred on every output frame of one span.

        One CNN pass over the span; the pooled mean/std of each window comes from cumulative sums
        of the frame embeddings. -> ((T', n_labels) logits, seconds per output frame)."""
        feats = compute_features(audio, self.features)          # (T, F)
        frames = torch.tensor([feats.shape[0]])
        h, n = self.model.embed(feats[None], frames)
        h = h[0, :int(n)]                                       # (T', H)
        t = h.shape[0]
        if t == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32), self.frame_seconds
        half = max(1, int(round(window / self.frame_seconds / 2)))
        zero = torch.zeros(1, h.shape[1])
        c1 = torch.cat([zero, h.cumsum(0)])
        c2 = torch.cat([zero, h.pow(2).cumsum(0)])
        lo = (torch.arange(t) - half).clamp(min=0)
        hi = (torch.arange(t) + half + 1).clamp(max=t)
        cnt = (hi - lo)[:, None].to(h.dtype)
        mean = (c1[hi] - c1[lo]) / cnt
        var = ((c2[hi] - c2[lo]) / cnt - mean.pow(2)).clamp(min=0)
        logits = self.model.classify(torch.cat([mean, (var + 1e-5).sqrt()], dim=-1))
        return logits.numpy(), self.frame_seconds

    def predict(self, source: AudioSource, vad: bool = True, max_span: float = 30.0) -> GenderResult:
        """One label for one recording. With `vad`, only speech regions count (and a recording
        without speech raises NoSpeechError, see speech.usable); without, the whole input is one utterance."""
        from .usable import load_speech, require_speech

        audio = load_speech(source)
        duration = len(audio) / SAMPLE_RATE
        if vad:
            from .vad import speech_spans

            spans = [(s, e) for s, e in speech_spans(normalize_level(audio), max_span=max_span)
                     if (e - s) * SAMPLE_RATE >= self.min_samples]
            require_speech(spans)
        else:
            if len(audio) < self.min_samples:
                raise AudioError(f"The audio is too short ({duration:.2f} s) to tell a voice; "
                                 f"at least {self.min_samples / SAMPLE_RATE:.2f} s is needed.")
            spans = [(0.0, duration)]
        chunks = [audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in spans]
        logits = self.span_logits(chunks)
        w = torch.tensor([e - s for s, e in spans])[:, None]
        logit = (logits * w).sum(0, keepdim=True) / w.sum()     # longer regions count more
        p = self.probabilities(logit)[0].tolist()
        best = int(np.argmax(p))
        return GenderResult(self.labels[best], {k: round(v, 4) for k, v in zip(self.labels, p)},
                            round(duration, 3), round(float(w.sum()), 3))
