"""Speaker gender from speech: a small CNN on log-mel frames (speech.models.gender), any input length.

The network returns logits in every mode; probabilities come from `GenderClassifier`, which
divides by the calibrated temperature of the release (speech.bundle).

Labels come from the release: `("female", "male")` (older releases) or `("female", "male",
"child")`; female and male keep indices 0 and 1 either way, and every caller reads
`GenderClassifier.labels` instead of assuming two.

Frame embeddings are pooled with means, so the analysis can score every window of a long span from
one pass (`GenderClassifier.window_logits`) instead of re-running the CNN per window.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioError, AudioSource, NoSpeechError  # noqa: F401 (re-exported)
from .bundle import load_bundle, release_name
from .features import FeatureConfig, batched_features, compute_features
from .level import normalize_level
from .models.gender import CHILD, LABELS, MODEL_TYPE, GenderDims, GenderNet  # noqa: F401 (re-exported)


@dataclass
class GenderResult:
    label: str
    probabilities: dict
    duration: float
    speech: float = field(default=0.0)   # seconds of speech the decision rests on
    warnings: list = field(default_factory=list)   # why the label may be wrong (speech.band: narrowband audio)
    model: str = ""                      # the release that gave the label (a narrowband one for telephone audio)

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
        self.model_name = release_name(config.get("name"), folder)
        self.labels = tuple(model.dims.labels)
        self.temperature = float(config.get("calibration", {}).get("temperature", 1.0))
        self.frame_seconds = features.frame_shift * model.dims.time_stride
        self._narrowband = None           # the narrowband release once loaded (False: named but not found)

    @classmethod
    def load(cls, ref: Optional[str] = None, token: Optional[str] = None) -> "GenderClassifier":
        bundle = load_bundle(ref, MODEL_TYPE, token=token)
        return cls(bundle.build_model(), bundle.features, bundle.to_config(), bundle.folder)

    def narrowband(self) -> Optional["GenderClassifier"]:
        """The release this one names for telephone-band audio (config `narrowband`: a release
        folder beside this one, an embedded one, or a Hub repo id), loaded once; None without one."""
        from .hub import CHECKPOINTS

        name = self.config.get("narrowband")
        if not name:
            return None
        if self._narrowband is None:
            near = [f / name for f in ((self.folder and Path(self.folder).parent), CHECKPOINTS) if f]
            try:
                self._narrowband = GenderClassifier.load(str(next((f for f in near if f.is_dir()), name)))
            except (ValueError, OSError) as e:     # not found: this release answers, with the plain warning
                logging.getLogger("speech").warning("narrowband gender model %r not loaded: %s", name, e)
                self._narrowband = False           # tried once
        return self._narrowband or None

    def for_band(self, audio: np.ndarray) -> tuple["GenderClassifier", list]:
        """The classifier to label `audio` with, and the warnings that go with it (speech.band):
        telephone-band audio goes to the `narrowband` release when this one names one (adults 67 %
        -> 100 % right through a telephone band: results/gender_band_finetune.md); without one,
        this classifier answers and the warning says its labels are unreliable."""
        from .band import NARROWBAND, band_warnings, narrowband_used

        if not band_warnings(audio):
            return self, []
        companion = self.narrowband()
        return (self, [NARROWBAND]) if companion is None else (companion, [narrowband_used(companion.model_name)])

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
        clf, warnings = self.for_band(audio)
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
        logits = clf.span_logits(chunks)
        w = torch.tensor([e - s for s, e in spans])[:, None]
        logit = (logits * w).sum(0, keepdim=True) / w.sum()     # longer regions count more
        p = clf.probabilities(logit)[0].tolist()
        best = int(np.argmax(p))
        return GenderResult(clf.labels[best], {k: round(v, 4) for k, v in zip(clf.labels, p)},
                            round(duration, 3), round(float(w.sum()), 3), warnings, clf.model_name)
