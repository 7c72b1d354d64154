"""What every speech-to-text engine shares: the result types and the `transcribe` skeleton.

An engine loads its model, then `transcribe(audio)` times the call, loads and level-normalises the
audio (speech.level), finds the speech regions with the VAD when the engine asks for them
(`wants_speech`), hands the audio to the engine's `recognise`, and wraps its segments in a
`Transcript`. Timestamps are seconds in the original timeline.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from ..audio import SAMPLE_RATE, AudioSource, load_audio
from ..level import normalize_level

# The longest piece decoded at once, in seconds: Whisper's context, and the VAD's longest region.
MAX_WINDOW = 30.0

Progress = Optional[Callable[[float, str], None]]


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


class Engine:
    """Subclasses set `name`, `model_name`, `decoder_name`, `level_input`, `max_window` and
    implement `wants_speech` and `recognise`."""

    name = ""
    level_input = True        # whether the model hears the level-normalised audio (the VAD always does)
    max_window = MAX_WINDOW
    model_name = ""
    decoder_name = ""

    def wants_speech(self, duration: float) -> bool:
        """Whether this call needs the VAD's speech regions."""
        raise NotImplementedError

    def recognise(self, audio: np.ndarray, duration: float, speech: Optional[list], progress: Progress) -> list:
        """(N,) 16 kHz audio, its speech regions (None: not asked for) -> [Segment]."""
        raise NotImplementedError

    def transcribe(self, source: AudioSource, progress: Progress = None) -> Transcript:
        t0 = time.perf_counter()
        audio = load_audio(source)
        duration = len(audio) / SAMPLE_RATE
        levelled = normalize_level(audio)
        speech = None
        if self.wants_speech(duration):
            from ..vad import speech_spans

            if progress:
                progress(0.0, "detecting speech")
            speech = self.last_spans = speech_spans(levelled, max_span=self.max_window)
        segments = self.recognise(levelled if self.level_input else audio, duration, speech, progress)
        elapsed = time.perf_counter() - t0
        return Transcript(text=" ".join(s.text for s in segments), segments=segments, duration=duration,
                          rtf=elapsed / max(duration, 1e-9), engine=self.name, model=self.model_name,
                          decoder=self.decoder_name)
