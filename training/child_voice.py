"""Child-like voices from adult speech: training and proxy-test material for the `child` class.

There is no child speech in ../shared. A child differs from an adult mainly by a shorter vocal
tract (formants 15-50 % higher) and a higher pitch; pitch alone does not separate a mother from her
child (measured: 243 vs 248 Hz median F0), so the transform sets the two independently:

1. pitch: `librosa.effects.pitch_shift` (phase-vocoder time stretch + soxr resampling) moves F0
   from the speaker's median to `f0` Hz. It scales the spectral envelope by the same factor
   `beta = f0 / median_f0`;
2. formants: every STFT frame of the shifted signal is multiplied by the smooth gain
   `E(f / alpha) / E(f / beta)`, where `E` is the cepstrally smoothed spectral envelope of the
   *original* adult frame (dense harmonics give a good envelope; lifter 1.9 ms, below the period
   of any voice under 500 Hz). The envelope ends up scaled by `alpha` (vocal-tract length
   1/alpha of the adult's) while the harmonics stay at the new F0.

`child_voice(audio, f0=300, formant_scale=1.3)` does both; `formant_scale=1` is a pitch change
with the adult's formants kept (used to make high-pitched adult voices, e.g. a mother speaking to a
child, which must stay adult). `speed_child(audio, factor)` is a different, cruder transform
(plain resampling: F0, formants and tempo all scale together), kept for a second proxy test that
the model was not trained on. `world_child(audio, f0, formant_scale)` sets the same two parameters
through the WORLD vocoder (pyworld: F0 contour, spectral envelope and aperiodicity analysed, the
contour scaled, envelope and aperiodicity stretched, then resynthesised): a third chain that shares no
processing with the other two, so one transform can be left out of training and measured on
(`--world` makes every copy, children and pitch-raised adults, through it; the shipped
gender-child-ko trains on `child_voice`'s and `world_child`'s copies and leaves `speed_child` out).
`envelope_factor(adult, child)` measures how far a transform stretched the adult's spectral
envelope (`--check-envelope`: results/child_transform_envelopes.md; `child_voice` does not for men).

    python -m training.child_voice --manifest data/ko-speech/train.jsonl --out data/issue-13b/child/train \
        --copies 2 --adult-pitch-copies 1

writes FLACs and `manifest.jsonl` rows with `gender` = `child` (or the adult's gender for the
pitch-raised adult copies), the source speaker, and the transform's parameters.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from speech.audio import SAMPLE_RATE
from training.noise import limit_peak

N_FFT, HOP = 1024, 256
LIFTER = 30          # cepstral coefficients kept (1.9 ms at 16 kHz)
MAX_GAIN_DB = 30.0


def log_envelope(mag: np.ndarray, lifter: int = LIFTER) -> np.ndarray:
    """(F, T) STFT magnitudes -> (F, T) cepstrally smoothed natural-log envelope."""
    logm = np.log(np.maximum(mag, 1e-6))
    cep = np.fft.irfft(logm, axis=0)                        # (N_FFT, T) real cepstrum
    cep[lifter:-lifter + 1] = 0.0
    return np.fft.rfft(cep, axis=0).real[:mag.shape[0]]


def warp(env: np.ndarray, factor: float, freqs: np.ndarray) -> np.ndarray:
    """env(f / factor) per frame (linear interpolation): the envelope stretched up by `factor`."""
    pos = np.clip(freqs / factor / freqs[1], 0, len(freqs) - 1)   # fractional bin of f / factor
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(freqs) - 1)
    w = (pos - lo)[:, None]
    return env[lo] * (1 - w) + env[hi] * w


def child_voice(audio: np.ndarray, f0: float, formant_scale: float, source_f0: float | None = None,
                sr: int = SAMPLE_RATE) -> np.ndarray:
    """Set the median F0 to `f0` Hz and scale the formants by `formant_scale`; same length and RMS."""
    import librosa

    if source_f0 is None:
        from speech.pitch import median_f0

        source_f0 = median_f0(audio)
    if not np.isfinite(source_f0) or source_f0 <= 0:
        raise ValueError("no voiced frame: cannot measure the source pitch")
    beta = f0 / source_f0
    x = audio.astype(np.float32)
    y = librosa.effects.pitch_shift(x, sr=sr, n_steps=12 * np.log2(beta), n_fft=N_FFT, hop_length=HOP,
                                   res_type="soxr_hq")
    X = librosa.stft(x, n_fft=N_FFT, hop_length=HOP)
    Y = librosa.stft(y, n_fft=N_FFT, hop_length=HOP)
    t = min(X.shape[1], Y.shape[1])
    env = log_envelope(np.abs(X[:, :t]))
    freqs = np.linspace(0, sr / 2, X.shape[0])
    gain = warp(env, formant_scale, freqs) - warp(env, beta, freqs)
    gain = np.clip(gain, -MAX_GAIN_DB / 8.686, MAX_GAIN_DB / 8.686)   # dB -> nepers
    out = librosa.istft(Y[:, :t] * np.exp(gain), hop_length=HOP, n_fft=N_FFT, length=len(x))
    rms_in, rms_out = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(out ** 2))
    out = out * (rms_in / max(rms_out, 1e-9))
    return limit_peak(out).astype(np.float32)


def speed_child(audio: np.ndarray, factor: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Play `factor` times faster (resampling): F0 and formants x factor, duration / factor."""
    import soxr

    return soxr.resample(audio.astype(np.float32), sr * factor, sr).astype(np.float32)


