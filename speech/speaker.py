"""Speaker embeddings from a safetensors release of one of two networks, each with its own front end:

- `speaker-campplus` (the default, checkpoints/speaker-campplus): CAM++ (speech/models/campplus.py),
  3D-Speaker's network trained on about 200k Chinese and English speakers, on 80 Kaldi fbanks, each
  window mean-normalised; 192 dims. training/convert_campplus.py makes the release.
- `speaker-lstm`: resemblyzer's pretrained voice encoder (GE2E, 3-layer LSTM) with the same front end
  as the `resemblyzer` package (below); checkpoints/speaker-resemblyzer and its Korean fine-tune
  checkpoints/speaker-ko.

    enc = SpeakerEncoder.load()                      # checkpoints/speaker-campplus
    e = enc.embed_windows(audio, [(0.0, 1.6), ...])  # (N, E), L2-normed, cosine = dot product

Front end (resemblyzer.audio): the waveform's level is raised (never lowered) to -30 dBFS, then a
power mel spectrogram (25 ms Hann window, 10 ms hop, 40 slaney mels, no log); the network reads
1.6 s partials (160 frames) and returns the ReLU'd, L2-normed projection of the last hidden state.
The weights come from the PyPI wheel's `pretrained.pt` (training/convert_resemblyzer.py), so the
package itself (webrtcvad, librosa-era SciPy) is not needed at run time.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .bundle import load_bundle, release_name
from .features import FeatureConfig, compute_features
from .models.campplus import MODEL_TYPE as CAMPLUS_TYPE, CamPlusDims, CamPlusNet  # noqa: F401 (re-exported)
from .models.speaker import MODEL_TYPE, SpeakerDims, SpeakerNet  # noqa: F401 (re-exported)

SPEAKER_TYPES = (CAMPLUS_TYPE, MODEL_TYPE)

INT16_MAX = 2 ** 15 - 1


def resemblyzer_features(n_mels: int = 40) -> FeatureConfig:
    """librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40) as resemblyzer calls it."""
    return FeatureConfig(kind="logmel", n_fft=400, win_length=400, hop_length=160, window="hann",
                         periodic_window=True, n_mels=n_mels, f_min=0.0, f_max=None, power=2.0,
                         log="none", center=True, pad_mode="constant", normalize="none")


def campplus_features(n_mels: int = 80) -> FeatureConfig:
    """Kaldi's fbank as 3D-Speaker computes it (torchaudio.compliance.kaldi.fbank, no dither), with a
    frame every 10 ms from the first sample (snip_edges off) so windows cut from a region's frames
    line up with the region's time."""
    return FeatureConfig(kind="fbank", n_fft=512, win_length=400, hop_length=160, window="povey",
                         periodic_window=False, n_mels=n_mels, f_min=20.0, f_max=None, power=2.0,
                         log="log", center=True, normalize="none")


def raise_level(wav: np.ndarray, target_dbfs: float) -> np.ndarray:
    """resemblyzer.audio.normalize_volume(..., increase_only=True)."""
    rms = float(np.sqrt(np.mean((wav.astype(np.float64) * INT16_MAX) ** 2))) if len(wav) else 0.0
    if rms <= 0:
        return wav
    change = target_dbfs - 20 * np.log10(rms / INT16_MAX)
    return wav if change < 0 else (wav * 10 ** (change / 20)).astype(np.float32)


