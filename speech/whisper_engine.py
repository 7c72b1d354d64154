"""Whisper through faster-whisper: moved to speech.engines.whisper; the names are re-exported here."""
from .engines.whisper import (ALLOW_PATTERNS, COMPUTE_TYPES, LANGUAGE, TEMPERATURES, WHISPER_ENV,  # noqa: F401
                              WhisperEngine, default_whisper, group_spans, resolve_whisper)

MODEL_ENV = WHISPER_ENV   # the name this module gave it
