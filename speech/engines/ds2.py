"""DeepSpeech2 (trained here, speech.models.deepspeech2) behind the engine interface.

`DS2Engine(model=REF, decoder="greedy"|"beam", lm=PATH)`: REF is a release folder or Hub repo id
(speech.bundle; None: checkpoints/ds2-ko). Beam search takes the release's decoder settings (beam
width, shipped LM, LM weights) unless the caller gives its own. Input longer than `max_window`
seconds is cut into the VAD's speech regions, decoded in batches.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..bundle import DecoderSettings, load_bundle
from ..decoding import GreedyDecoder, Hypothesis
from ..features import batched_features
from ..level import feeds_recogniser
from ..text import SPACE
from .base import MAX_WINDOW, Engine, Progress, Segment, Word

DECODERS = ("greedy", "beam")
MODEL_TYPE = "deepspeech2"


def load_ds2(ref: Optional[str] = None, token: Optional[str] = None):
    """-> (model in eval mode, tokenizer, FeatureConfig, config dict, folder)."""
    bundle = load_bundle(ref, MODEL_TYPE, token=token)
    return bundle.build_model(), bundle.tokenizer, bundle.features, bundle.to_config(), bundle.folder


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


class DS2Engine(Engine):
    name = "ds2"
    # Speech gate (as Whisper's): the VAD runs on every input, on level-normalised audio (speech.level);
    # no speech -> empty text, and a word is kept only when at least GATE_SHARE of its time lies in
    # the speech regions widened by GATE_SLACK s. A short clip is decoded whole, so a word written
    # over a cry that the VAD took for a moment of speech mostly lies outside that moment: the rule
    # drops the words of both baby-cry clips that passed the VAD (results/ds2-nonspeech.md). Where the
    # VAD's region covers the cry itself, a search with the LM could still write a word there: its
    # words must overlap what greedy decoding of the same frames writes (heard_by_the_model). Whisper
    # has its own no-speech probability; DeepSpeech2 has none.
    gate = True
    GATE_SLACK = 0.2
    GATE_SHARE = 0.6

    def __init__(self, model: Optional[str] = None, decoder: str = "greedy", lm: Optional[str] = None,
                 beam_size: Optional[int] = None, lm_weight: Optional[float] = None,
                 word_score: Optional[float] = None, max_window: float = MAX_WINDOW, batch_size: int = 8,
                 token: Optional[str] = None):
        self.bundle = load_bundle(model, MODEL_TYPE, token=token)
        self.model = self.bundle.build_model()
        self.tokenizer, self.features, self.folder = self.bundle.tokenizer, self.bundle.features, self.bundle.folder
        self.config = self.bundle.to_config()
        self.model_name = self.bundle.name
        self.frame_seconds = self.features.frame_shift * self.model.dims.time_stride
        self.max_window = max_window
        self.batch_size = batch_size
        self._set_decoder(decoder, lm, beam_size, lm_weight, word_score)
        # The model hears level-normalised audio too (equal or lower CER in every condition of
        # results/level-ds2.md), except imported study releases: their features stay the study's exactly.
        self.level_input = feeds_recogniser(self.config)
        self.last_spans: list = []  # VAD speech regions of the last call

    def _set_decoder(self, decoder, lm=None, beam_size=None, lm_weight=None, word_score=None):
        if decoder not in DECODERS:
            raise ValueError(f"Unknown decoder {decoder!r}; decoders = {list(DECODERS)}")
        if decoder == "greedy":
            self.decoder = GreedyDecoder()
        else:
            from ..beam import BeamSearchDecoder

            shipped = self.bundle.decoder or DecoderSettings()   # a release without settings: the defaults
            lm_path = lm if lm is not None else _shipped_lm(self.folder, shipped.lm)
            own = {k: v for k, v in (("lm_weight", lm_weight), ("word_score", word_score)) if v is not None}
            self.decoder = BeamSearchDecoder(self.tokenizer, lm_path=lm_path,
                                             beam_size=shipped.beam_size if beam_size is None else beam_size,
                                             **{**shipped.beam_options(), **own})
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

    def wants_speech(self, duration: float) -> bool:
        return self.gate or duration > self.max_window

    def recognise(self, audio: np.ndarray, duration: float, speech: Optional[list], progress: Progress) -> list:
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
                found = hypothesis_to_words(self.decoder.decode(lp), self.tokenizer, self.frame_seconds, s,
                                            end=min(e, duration))
                if self.gate and not isinstance(self.decoder, GreedyDecoder):
                    found = heard_by_the_model(found, hypothesis_to_words(
                        GreedyDecoder().decode(lp), self.tokenizer, self.frame_seconds, s, end=min(e, duration)),
                        speech, self.GATE_SLACK, self.GATE_SHARE)
                words += found
            if progress:
                progress(min(1.0, (b + len(group)) / len(spans)), "transcribing")
        if self.gate:
            words = [w for w in words if speech_share(w, speech, self.GATE_SLACK) >= self.GATE_SHARE]
        return words_to_segments(words)


def heard_by_the_model(words: list[Word], greedy: list[Word], spans: list, pad: float, share: float) -> list[Word]:
    """The words of a search with a language model that overlap a word the acoustic model writes on
    its own (greedy) and the gate keeps: the LM may respell what the model heard, not add words
    where it heard nothing. (On a baby's cry 30 dB down, greedy wrote nothing and the beam search
    with the LM one word: results/ds2-nonspeech.md.)"""
    heard = [g for g in greedy if speech_share(g, spans, pad) >= share]
    return [w for w in words if any(min(w.end, g.end) > max(w.start, g.start) or
                                    (w.start == w.end and g.start <= w.start <= g.end) for g in heard)]


def speech_share(word: Word, spans: list, pad: float) -> float:
    """The share of the word's time inside the speech regions widened by `pad` seconds (a word of
    no duration: 1 inside, 0 outside)."""
    regions = [(s - pad, e + pad) for s, e in spans]
    if word.end <= word.start:
        return float(any(s <= word.start <= e for s, e in regions))
    covered, reach = 0.0, word.start      # regions are in time order and may overlap once widened
    for s, e in sorted(regions):
        lo, hi = max(s, reach), min(e, word.end)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered / (word.end - word.start)


def _shipped_lm(folder: Path, name: Optional[str]) -> Optional[str]:
    if name and (Path(folder) / name).exists():
        return str(Path(folder) / name)
    return None