def world_f0(x: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """WORLD's F0 contour (dio refined by stonemask, 5 ms frames, 60-600 Hz; 0 = unvoiced) and its times."""
    import pyworld

    contour, times = pyworld.dio(x, sr, f0_floor=60.0, f0_ceil=600.0, frame_period=5.0)
    return pyworld.stonemask(x, contour, times, sr), times


def world_child(audio: np.ndarray, f0: float, formant_scale: float, source_f0: float | None = None,
                sr: int = SAMPLE_RATE) -> np.ndarray:
    """`child_voice`'s change through the WORLD vocoder: the F0 contour scaled to a median of `f0` Hz,
    spectral envelope and aperiodicity stretched up by `formant_scale`; same length and RMS."""
    import pyworld

    if source_f0 is None:
        from speech.pitch import median_f0

        source_f0 = median_f0(audio)            # as child_voice measures it
    x = audio.astype(np.float64)
    contour, times = world_f0(x, sr)
    if not np.isfinite(source_f0) or source_f0 <= 0:
        raise ValueError("no voiced frame: cannot measure the source pitch")
    envelope = pyworld.cheaptrick(x, contour, times, sr)       # (frames, bins) power
    aperiodicity = pyworld.d4c(x, contour, times, sr)
    freqs = np.linspace(0, sr / 2, envelope.shape[1])
    envelope = np.ascontiguousarray(warp(envelope.T, formant_scale, freqs).T)
    aperiodicity = np.ascontiguousarray(warp(aperiodicity.T, formant_scale, freqs).T)
    y = pyworld.synthesize(contour * (f0 / source_f0), envelope, aperiodicity, sr, frame_period=5.0)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[:len(x)]
    rms_in, rms_out = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(y ** 2))
    return limit_peak(y * (rms_in / max(rms_out, 1e-9))).astype(np.float32)


