"""Audio in: any common file, bytes, or a (sample_rate, array) pair -> 16 kHz mono float32.

One place for the audio constants. Decoding order: soundfile (wav, flac, ogg/vorbis/opus, mp3 in
libsndfile >= 1.1), raw KsponSpeech .pcm, then the ffmpeg command line (m4a, webm, aac, ...).
Every failure a user can cause becomes an `AudioError` subclass with a plain sentence.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
MIN_DURATION = 0.1          # seconds; shorter input cannot hold a syllable
SILENCE_PEAK = 1e-4         # |x| below this everywhere (-80 dBFS) counts as digital silence
PCM_SAMPLE_RATE = 16000     # KsponSpeech .pcm: headerless 16 kHz 16-bit mono little-endian
INT16_SCALE = 32768.0       # int16 -> float divisor of every decoder here (soundfile's convention)

AudioSource = Union[str, os.PathLike, bytes, bytearray, tuple, np.ndarray]


class AudioError(ValueError):
    """Input audio a person supplied cannot be used; str(e) is a sentence for that person."""


class AudioDecodeError(AudioError):
    pass


class EmptyAudioError(AudioError):
    pass


class AudioTooShortError(AudioError):
    pass


class SilentAudioError(AudioError):
    pass


class NoSpeechError(AudioError):
    """Sound, but no speech in it (see speech.usable for the one rule that raises it)."""


def _to_float_mono(data: np.ndarray) -> np.ndarray:
    """int or float samples, (N,) or (N, C) or (C, N) -> float32 (N,) in [-1, 1]."""
    data = np.asarray(data)
    if data.dtype.kind == "i":
        scale = float(np.iinfo(data.dtype).max + 1)
        data = data.astype(np.float32)
        data /= scale                    # in place: one float copy of the samples, not two
    elif data.dtype.kind == "u":
        info = np.iinfo(data.dtype)
        mid = (info.max + 1) / 2
        data = data.astype(np.float32)
        data -= mid
        data /= mid
    elif data.dtype.kind == "f":
        data = data.astype(np.float32, copy=False)
    else:
        raise AudioDecodeError(f"Audio samples of type {data.dtype} are not supported.")
    if data.ndim == 2:
        # Gradio and soundfile give (N, C); some libraries give (C, N) with few channels.
        if data.shape[0] <= 8 and data.shape[1] > data.shape[0]:
            data = data.T
        data = data.mean(axis=1)
    elif data.ndim != 1:
        raise AudioDecodeError(f"Audio array must be 1-D or 2-D, got shape {data.shape}.")
    return np.ascontiguousarray(data, dtype=np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    if orig_sr <= 0:
        raise AudioDecodeError(f"Invalid sample rate {orig_sr}.")
    import soxr

    return soxr.resample(audio, orig_sr, target_sr).astype(np.float32, copy=False)


def _ffmpeg_decode(src: Union[str, bytes], sr: int) -> np.ndarray:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioDecodeError(
            "This audio format needs ffmpeg, which is not installed (apt-get install ffmpeg).")
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "0",
           "-i", src if isinstance(src, str) else "pipe:0",
           "-f", "f32le", "-ac", "1", "-ar", str(sr), "pipe:1"]
    # The samples go through an unnamed temporary file, not a pipe: reading a pipe's bytes and
    # copying them into an array held two copies of an hour (460 MB) at once.
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(cmd, input=src if isinstance(src, bytes) else None,
                                  stdout=out, stderr=subprocess.PIPE, timeout=3600)
        except subprocess.TimeoutExpired as e:
            raise AudioDecodeError("Decoding the audio took too long; the file may be damaged.") from e
        if proc.returncode != 0:
            raise AudioDecodeError("The file could not be read as audio (unknown format or damaged file).")
        out.seek(0)
        return np.fromfile(out, dtype=np.float32)


READ_BLOCK = 1 << 18  # frames per read: a long file never sits in memory at its own rate and channel count
MAX_HEADER_SECONDS = 48 * 3600  # a header claiming more frames than this is not trusted to size the result


def _read_soundfile(src, sr: int) -> np.ndarray:
    """Decode with libsndfile block by block, mixing down to mono and resampling as it goes, so an
    hour of 48 kHz stereo costs the 16 kHz mono result (230 MB), not the 1.4 GB of its decoding."""
    with sf.SoundFile(src) as f:
        stream = None
        if f.samplerate != sr:
            if f.samplerate <= 0:
                raise AudioDecodeError(f"Invalid sample rate {f.samplerate}.")
            import soxr

            stream = soxr.ResampleStream(f.samplerate, sr, 1, dtype="float32")
        # The result is written into one array sized from the header (and grown if a header
        # undercounts): collecting blocks and concatenating them held two copies of an hour at once.
        frames = f.frames if 0 <= f.frames <= f.samplerate * MAX_HEADER_SECONDS else READ_BLOCK
        expect = frames if stream is None else int(np.ceil(frames * sr / f.samplerate)) + sr
        out = np.empty(expect, np.float32)
        n = 0
        for block in f.blocks(blocksize=READ_BLOCK, dtype="float32", always_2d=True):
            mono = np.ascontiguousarray(block.mean(axis=1), dtype=np.float32)
            out, n = _append(out, n, mono if stream is None else stream.resample_chunk(mono))
        if stream is not None:
            out, n = _append(out, n, stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return out[:n] if len(out) - n <= sr else out[:n].copy()


def _append(out: np.ndarray, n: int, part: np.ndarray) -> tuple[np.ndarray, int]:
    if n + len(part) > len(out):
        grown = np.empty(max(2 * len(out), n + len(part)), np.float32)
        grown[:n] = out[:n]
        out = grown
    out[n:n + len(part)] = part
    return out, n + len(part)


def _decode_file(path: Path, sr: int) -> np.ndarray:
    if not path.exists():
        raise AudioDecodeError(f"No such audio file: {path}")
    if path.is_dir():
        raise AudioDecodeError(f"{path} is a folder, not an audio file.")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"The file {path.name} is empty.")
    if path.suffix.lower() == ".pcm":
        raw = np.fromfile(path, dtype="<i2")
        return resample(_to_float_mono(raw), PCM_SAMPLE_RATE, sr)
    try:
        return _read_soundfile(str(path), sr)
    except Exception:  # libsndfile does not know the container: let ffmpeg try
        return _ffmpeg_decode(str(path), sr)


def _decode_bytes(blob: bytes, sr: int) -> np.ndarray:
    if len(blob) == 0:
        raise EmptyAudioError("The audio data is empty.")
    try:
        return _read_soundfile(io.BytesIO(blob), sr)
    except Exception:
        return _ffmpeg_decode(bytes(blob), sr)


def decode_audio(source: AudioSource, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode without any content checks. A bare ndarray is taken as already at `sr`."""
    if source is None:
        raise EmptyAudioError("No audio was given.")
    if isinstance(source, (bytes, bytearray)):
        audio = _decode_bytes(bytes(source), sr)
    elif isinstance(source, tuple):
        if len(source) != 2:
            raise AudioDecodeError("Audio as a tuple must be (sample_rate, samples).")
        a, b = source
        src_sr, data = (a, b) if np.isscalar(a) else (b, a)  # Gradio: (sr, data)
        data = _to_float_mono(np.asarray(data))
        audio = resample(data, int(src_sr), sr)
    elif isinstance(source, np.ndarray):
        audio = _to_float_mono(source)
    else:
        audio = _decode_file(Path(source), sr)
    if not _all_finite(audio):
        raise AudioDecodeError("The audio contains invalid (NaN or infinite) samples.")
    return audio


