"""No usable speech: one rule for transcribe, gender and analyze, in the Python API, the CLI and the app.

Audio without usable speech is an error, never an empty result or an all-zero report: an
`AudioError` subclass whose message says why, checked in this order:

  EmptyAudioError     no samples (an empty file, nothing recorded)
  AudioTooShortError  shorter than MIN_SPEECH seconds: too short to hold a word
  SilentAudioError    digital silence: no sound at all
  NoSpeechError       sound, but no speech in it

Where each check lives:
  - `load_speech(source)`: decoding plus the first three. `GenderClassifier.predict`,
    `analysis.analyze` and `transcribe` below all start with it.
  - `GenderClassifier.predict` and `analysis.analyze` raise NoSpeechError themselves when the
    VAD finds no speech.
  - The speech-to-text engines (`engine.transcribe`) return an empty Transcript for non-speech:
    that is the engine level, where the DeepSpeech2 speech gate and Whisper's VAD and
    hallucination guard decide. `transcribe(engine, source)` here is the boundary that turns an
    empty transcript into NoSpeechError. The CLI and the app call it; so should Python code that
    wants the same rule (analysis keeps the engine level: a turn nobody understood has no text).

The CLI prints `error: FILE: MESSAGE` and exits 1; the app shows the message in Korean and English.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from .audio import SAMPLE_RATE, AudioSource, NoSpeechError, load_audio

MIN_SPEECH = 0.25   # seconds: the shortest speech the VAD counts (speech.vad.speech_spans min_speech)
NO_SPEECH = "No speech was found in the audio."


def load_speech(source: AudioSource, sr: int = SAMPLE_RATE) -> np.ndarray:
    """`load_audio`, refusing input that is empty, shorter than MIN_SPEECH or silent."""
    return load_audio(source, sr, min_duration=MIN_SPEECH)


def require_speech(found) -> None:
    """Raise NoSpeechError when `found` (speech regions, turns, text) is empty."""
    if not found:
        raise NoSpeechError(NO_SPEECH)


def require_transcript(result):
    """An engine's Transcript with no text -> NoSpeechError; otherwise the Transcript."""
    require_speech(result.text.strip())
    return result


def transcribe(engine, source: AudioSource, progress: Optional[Callable[[float, str], None]] = None):
    """`engine.transcribe` with the rule: -> a Transcript with text, or an AudioError saying why not."""
    audio = load_speech(source)
    return require_transcript(engine.transcribe(audio, progress=progress))
