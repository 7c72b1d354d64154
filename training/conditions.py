"""The evaluation conditions: the same clean, noisy and far-field audio for every system and
every script that scores one (evaluate_stt, whisper_grid, measure_level, finetune_whisper's dev
subset).

Conditions: `clean`; `noiseN` = household noise mixed at N dB SNR; `farfield` = a synthetic room
(training.noise.synthetic_rir), distance attenuation and a little noise whose level is fixed
relative to the speech at 1 m. Every condition is built from a fixed seed per utterance, so every
system hears identical audio. `quiet` (a quiet home recording) is the clean audio turned down and
stored as 16-bit PCM.
"""
from __future__ import annotations

import hashlib
import math
import re
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from speech.audio import SAMPLE_RATE
from training.data import load_utterances
from training.noise import NoiseBank, mix_at_snr, synthetic_rir

_NOISE = re.compile(r"^noise(-?\d+(?:\.\d+)?)$")
CONDITION_HELP = "clean, noiseN (household noise at N dB SNR, e.g. noise0, noise5, noise10), farfield"


@dataclass(frozen=True)
class FarField:
    rt60: float = 0.5           # seconds of reverberation (a living room)
    distance: float = 4.0       # metres; amplitude falls as 1/distance relative to 1 m
    snr_at_1m: float = 30.0     # room noise level relative to the speech at 1 m


def parse_condition(name: str) -> tuple[str, Optional[float]]:
    """'clean' -> ('clean', None); 'noise5' -> ('noise', 5.0); 'farfield' -> ('farfield', None)."""
    if name in ("clean", "farfield"):
        return name, None
    m = _NOISE.match(name)
    if m:
        return "noise", float(m.group(1))
    raise ValueError(f"Unknown condition {name!r}; conditions = {CONDITION_HELP}")


def utterance_seed(seed: int, condition: str, utt: str) -> int:
    """A seed that depends only on (seed, condition, utterance), not on order or on the system."""
    return (seed * 1_000_003 + zlib.crc32(f"{condition}/{utt}".encode("utf-8"))) % (2 ** 63)


def make_condition(audio: np.ndarray, condition: str, gen: torch.Generator,
                   noise: Optional[NoiseBank], far: FarField = FarField()) -> np.ndarray:
    """Clean float32 audio -> the condition's version (deterministic for a given generator)."""
    kind, snr = parse_condition(condition)
    if kind == "clean":
        return audio
    if noise is None:
        raise ValueError(f"Condition {condition!r} needs --noise-dir")
    import torchaudio.functional as AF

    wav = torch.from_numpy(audio)
    if kind == "noise":
        out = mix_at_snr(wav, noise.sample(len(wav), gen), snr)
    else:
        rir = synthetic_rir(far.rt60, SAMPLE_RATE, gen, "cpu")
        wet = AF.fftconvolve(wav, rir)[: len(wav)] / far.distance
        # The noise level is fixed relative to the speech at 1 m, so distance lowers the SNR.
        out = mix_at_snr(wet, noise.sample(len(wav), gen), far.snr_at_1m - 20 * math.log10(far.distance))
    return out.numpy().astype(np.float32)   # mix_at_snr applied the one peak rule (training.noise)


