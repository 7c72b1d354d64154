"""Speech-to-text engines behind one interface: `engine.transcribe(audio) -> Transcript`.

    base.py     Word, Segment, Transcript and the shared `transcribe` skeleton
    ds2.py      DeepSpeech2, trained here (releases through speech.bundle)
    whisper.py  Whisper through faster-whisper, and every Whisper setting

`load_engine()` gives the best engine available (Whisper base, else DeepSpeech2: see
`load_default_engine`); `load_engine("ds2", model=REF, decoder="greedy"|"beam", lm=PATH)` gives
DeepSpeech2; `load_engine("whisper", model=REF)` gives Whisper (faster-whisper is imported only
when a Whisper engine is built). Imports go one way: base <- ds2, whisper <- this module.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from ..hub import ModelNotFoundError
from .base import MAX_WINDOW, Engine, Segment, Transcript, Word  # noqa: F401
from .ds2 import DECODERS, DS2Engine  # noqa: F401
from .whisper import WHISPER_ENV, WhisperEngine

log = logging.getLogger("speech")

ENGINES = ("ds2", "whisper")


def load_default_engine(token: Optional[str] = None, **whisper_kwargs):
    """The best engine available: Whisper (speech.engines.whisper.default_whisper), else DeepSpeech2."""
    try:
        return WhisperEngine(model=None, token=token, **whisper_kwargs)
    except (ModelNotFoundError, ImportError) as e:
        if os.environ.get(WHISPER_ENV, "").strip():
            raise   # a model that was asked for and cannot be used is an error, not a fallback
        log.warning("No Whisper model (%s); DeepSpeech2 answers instead", e)
        return DS2Engine(token=token)


def load_engine(engine: Optional[str] = None, model: Optional[str] = None, **kwargs):
    """`engine` None or "default": the best engine available (`load_default_engine`), which takes
    no `model` (set SPEECH_WHISPER_MODEL, or name the engine)."""
    if engine in (None, "", "default"):
        if model not in (None, "", "default"):
            raise ValueError(f"load_engine(model={model!r}) needs an engine name: engines = {list(ENGINES)}")
        return load_default_engine(**kwargs)
    if engine == "ds2":
        return DS2Engine(model=model, **kwargs)
    if engine == "whisper":
        return WhisperEngine(model=model, **kwargs)
    raise ValueError(f"Unknown engine {engine!r}; engines = {list(ENGINES)}")
