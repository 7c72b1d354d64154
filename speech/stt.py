"""Speech-to-text: the public entry point. The engines live in speech.engines (result types and
the shared skeleton in base.py, DeepSpeech2 in ds2.py, Whisper in whisper.py); this module
re-exports their public names so `from speech.stt import load_engine, Transcript` keeps working.
"""
from .engines import DECODERS, ENGINES, load_default_engine, load_engine  # noqa: F401
from .engines.base import Segment, Transcript, Word  # noqa: F401
from .engines.ds2 import DS2Engine, hypothesis_to_words, load_ds2, words_to_segments  # noqa: F401