def audio_sha1(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


class ConditionSet:
    """Builds each condition's audio once (lazily) and hands the same arrays to every system."""

    def __init__(self, rows: list[dict], noise_dir: Optional[str], seed: int,
                 noise_categories: Optional[list] = None, far: FarField = FarField()):
        self.rows = rows
        self.seed = seed
        self.far = far
        self.clean = load_utterances(rows, trim_db=0)
        self.noise = NoiseBank(noise_dir, categories=noise_categories) if noise_dir else None
        self._cache: dict[str, list[np.ndarray]] = {}

    def audio(self, condition: str) -> list[np.ndarray]:
        if condition not in self._cache:
            out = []
            for r, a in zip(self.rows, self.clean):
                gen = torch.Generator().manual_seed(utterance_seed(self.seed, condition, str(r.get("utt", r["audio"]))))
                out.append(make_condition(a, condition, gen, self.noise, self.far))
            self._cache[condition] = out
        return self._cache[condition]


def quiet(audio: np.ndarray, db: float) -> np.ndarray:
    """Attenuate by `db` dB and round to 16-bit PCM, as a recorder would store it."""
    q = np.round(audio * 10 ** (-db / 20) * 32768.0).clip(-32768, 32767)
    return (q / 32768.0).astype(np.float32)


BAND_HELP = ("phone (8 kHz sampling, 300-3400 Hz), phone-CODEC (the same, then through a telephone codec: "
             "gsm, g711, opus, speex), opus16k, opus8k, aac32k (16 kHz audio through a voice-message codec), "
             "lowpassN, highpassN (N in Hz)")
# Codecs through ffmpeg: (sample rate, encoder options) in the container a recording would come in.
# Telephone (8 kHz): GSM 06.10 full rate (2G calls; WAV), G.711 mu-law (fixed lines, VoIP trunks;
# WAV), Opus 12 kb/s in its VoIP mode (messenger calls; Ogg), Speex narrowband (older VoIP; Ogg).
# Voice messages and phone recorders (16 kHz): Opus 16 and 8 kb/s (Ogg; at 8 kb/s the encoder
# itself cuts the band to about 4-6 kHz), AAC-LC 32 kb/s (ADTS).
TELEPHONE_CODECS = ("gsm", "g711", "opus", "speex")
CODECS = {"gsm": (8000, ("-c:a", "libgsm_ms", "-f", "wav")), "g711": (8000, ("-c:a", "pcm_mulaw", "-f", "wav")),
          "opus": (8000, ("-c:a", "libopus", "-b:a", "12k", "-application", "voip", "-f", "ogg")),
          "speex": (8000, ("-c:a", "libspeex", "-f", "ogg")),
          "opus16k": (16000, ("-c:a", "libopus", "-b:a", "16k", "-application", "voip", "-f", "ogg")),
          "opus8k": (16000, ("-c:a", "libopus", "-b:a", "8k", "-application", "voip", "-f", "ogg")),
          "aac32k": (16000, ("-c:a", "aac", "-b:a", "32k", "-f", "adts"))}


def band_limit(audio: np.ndarray, low_hz: Optional[float] = None, high_hz: Optional[float] = None,
               narrow: bool = False, sr: int = SAMPLE_RATE) -> np.ndarray:
    """16 kHz audio through a channel: a high-pass at `low_hz` (Butterworth, 4th order), a low-pass at
    `high_hz` (8th order), both zero phase; `narrow`: through 8 kHz sampling with a 6th-order
    band-pass instead, as a telephone line or an 8 kHz recorder hands speech over."""
    from scipy.signal import butter, resample_poly, sosfiltfilt

    x = np.asarray(audio, dtype=np.float64)
    if narrow:
        y = resample_poly(x, 1, 2)
        y = sosfiltfilt(butter(6, [low_hz, high_hz], btype="band", fs=sr // 2, output="sos"), y)
        return resample_poly(y, 2, 1)[:len(x)].astype(np.float32)
    if low_hz:
        x = sosfiltfilt(butter(4, low_hz, btype="high", fs=sr, output="sos"), x)
    if high_hz:
        x = sosfiltfilt(butter(8, high_hz, btype="low", fs=sr, output="sos"), x)
    return x.astype(np.float32)


def speech_codec(audio: np.ndarray, codec: str, sr: int = SAMPLE_RATE) -> np.ndarray:
    """16 kHz audio encoded with one of CODECS by ffmpeg (at the codec's rate), then read back the
    way the library reads a file (speech.audio.load_audio: libsndfile, ffmpeg for what it cannot read)."""
    import shutil
    import subprocess

    from speech.audio import load_audio

    if codec not in CODECS:
        raise ValueError(f"Unknown codec {codec!r}; codecs = {', '.join(CODECS)}")
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("codec conditions need ffmpeg (apt-get install ffmpeg; setup.sh installs it)")
    rate, options = CODECS[codec]
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1",
           "-i", "pipe:0", "-ar", str(rate), *options, "pipe:1"]
    encoded = subprocess.run(cmd, input=np.asarray(audio, dtype=np.float32).tobytes(), capture_output=True,
                             check=True).stdout
    return load_audio(encoded, sr, check=False)


def band_condition(audio: np.ndarray, name: str, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Clean 16 kHz audio through a named band limit (BAND_HELP): `phone` is `band_limit(300,
    3400, narrow=True)`, `phone-CODEC` that through a telephone codec, a bare codec name the 16 kHz
    audio through that codec (`speech_codec`), `lowpassN` and `highpassN` one filter at N Hz."""
    if name == "phone":
        return band_limit(audio, 300, 3400, narrow=True, sr=sr)
    if name.startswith("phone-") and name[6:] in TELEPHONE_CODECS:
        return speech_codec(band_limit(audio, 300, 3400, narrow=True, sr=sr), name[6:], sr=sr)
    if name in CODECS and name not in TELEPHONE_CODECS:
        return speech_codec(audio, name, sr=sr)
    if name.startswith("lowpass") and name[7:].isdigit():
        return band_limit(audio, high_hz=int(name[7:]), sr=sr)
    if name.startswith("highpass") and name[8:].isdigit():
        return band_limit(audio, low_hz=int(name[8:]), sr=sr)
    raise ValueError(f"Unknown band {name!r}; bands = {BAND_HELP}")
