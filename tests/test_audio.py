"""speech.audio on a real clip in every format a user may bring, and every way input can be wrong.

Formats are derived from one fixture at test time with ffmpeg, so the clip is the same everywhere
and only the container/codec differs.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech import audio as audio_mod
from speech.audio import (SAMPLE_RATE, AudioDecodeError, AudioError, AudioTooShortError, EmptyAudioError,
                          SilentAudioError, audio_duration, load_audio)

FIXTURES = Path(__file__).parent / "fixtures"
CLIP = FIXTURES / "ko-speech" / "kih00023.flac"

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

# name -> ffmpeg output options (the file suffix picks the container)
FFMPEG_FORMATS = {
    "clip.wav": [],
    "clip.flac": [],
    "clip.mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "clip.opus.ogg": ["-c:a", "libopus", "-b:a", "32k"],
    "clip.m4a": ["-c:a", "aac", "-b:a", "96k"],
    "clip.webm": ["-c:a", "libopus", "-b:a", "32k"],
    "clip_44k_stereo.wav": ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le"],
}


def ffmpeg(src: Path, dst: Path, opts: list[str]) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *opts, str(dst)], check=True)
    return dst


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    data, sr = sf.read(str(CLIP), dtype="float32")
    assert sr == SAMPLE_RATE and data.ndim == 1  # the fixture itself is 16 kHz mono
    return data


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    d = tmp_path_factory.mktemp("formats")
    files = {name: ffmpeg(CLIP, d / name, opts) for name, opts in FFMPEG_FORMATS.items()}
    pcm = d / "clip.pcm"  # KsponSpeech style: headerless 16 kHz int16 little-endian
    samples, _ = sf.read(str(CLIP), dtype="int16")
    samples.astype("<i2").tofile(pcm)
    files["clip.pcm"] = pcm
    return files


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 800) -> float:
    """Largest normalised correlation over lags up to 50 ms (lossy codecs may shift by a few samples)."""
    best = -1.0
    for lag in range(-max_lag, max_lag + 1, 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(len(x), len(y))
        if n < SAMPLE_RATE // 2:
            continue
        c = float(np.corrcoef(x[:n], y[:n])[0, 1])
        best = max(best, c)
        if best > 0.999:
            break
    return best


@pytest.mark.parametrize("name", [*FFMPEG_FORMATS, "clip.pcm"])
def test_every_format_loads_to_the_same_16k_mono_float32(formats, reference, name):
    audio = load_audio(formats[name])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0 < audio.std() < 1
    assert np.abs(audio).max() <= 1.0
    # Same duration within a codec frame of padding (AAC/MP3 frames are 1024/1152 samples).
    assert abs(len(audio) - len(reference)) / SAMPLE_RATE < 0.08, name
    assert best_correlation(audio, reference, max_lag=0 if name.endswith(("wav", "flac", "pcm")) else 800) > 0.97, name


@pytest.mark.parametrize("name", ["clip.flac", "clip.m4a", "clip.webm", "clip.opus.ogg"])
def test_bytes_input_equals_path_input(formats, name):
    path = formats[name]
    np.testing.assert_array_equal(load_audio(path.read_bytes()), load_audio(path))
    np.testing.assert_array_equal(load_audio(bytearray(path.read_bytes())), load_audio(str(path)))


def test_gradio_tuple_equals_file_input(formats):
    path = formats["clip_44k_stereo.wav"]
    data, sr = sf.read(str(path), dtype="int16")
    assert sr == 44100 and data.shape[1] == 2 and data.dtype == np.int16
    from_tuple = load_audio((sr, data))            # what gr.Audio(type="numpy") hands over
    from_file = load_audio(path)
    assert from_tuple.dtype == np.float32 and from_tuple.ndim == 1
    np.testing.assert_allclose(from_tuple, from_file, atol=1e-6)


@pytest.mark.parametrize("name", ["clip_44k_stereo.wav", "clip.mp3"])
def test_decoding_block_by_block_equals_decoding_the_whole_file(formats, monkeypatch, name):
    """Files are read, mixed down and resampled in blocks (bounded memory for long recordings);
    the block size must not change a sample."""
    data, sr = sf.read(str(formats[name]), dtype="float32", always_2d=True)
    whole = audio_mod.resample(data.mean(axis=1), sr, SAMPLE_RATE)
    monkeypatch.setattr(audio_mod, "READ_BLOCK", 1001)   # dozens of blocks, odd boundaries
    blocks = load_audio(formats[name])
    assert len(blocks) == len(whole)
    np.testing.assert_allclose(blocks, whole, atol=1e-5)


def test_channels_first_array_is_averaged_like_channels_last(reference):
    left, right = reference, 0.5 * reference
    last = load_audio((SAMPLE_RATE, np.stack([left, right], axis=1)))
    first = load_audio((SAMPLE_RATE, np.stack([left, right], axis=0)))
    np.testing.assert_allclose(first, last, atol=1e-7)
    np.testing.assert_allclose(last, 0.75 * reference, atol=1e-6)


def assert_plain(e: AudioError, *words: str) -> None:
    msg = str(e)
    assert isinstance(e, ValueError)
    # One sentence for a person: no traceback, no library internals such as libsndfile's error text.
    assert msg and "\n" not in msg and "Traceback" not in msg and "sndfile" not in msg.lower(), msg
    for w in words:
        assert w.lower() in msg.lower(), msg


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError) as e:
        load_audio(tmp_path / "nope.wav")
    assert_plain(e.value, "nope.wav")


def test_folder(tmp_path):
    with pytest.raises(AudioDecodeError) as e:
        load_audio(tmp_path)
    assert_plain(e.value, "folder")


def test_empty_file_and_empty_bytes(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(EmptyAudioError) as e:
        load_audio(empty)
    assert_plain(e.value, "empty")
    with pytest.raises(EmptyAudioError):
        load_audio(b"")


@needs_ffmpeg
def test_garbage_bytes(tmp_path):
    junk = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    bad = tmp_path / "song.mp3"
    bad.write_bytes(junk)
    with pytest.raises(AudioDecodeError) as e:
        load_audio(bad)
    assert_plain(e.value, "audio")
    with pytest.raises(AudioDecodeError):
        load_audio(junk)


def test_too_short(reference, tmp_path):
    short = reference[8000:8000 + int(0.05 * SAMPLE_RATE)]
    assert np.abs(short).max() > 1e-3  # real sound, only too short
    with pytest.raises(AudioTooShortError) as e:
        load_audio((SAMPLE_RATE, short))
    assert_plain(e.value, "short")
    path = tmp_path / "short.wav"
    sf.write(path, short, SAMPLE_RATE)
    with pytest.raises(AudioTooShortError):
        load_audio(path)
    # The check can be switched off (training loads everything it is given).
    assert len(load_audio(path, check=False)) == len(short)


def test_all_zeros_is_silent(tmp_path):
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros(SAMPLE_RATE, dtype=np.int16), SAMPLE_RATE)
    with pytest.raises(SilentAudioError) as e:
        load_audio(path)
    assert_plain(e.value, "silent")
    with pytest.raises(SilentAudioError):
        load_audio((SAMPLE_RATE, np.zeros((SAMPLE_RATE, 2), dtype=np.int16)))


def test_nan_is_a_decode_error(reference, tmp_path):
    bad = reference.copy()
    bad[100] = np.nan
    with pytest.raises(AudioDecodeError) as e:
        load_audio(bad)
    assert_plain(e.value, "NaN")
    path = tmp_path / "nan.wav"
    sf.write(path, bad, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioDecodeError):
        load_audio(path)


def test_none_is_empty():
    with pytest.raises(EmptyAudioError) as e:
        load_audio(None)
    assert_plain(e.value)


def test_audio_duration_matches_decoded_length(formats, reference):
    for name in ["clip.wav", "clip.flac", "clip_44k_stereo.wav", "clip.pcm", "clip.m4a"]:
        d = audio_duration(formats[name])
        assert abs(d - len(load_audio(formats[name])) / SAMPLE_RATE) < 1e-3, name
        assert abs(d - len(reference) / SAMPLE_RATE) < 0.08, name


def test_audio_duration_reads_the_header_only(formats, monkeypatch):
    def no_decode(*a, **k):
        raise AssertionError("audio_duration decoded the whole file")

    monkeypatch.setattr(audio_mod, "decode_audio", no_decode)
    monkeypatch.setattr(audio_mod, "_ffmpeg_decode", no_decode)
    for name in ["clip.wav", "clip.flac", "clip_44k_stereo.wav", "clip.pcm"]:
        assert audio_duration(formats[name]) > 2.0


@pytest.mark.parametrize("name", ["clip.flac", "clip_44k_stereo.wav"])
def test_decoding_without_a_trusted_length_gives_the_same_samples(formats, monkeypatch, name):
    """Blocks are written into one array sized from the header (an hour costs one copy, not the
    blocks and their concatenation); without a length to trust the array grows as it fills,
    to the same samples."""
    monkeypatch.setattr(audio_mod, "READ_BLOCK", 1001)
    sized = load_audio(formats[name])
    monkeypatch.setattr(audio_mod, "MAX_HEADER_SECONDS", 0)     # the header's length is not used
    grown = load_audio(formats[name])
    assert len(sized) > 20 * 1001
    np.testing.assert_array_equal(grown, sized)
