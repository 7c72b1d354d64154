"""Speech-to-text engines behind one interface: `engine.transcribe(audio) -> Transcript`.

`load_engine()` gives the best engine available (Whisper base; see speech.default_engine);
`load_engine("ds2", model=REF, decoder="greedy"|"beam", lm=PATH)` gives DeepSpeech2;
`load_engine("whisper", model=REF)` gives Whisper (faster-whisper), imported only when asked for.
Long input is cut into speech regions by the VAD (at most `max_window` seconds each), so memory
stays bounded and timestamps stay in the original timeline.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioSource, load_audio
from .checkpoint import load_release
from .decoding import GreedyDecoder, Hypothesis
from .features import FeatureConfig, batched_features
from .hub import resolve_model
from .level import feeds_recogniser, normalize_level
from .models.deepspeech2 import DeepSpeech2, DS2Dims
from .text import SPACE, tokenizer_from_dict

ENGINES = ("ds2", "whisper")
DECODERS = ("greedy", "beam")


@dataclass
class Word:
    start: float
    end: float
    text: str


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list = field(default_factory=list)


@dataclass
class Transcript:
    text: str
    segments: list
    duration: float
    rtf: float
    engine: str
    model: str
    decoder: str

    def to_dict(self, words: bool = False) -> dict:
        """Times rounded to milliseconds (no float noise such as 4.5600000000000005), rtf to 4 places."""
        d = asdict(self)
        d["duration"], d["rtf"] = round(self.duration, 3), round(self.rtf, 4)
        for s in d["segments"]:
            s["start"], s["end"] = round(s["start"], 3), round(s["end"], 3)
            if not words:
                s.pop("words", None)
            for w in s.get("words", []):
                w["start"], w["end"] = round(w["start"], 3), round(w["end"], 3)
        return d


def load_ds2(ref: Optional[str] = None, token: Optional[str] = None):
    """-> (model in eval mode, tokenizer, FeatureConfig, config dict, folder)."""
    folder = resolve_model(ref, "stt", token=token)
    state, config = load_release(folder, expected_type="deepspeech2")
    dims = DS2Dims.from_dict(config["dims"])
    model = DeepSpeech2(dims)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, tokenizer_from_dict(config["tokenizer"]), FeatureConfig.from_dict(config["features"]), config, folder


def hypothesis_to_words(hyp: Hypothesis, tokenizer, frame_seconds: float, offset: float = 0.0,
                        end: Optional[float] = None) -> list[Word]:
    """Split token ids at SPACE into words; a word spans its first to its last token's frame.
    `end` (seconds) caps the times: the last output frame can reach past the audio's end."""
    space = tokenizer.tokens.index(SPACE)
    words, ids, frames = [], [], []
    limit = float("inf") if end is None else end

    def flush():
        if ids:
            text = tokenizer.decode(ids)
            if text:
                start = min(offset + frames[0] * frame_seconds, limit)
                words.append(Word(start, min(offset + (frames[-1] + 1) * frame_seconds, limit), text))
        ids.clear()
        frames.clear()

    for i, f in zip(hyp.ids, hyp.frames):
        if i == space:
            flush()
        else:
            ids.append(i)
            frames.append(f)
    flush()
    return words


def words_to_segments(words: list[Word], max_gap: float = 0.8, max_len: float = 12.0) -> list[Segment]:
    segments: list[Segment] = []
    for w in words:
        s = segments[-1] if segments else None
        if s is None or w.start - s.end > max_gap or w.end - s.start > max_len:
            segments.append(Segment(w.start, w.end, w.text, [w]))
        else:
            s.end = w.end
            s.text += " " + w.text
            s.words.append(w)
    return segments