class SpeakerEncoder:
    """The network and its front end; with `projection` (a within-speaker whitening or an LDA fitted
    on this project's TRAIN speakers, training/fit_speaker_lda.py), `project` maps embeddings to a space where Korean
    speakers lie further apart. The network's own embeddings are unchanged by it."""

    def __init__(self, model: torch.nn.Module, features: FeatureConfig, config: dict, folder: Optional[Path] = None,
                 projection: Optional[tuple] = None):
        self.model = model.for_inference()
        self.features = features
        self.config = config
        self.folder = folder
        self.model_name = release_name(config.get("name"), folder)
        self.dims = model.dims
        self.projection = projection            # (mean (E,), matrix (E, K)) or None

    @classmethod
    def load(cls, ref: Optional[str] = None, token: Optional[str] = None) -> "SpeakerEncoder":
        bundle = load_bundle(ref, SPEAKER_TYPES, token=token)
        folder = bundle.folder
        proj = {k: v for k, v in bundle.state.items() if k.startswith("projection.")}
        model = bundle.build_model()
        projection = None
        if proj:
            if set(proj) != {"projection.mean", "projection.matrix"}:
                raise ValueError(f"{folder}: unexpected projection tensors {sorted(proj)}")
            projection = (proj["projection.mean"].numpy(), proj["projection.matrix"].numpy())
        return cls(model, bundle.features, bundle.to_config(), folder, projection)

    def project(self, emb: np.ndarray) -> np.ndarray:
        """(N, E) embeddings -> (N, K) L2-normed projections (the embeddings themselves without a projection)."""
        if self.projection is None or len(emb) == 0:
            return emb
        mean, matrix = self.projection
        x = (emb - mean) @ matrix
        return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)

    @property
    def partial_seconds(self) -> float:
        return self.dims.partial_frames * self.features.hop_length / self.features.sample_rate

    def mels(self, wav: np.ndarray, level: bool = True) -> torch.Tensor:
        """(N,) 16 kHz waveform -> (T, n_mels) power mels; `level`: raise it to -30 dBFS first."""
        wav = np.asarray(wav, dtype=np.float32)
        return compute_features(raise_level(wav, self.dims.target_dbfs) if level else wav, self.features)

    def partial(self, mels: torch.Tensor) -> torch.Tensor:
        """A window's frames (T, F) -> exactly `partial_frames`: cut, or filled up as the network
        wants (`repeat_fill`: its own frames repeated; otherwise zeros)."""
        p = self.dims.partial_frames
        mels = mels[:p]
        if len(mels) < p:
            if self.model.repeat_fill and len(mels):
                mels = mels.repeat(-(-p // len(mels)), 1)[:p]
            else:
                mels = torch.cat([mels, torch.zeros(p - len(mels), mels.shape[1])])
        return mels

    @torch.inference_mode()
    def embed_mels(self, mels: torch.Tensor, batch_size: Optional[int] = None) -> np.ndarray:
        """(N, T, n_mels) -> (N, E)."""
        batch_size = batch_size or self.model.batch_size
        out = [self.model(mels[i:i + batch_size]) for i in range(0, len(mels), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dims.embedding), np.float32)

    def embed_utterance(self, wav: np.ndarray, rate: float = 1.3, min_coverage: float = 0.75) -> np.ndarray:
        """One embedding for one utterance: the L2-normed mean of its 1.6 s partials (as
        resemblyzer.VoiceEncoder.embed_utterance, for the parity check and single clips)."""
        hop = self.features.hop_length
        n_frames = int(np.ceil((len(wav) + 1) / hop))
        step = int(np.round((SAMPLE_RATE / rate) / hop))
        p = self.dims.partial_frames
        starts = list(range(0, max(1, n_frames - p + step + 1), step))
        last = starts[-1] * hop
        if len(starts) > 1 and (len(wav) - last) / (p * hop) < min_coverage:
            starts = starts[:-1]
        need = (starts[-1] + p) * hop
        wav = np.pad(np.asarray(wav, dtype=np.float32), (0, max(0, need - len(wav))))
        m = self.mels(wav)
        e = self.embed_mels(torch.stack([m[s:s + p] for s in starts])).mean(0)
        return e / np.linalg.norm(e)

    def embed_windows(self, audio: np.ndarray, windows: list, batch_size: Optional[int] = None,
                      level: bool = True) -> np.ndarray:
        """Embeddings (N, E) of (start, end)-second windows of one 16 kHz array. Windows shorter
        than a partial are filled up (`partial`).
        `level=False` when the caller has already raised the level (per speech region)."""
        mels = [self.partial(self.mels(audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)], level)) for s, e in windows]
        if not mels:
            return np.zeros((0, self.dims.embedding), np.float32)
        return self.embed_mels(torch.stack(mels), batch_size)


@lru_cache(maxsize=2)
def default_encoder(ref: Optional[str] = None) -> SpeakerEncoder:
    return SpeakerEncoder.load(ref)
