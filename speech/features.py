"""Acoustic features: one frozen config, one pure function, used by training, evaluation, CLI and app.

The config is saved in every checkpoint, so a model always gets the features it was trained on.
`compute_features` works on one waveform or a padded batch; with `lengths` the per-utterance
normalisation uses only the valid frames, so an utterance gives the same features alone and padded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
import torch
import torchaudio

from .audio import INT16_SCALE, SAMPLE_RATE
from .dataclass_dict import dataclass_from_dict


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = SAMPLE_RATE
    kind: str = "logmel"            # "logmel", "linear" (the study's 161-bin spectrogram) or "fbank"
                                    # (Kaldi's log mel filterbank: povey window, pre-emphasis, no dither)
    n_fft: int = 400
    win_length: int = 400           # 25 ms
    hop_length: int = 160           # 10 ms
    window: str = "hann"            # "hann" or "hamming"
    periodic_window: bool = True    # False: symmetric window (scipy's default, the study's features)
    n_mels: int = 80
    f_min: float = 0.0
    f_max: Optional[float] = None
    power: float = 2.0              # 1.0 = magnitude, 2.0 = power
    log: str = "log"                # "log" (log(x + eps)), "log1p" or "none" (the power mel itself)
    log_eps: float = 1e-6
    center: bool = True
    pad_mode: str = "constant"      # zero padding: an utterance gives the same frames alone and padded
    normalize: str = "per_bin"      # "per_bin" (mean/std per feature over time), "global" (one mean/std), "none"
    norm_eps: float = 1e-5          # added to the std when normalising (the study's features add none)
    pcm_scale: float = INT16_SCALE  # int16 full scale the features expect (the study's loader divides by 32767)

    def __post_init__(self):
        if self.kind not in ("logmel", "linear", "fbank"):
            raise ValueError(f"FeatureConfig.kind must be 'logmel', 'linear' or 'fbank', got {self.kind!r}")
        if self.window not in ("hann", "hamming", "povey"):
            raise ValueError(f"FeatureConfig.window must be 'hann', 'hamming' or 'povey', got {self.window!r}")
        if (self.kind == "fbank") != (self.window == "povey"):
            raise ValueError("FeatureConfig: the povey window is Kaldi's, for kind 'fbank' only (and it needs it)")
        if self.kind == "fbank" and (self.log != "log" or self.normalize != "none" or self.power != 2.0):
            raise ValueError("FeatureConfig kind 'fbank' is Kaldi's log power filterbank: log='log', "
                             "power=2.0, normalize='none'")
        if self.log not in ("log", "log1p", "none"):
            raise ValueError(f"FeatureConfig.log must be 'log', 'log1p' or 'none', got {self.log!r}")
        if self.normalize not in ("per_bin", "global", "none"):
            raise ValueError(f"FeatureConfig.normalize must be 'per_bin', 'global' or 'none', got {self.normalize!r}")
        if self.win_length > self.n_fft:
            raise ValueError("FeatureConfig.win_length must not exceed n_fft")
        if self.pad_mode not in ("constant", "reflect"):
            raise ValueError(f"FeatureConfig.pad_mode must be 'constant' or 'reflect', got {self.pad_mode!r}")
        if self.norm_eps < 0 or self.pcm_scale <= 0:
            raise ValueError("FeatureConfig.norm_eps must be >= 0 and pcm_scale > 0")

    @property
    def n_features(self) -> int:
        return self.n_fft // 2 + 1 if self.kind == "linear" else self.n_mels

    @property
    def frame_shift(self) -> float:
        return self.hop_length / self.sample_rate

    def num_frames(self, n_samples):
        """Frames produced for `n_samples` samples (int or LongTensor)."""
        if self.kind == "fbank":   # Kaldi's count; center=False is its snip_edges
            return (n_samples + self.hop_length // 2) // self.hop_length if self.center else \
                (n_samples - self.win_length) // self.hop_length + 1
        if self.center:
            return n_samples // self.hop_length + 1
        return (n_samples - self.n_fft) // self.hop_length + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return dataclass_from_dict(cls, d, "feature settings")


@lru_cache(maxsize=8)
def _transforms(cfg: FeatureConfig) -> torch.nn.Module:
    window_fn = torch.hann_window if cfg.window == "hann" else torch.hamming_window
    spec = torchaudio.transforms.Spectrogram(
        n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length, window_fn=window_fn,
        power=cfg.power, center=cfg.center, pad_mode=cfg.pad_mode, wkwargs={"periodic": cfg.periodic_window})
    if cfg.kind == "linear":
        return spec
    mel = torchaudio.transforms.MelScale(
        n_mels=cfg.n_mels, sample_rate=cfg.sample_rate, f_min=cfg.f_min, f_max=cfg.f_max,
        n_stft=cfg.n_fft // 2 + 1, norm="slaney", mel_scale="slaney")
    return torch.nn.Sequential(spec, mel)


def compute_features(audio, cfg: FeatureConfig, lengths: Optional[torch.Tensor] = None):
    """Waveform(s) at cfg.sample_rate -> features.

    audio: (N,) array/tensor -> (T, F); or (B, N) padded batch with `lengths` (B,) in samples
    -> ((B, T, F), frame_lengths (B,)). Runs on the input's device.
    """
    single = False
    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if audio.dim() == 1:
        single = True
        audio = audio.unsqueeze(0)
    if lengths is None:
        lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=audio.device)
    if cfg.pcm_scale != INT16_SCALE:  # audio arrives as int16 / INT16_SCALE; the model expects int16 / pcm_scale
        audio = audio * (INT16_SCALE / cfg.pcm_scale)
    if cfg.kind == "fbank":
        x, frame_lengths = _kaldi_fbank(audio, lengths, cfg)
        return x[0] if single else (x, frame_lengths)
    tf = _transforms(cfg).to(audio.device)
    with torch.autocast(device_type=audio.device.type, enabled=False):
        x = tf(audio.float())                                   # (B, F, T)
        if cfg.pad_mode != "constant" and cfg.center:
            # Reflection of a shorter utterance's own end, not of the batch's zero padding.
            for i in (lengths < audio.shape[1]).nonzero().flatten().tolist():
                xi = tf(audio[i:i + 1, :int(lengths[i])].float())
                x[i, :, :xi.shape[-1]] = xi[0]
        if cfg.log != "none":
            x = torch.log1p(x) if cfg.log == "log1p" else torch.log(x + cfg.log_eps)
        frame_lengths = cfg.num_frames(lengths).clamp(min=1, max=x.shape[-1])
        mask = torch.arange(x.shape[-1], device=x.device)[None, :] < frame_lengths[:, None]  # (B, T)
        m = mask[:, None, :].to(x.dtype)
        if cfg.normalize != "none":
            if cfg.normalize == "per_bin":
                n = frame_lengths[:, None, None].to(x.dtype)
                mean = (x * m).sum(-1, keepdim=True) / n
                var = (((x - mean) * m) ** 2).sum(-1, keepdim=True) / (n - 1).clamp(min=1)
            else:
                n = (frame_lengths * x.shape[1])[:, None, None].to(x.dtype)
                mean = (x * m).sum((1, 2), keepdim=True) / n
                var = (((x - mean) * m) ** 2).sum((1, 2), keepdim=True) / (n - 1).clamp(min=1)
            # the floor only keeps digital silence finite when norm_eps is 0
            x = (x - mean) / (var.sqrt() + cfg.norm_eps).clamp(min=1e-8)
        x = (x * m).transpose(1, 2).contiguous()                # (B, F, T) -> (B, T, F), zero padding
    if single:
        return x[0]
    return x, frame_lengths


def _kaldi_fbank(audio: torch.Tensor, lengths: torch.Tensor, cfg: FeatureConfig):
    """(B, N) -> ((B, T, n_mels) zero-padded, frame_lengths): torchaudio's Kaldi-compatible fbank of
    each waveform's valid samples (Kaldi's defaults otherwise: pre-emphasis 0.97, DC removed, FFT
    rounded up to a power of two; `center` means Kaldi's snip_edges=False, frames every hop from 0)."""
    from torchaudio.compliance import kaldi

    rows = []
    for i in range(audio.shape[0]):
        wav = audio[i:i + 1, :int(lengths[i])].float()
        if wav.shape[1] < cfg.win_length:
            wav = torch.nn.functional.pad(wav, (0, cfg.win_length - wav.shape[1]))
        rows.append(kaldi.fbank(wav, num_mel_bins=cfg.n_mels, sample_frequency=cfg.sample_rate,
                                frame_length=1000 * cfg.win_length / cfg.sample_rate,
                                frame_shift=1000 * cfg.hop_length / cfg.sample_rate, dither=0.0,
                                window_type="povey", snip_edges=not cfg.center, low_freq=cfg.f_min,
                                high_freq=cfg.f_max or 0.0))
    frame_lengths = torch.tensor([len(r) for r in rows], device=audio.device)
    x = torch.zeros(len(rows), int(frame_lengths.max()), cfg.n_mels, device=audio.device)
    for i, r in enumerate(rows):
        x[i, :len(r)] = r
    return x, frame_lengths


def batched_features(chunks, cfg: FeatureConfig, batch_size: int = 8, device="cpu"):
    """Waveforms of any lengths -> batches of similar length: yields (indices into `chunks`,
    features (B, T, F), frame_lengths (B,)). Sorting by length keeps padding (and work) small."""
    order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        lengths = torch.tensor([len(chunks[i]) for i in idx])
        wav = torch.zeros(len(idx), int(lengths.max()))
        for row, i in enumerate(idx):
            wav[row, :len(chunks[i])] = torch.as_tensor(chunks[i])
        feats, frames = compute_features(wav.to(device), cfg, lengths.to(device))
        yield idx, feats, frames