def envelope_factor(adult: np.ndarray, child: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """The factor k that best maps the adult's mean log spectral envelope onto the child's
    (child(k f) ~ adult(f), 300 Hz - 4 kHz, k in 0.8-1.8), both estimated over voiced frames by
    WORLD's F0-adaptive `cheaptrick`: a formant scale s done right gives about s at any pitch."""
    import pyworld

    def envelope(x):
        x = x.astype(np.float64)
        contour, times = world_f0(x, sr)
        env = pyworld.cheaptrick(x, contour, times, sr)[contour > 0]
        return np.log(env.mean(0) + 1e-12)

    freqs, grid = np.linspace(0, sr / 2, 513), np.geomspace(300.0, 4000.0, 300)
    ref = np.interp(grid, freqs, envelope(adult))
    ref = ref - ref.mean()
    out = envelope(child)

    def match(k):
        z = np.interp(grid * k, freqs, out)
        z = z - z.mean()
        return float((ref * z).sum() / np.sqrt((ref ** 2).sum() * (z ** 2).sum()))
    return float(max(np.linspace(0.8, 1.8, 101), key=match))


def draw_child(source_gender: str, rng: random.Random) -> tuple[float, float]:
    """(f0 Hz, formant scale) for a child-like copy. Children's formants sit ~1.15-1.35x an adult
    woman's and ~1.3-1.5x an adult man's; F0 from 230 Hz on, so pitch overlaps adult women."""
    alpha = rng.uniform(1.2, 1.35) if source_gender == "female" else rng.uniform(1.3, 1.45)
    return rng.uniform(230.0, 400.0), alpha


def draw_adult_pitch(source_gender: str, source_f0: float, rng: random.Random) -> float:
    """A raised F0 for an adult copy that keeps its formants (animated or child-directed speech)."""
    hi = 320.0 if source_gender == "female" else 200.0
    return float(np.clip(source_f0 * rng.uniform(1.1, 1.6), source_f0, max(hi, source_f0)))


def main(argv=None):
    import soundfile as sf

    from speech.audio import load_audio
    from speech.pitch import median_f0
    from training.manifest import normalize_gender, read_manifest

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", help="folder for the FLACs and manifest.jsonl (not with --check-envelope)")
    p.add_argument("--copies", type=int, default=2, help="child-like copies per utterance")
    p.add_argument("--adult-pitch-copies", type=int, default=0,
                   help="pitch-raised copies per utterance that keep the adult formants and label")
    p.add_argument("--speed", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="use the plain-resampling transform with a factor in [LO, HI] instead")
    p.add_argument("--world", action="store_true",
                   help="make the child-like (and pitch-raised) copies through the WORLD vocoder (world_child) instead of child_voice")
    p.add_argument("--exclude-note", nargs="*", default=["teen"], help="skip speakers with these notes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--one-voice", action="store_true",
                   help="one child voice (F0, formant scale; with --speed, one factor) per source speaker, as a real child has, "
                        "instead of a new draw per utterance (conversations: training/make_conversations.py --children)")
    p.add_argument("--check-envelope", action="store_true",
                   help="write nothing; per utterance, the envelope_factor of child_voice's and world_child's "
                        "children (F0 300 Hz, formant scale 1.35, and 1.0) as JSON lines")
    args = p.parse_args(argv)
    if args.speed and args.world:
        p.error("--speed and --world are two different transforms: give one")
    if not args.out and not args.check_envelope:
        p.error("--out is needed (unless --check-envelope)")
    if args.check_envelope:
        for r in read_manifest(args.manifest):
            a = load_audio(r["audio"])
            f0 = median_f0(a)
            print(json.dumps({"utt": r["utt"], "gender": normalize_gender(r["gender"]), "f0": round(float(f0), 1),
                              **{f"{make.__name__}_{s}": round(envelope_factor(a, make(a, 300.0, s, source_f0=f0)), 2)
                                 for make in (child_voice, world_child) for s in (1.35, 1.0)}}))
        return

    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in read_manifest(args.manifest) if (r.get("note") or "") not in args.exclude_note]
    n, voices = 0, {}
    make, child_name, pitch_name = ((world_child, "world", "world_pitch_only") if args.world
                                    else (child_voice, "child_voice", "pitch_only"))
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as man:
        for r in rows:
            a = load_audio(r["audio"])
            g = normalize_gender(r["gender"])
            f0 = median_f0(a)
            if not np.isfinite(f0):
                continue
            jobs = [("child", k) for k in range(args.copies)] + [(g, k) for k in range(args.adult_pitch_copies)]
            for label, k in jobs:
                if args.speed:
                    drawn = rng.uniform(*args.speed)      # for every utterance, as below
                    factor = voices.setdefault((r["speaker"], k), drawn) if args.one_voice else drawn
                    y, params = speed_child(a, factor), {"transform": "speed", "factor": round(factor, 3)}
                elif label == "child":
                    drawn = draw_child(g, rng)   # for every utterance: --one-voice keeps the random stream
                    cf0, alpha = voices.setdefault((r["speaker"], k), drawn) if args.one_voice else drawn
                    y = make(a, cf0, alpha, source_f0=f0)
                    params = {"transform": child_name, "f0": round(cf0, 1), "formant_scale": round(alpha, 3)}
                else:
                    cf0 = draw_adult_pitch(g, f0, rng)
                    y = make(a, cf0, 1.0, source_f0=f0)
                    params = {"transform": pitch_name, "f0": round(cf0, 1), "formant_scale": 1.0}
                name = f"{r['utt']}.{label}{k}.flac"
                sf.write(str(out / name), y, SAMPLE_RATE, subtype="PCM_16")
                man.write(json.dumps({
                    "audio": name, "text": r.get("text", ""), "utt": f"{r['utt']}.{label}{k}",
                    "speaker": f"{r['speaker']}" if label != "child" else f"child-{r['speaker']}",
                    "gender": label, "note": "synthetic-child" if label == "child" else "pitch-raised",
                    "source_speaker": r["speaker"], "source_gender": g, "source_f0": round(float(f0), 1),
                    "duration": round(len(y) / SAMPLE_RATE, 3), **params}, ensure_ascii=False) + "\n")
                n += 1
    print(json.dumps({"written": n, "out": str(out)}))


if __name__ == "__main__":
    main()
