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
def _silero():
    """The silero_vad package, imported once. It calls torch.set_num_threads(1) when imported, which
    left every model after the VAD (speaker embeddings, gender, TV) on one of the machine's cores: the
    caller's setting is put back (the one-hour analysis, results/analysis_benchmark.md)."""
    threads = torch.get_num_threads()
    try:
        import silero_vad
        import silero_vad.utils_vad
    finally:
        torch.set_num_threads(threads)
    return silero_vad


@lru_cache(maxsize=1)
def load_vad():
    return _silero().load_silero_vad(onnx=False)


WINDOW = 512               # samples per Silero VAD step at 16 kHz
BLOCK = WINDOW * 1024      # samples scaled and handed to torch at a time (about 33 s)


def speech_spans(audio: np.ndarray, sr: int = SAMPLE_RATE, *, threshold: float = 0.5,
                 min_speech: float = 0.25, min_silence: float = 0.3, pad: float = 0.05,
                 max_span: Optional[float] = None, gain_db: float = 0.0,
                 progress: Optional[Callable[[float], None]] = None) -> list[tuple[float, float]]:
    """Speech regions as (start, end) seconds. `max_span` splits longer regions at the quietest
    point Silero finds (the best place to cut a long utterance); `progress` gets a percentage.

    `gain_db`: the VAD hears `audio` times this gain, applied block by block as
    `speech.level.normalize_level` applies it to the whole array (the same float32 samples, so the
    same regions), so `speech_spans(a, gain_db=level_gain_db(a))` equals
    `speech_spans(normalize_level(a))` without a second copy of an hour of audio."""
    get_speech_timestamps_from_probs = _silero().utils_vad.get_speech_timestamps_from_probs
    if sr != SAMPLE_RATE:
        raise ValueError(f"speech_spans expects {SAMPLE_RATE} Hz audio")
    audio = np.asarray(audio)
    scale = np.float32(10.0 ** (gain_db / 20.0)) if gain_db else None
    n = len(audio)
    probs = []
    # Silero's get_speech_timestamps, with the audio read block by block: the same windows in
    # the same order give the same probabilities, then its own rule turns them into regions.
    with _lock, torch.inference_mode():
        model = load_vad()
        model.reset_states()
        for b in range(0, n, BLOCK):
            block = np.ascontiguousarray(audio[b:b + BLOCK], dtype=np.float32)
            if scale is not None:
                block = (block * scale).astype(np.float32, copy=False)
            wav = torch.from_numpy(block)
            for i in range(0, len(wav), WINDOW):
                chunk = wav[i:i + WINDOW]
                if len(chunk) < WINDOW:
                    chunk = torch.nn.functional.pad(chunk, (0, WINDOW - len(chunk)))
                probs.append(model(chunk, sr).item())
            if progress:
                progress(100.0 * min(n, b + BLOCK) / n)
        model.reset_states()
    stamps = get_speech_timestamps_from_probs(
        probs, sampling_rate=sr, threshold=threshold,
        min_speech_duration_ms=int(min_speech * 1000), min_silence_duration_ms=int(min_silence * 1000),
        speech_pad_ms=int(pad * 1000), max_speech_duration_s=max_span or float("inf"),
        audio_length_samples=n)
    return [(s["start"] / sr, s["end"] / sr) for s in stamps]
