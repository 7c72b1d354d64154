"""Voice activity detection with Silero VAD (weights ship inside the `silero-vad` package).

Used to cut long recordings into speech regions (speech-to-text) and speech turns (analysis).
"""
from __future__ import annotations

import threading
from functools import lru_cache
from typing import Callable, Optional

import numpy as np
import torch

from .audio import SAMPLE_RATE

_lock = threading.Lock()  # the JIT model keeps state between calls: one user at a time


@lru_cache(maxsize=1)
def load_vad():
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=False)


def speech_spans(audio: np.ndarray, sr: int = SAMPLE_RATE, *, threshold: float = 0.5,
                 min_speech: float = 0.25, min_silence: float = 0.3, pad: float = 0.05,
                 max_span: Optional[float] = None,
                 progress: Optional[Callable[[float], None]] = None) -> list[tuple[float, float]]:
    """Speech regions as (start, end) seconds. `max_span` splits longer regions at the quietest
    point Silero finds (the best place to cut a long utterance); `progress` gets a percentage."""
    from silero_vad import get_speech_timestamps

    if sr != SAMPLE_RATE:
        raise ValueError(f"speech_spans expects {SAMPLE_RATE} Hz audio")
    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    with _lock, torch.inference_mode():
        model = load_vad()
        stamps = get_speech_timestamps(
            wav, model, threshold=threshold, sampling_rate=sr,
            min_speech_duration_ms=int(min_speech * 1000), min_silence_duration_ms=int(min_silence * 1000),
            speech_pad_ms=int(pad * 1000), max_speech_duration_s=max_span or float("inf"),
            progress_tracking_callback=progress)
        model.reset_states()
    return [(s["start"] / sr, s["end"] / sr) for s in stamps]