def _all_finite(audio: np.ndarray, block: int = 1 << 20) -> bool:
    # block by block: np.isfinite of an hour is a 58 MB temporary
    return all(np.isfinite(audio[i:i + block]).all() for i in range(0, audio.size, block))


def peak_level(audio: np.ndarray) -> float:
    """max |x| without a temporary copy of the samples (np.abs of an hour is 230 MB)."""
    return float(max(audio.max(), -audio.min())) if audio.size else 0.0


def check_audio(audio: np.ndarray, sr: int = SAMPLE_RATE, min_duration: float = MIN_DURATION) -> None:
    if audio.size == 0:
        raise EmptyAudioError("The audio holds no samples.")
    if audio.size < min_duration * sr:
        raise AudioTooShortError(
            f"The audio is too short ({audio.size / sr:.2f} s); at least {min_duration:g} s is needed.")
    if peak_level(audio) < SILENCE_PEAK:
        raise SilentAudioError("The audio is silent: it holds no sound.")


def load_audio(source: AudioSource, sr: int = SAMPLE_RATE, *, min_duration: float = MIN_DURATION,
               check: bool = True) -> np.ndarray:
    """Any supported input -> float32 mono at `sr`, peak-limited to [-1, 1].

    With `check`, empty, too-short and digitally silent input raise an `AudioError`.
    """
    audio = decode_audio(source, sr)
    if check:
        check_audio(audio, sr, min_duration)
    peak = peak_level(audio)
    if peak > 1.0:  # float input outside [-1, 1] (e.g. int16 values stored as float)
        audio = audio / peak
    return audio


def audio_duration(path: Union[str, os.PathLike]) -> float:
    """Duration in seconds from the header where possible (no full decode)."""
    path = Path(path)
    if path.suffix.lower() == ".pcm":
        return path.stat().st_size / (2 * PCM_SAMPLE_RATE)
    try:
        return float(sf.info(str(path)).duration)
    except Exception:
        return decode_audio(path).size / SAMPLE_RATE