class DS2Engine:
    name = "ds2"
    # Speech gate (as Whisper's): the VAD runs on every input, on level-normalised audio (speech.level);
    # no speech -> empty text, and words outside the speech regions (GATE_SLACK s) are dropped.
    gate = True
    GATE_SLACK = 0.2

    def __init__(self, model: Optional[str] = None, decoder: str = "greedy", lm: Optional[str] = None,
                 beam_size: int = 32, lm_weight: Optional[float] = None, word_score: Optional[float] = None,
                 max_window: float = 30.0, batch_size: int = 8, token: Optional[str] = None):
        self.model, self.tokenizer, self.features, self.config, self.folder = load_ds2(model, token)
        self.model_name = self.config.get("name") or Path(self.folder).name
        self.frame_seconds = self.features.frame_shift * self.model.dims.time_stride
        self.max_window = max_window
        self.batch_size = batch_size
        self._set_decoder(decoder, lm, beam_size, lm_weight, word_score)
        # The model hears level-normalised audio too (equal or lower CER in every condition of
        # results/level-ds2.md), except imported study releases: their features stay the study's exactly.
        self.level_input = feeds_recogniser(self.config)
        self.last_spans: list = []  # VAD speech regions of the last call

    def _set_decoder(self, decoder, lm=None, beam_size=32, lm_weight=None, word_score=None):
        if decoder not in DECODERS:
            raise ValueError(f"Unknown decoder {decoder!r}; decoders = {list(DECODERS)}")
        if decoder == "greedy":
            self.decoder = GreedyDecoder()
        else:
            from .beam import BeamSearchDecoder

            lm_path = lm if lm is not None else _shipped_lm(self.folder, self.config)
            kw = {k: v for k, v in (("lm_weight", lm_weight), ("word_score", word_score)) if v is not None}
            self.decoder = BeamSearchDecoder(self.tokenizer, lm_path=lm_path, beam_size=beam_size,
                                             **{**self.config.get("decoder", {}).get("beam", {}), **kw})
        self.decoder_name = getattr(self.decoder, "name", decoder)

    def with_decoder(self, decoder: str, **kwargs) -> "DS2Engine":
        """The same loaded model behind another decoder (no second copy of the weights)."""
        other = copy.copy(self)
        other._set_decoder(decoder, **kwargs)
        return other

    @torch.inference_mode()
    def log_probs(self, chunks: list[np.ndarray]) -> list[torch.Tensor]:
        """Waveforms -> per-utterance (T', V) log-probabilities, batched by length."""
        out: list[Optional[torch.Tensor]] = [None] * len(chunks)
        for idx, feats, frames in batched_features(chunks, self.features, self.batch_size):
            lp, out_len = self.model(feats, frames)
            for row, i in enumerate(idx):
                out[i] = lp[row, :out_len[row]]
        return out

    def transcribe(self, source: AudioSource, progress: Optional[Callable[[float, str], None]] = None) -> Transcript:
        t0 = time.perf_counter()
        audio = load_audio(source)
        duration = len(audio) / SAMPLE_RATE
        levelled = normalize_level(audio)
        speech = None
        if self.gate or duration > self.max_window:
            from .vad import speech_spans

            if progress:
                progress(0.0, "detecting speech")
            speech = self.last_spans = speech_spans(levelled, max_span=self.max_window)
        if self.level_input:
            audio = levelled
        if duration > self.max_window:
            spans = speech
        else:  # decoded whole, pauses included, as in training; nothing when the gate found no speech
            spans = [] if speech == [] else [(0.0, duration)]
        words: list[Word] = []
        step = max(1, self.batch_size)
        for b in range(0, len(spans), step):
            group = spans[b:b + step]
            chunks = [audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in group]
            for (s, e), lp in zip(group, self.log_probs(chunks)):
                words += hypothesis_to_words(self.decoder.decode(lp), self.tokenizer, self.frame_seconds, s,
                                             end=min(e, duration))
            if progress:
                progress(min(1.0, (b + len(group)) / len(spans)), "transcribing")
        if self.gate:
            pad = self.GATE_SLACK
            words = [w for w in words if any(w.start < e + pad and w.end > s - pad for s, e in speech)]
        segments = words_to_segments(words)
        elapsed = time.perf_counter() - t0
        return Transcript(text=" ".join(s.text for s in segments), segments=segments, duration=duration,
                          rtf=elapsed / max(duration, 1e-9), engine=self.name, model=self.model_name,
                          decoder=self.decoder_name)


def _shipped_lm(folder: Path, config: dict) -> Optional[str]:
    name = config.get("decoder", {}).get("lm")
    if name and (Path(folder) / name).exists():
        return str(Path(folder) / name)
    return None


def load_engine(engine: Optional[str] = None, model: Optional[str] = None, **kwargs):
    """`engine` None or "default": the best engine available (speech.default_engine), which takes
    no `model` (set SPEECH_WHISPER_MODEL, or name the engine)."""
    if engine in (None, "", "default"):
        if model not in (None, "", "default"):
            raise ValueError(f"load_engine(model={model!r}) needs an engine name: engines = {list(ENGINES)}")
        from .default_engine import load_default_engine

        return load_default_engine(**kwargs)
    if engine == "ds2":
        return DS2Engine(model=model, **kwargs)
    if engine == "whisper":
        from .whisper_engine import WhisperEngine

        return WhisperEngine(model=model, **kwargs)
    raise ValueError(f"Unknown engine {engine!r}; engines = {list(ENGINES)}")
