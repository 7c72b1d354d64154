"""Figures for people: spectrogram with an optional F0 track, conversation timeline, pitch track.

Figures are `matplotlib.figure.Figure` objects on an Agg canvas (no pyplot, no global backend
switch), so they work in scripts, tests and Gradio's `gr.Plot` alike. Hangul labels use Noto Sans
CJK (Debian's fonts-noto-cjk) when it is installed; without it the figure is still drawn, with
matplotlib's default font (Hangul then shows as boxes, and a warning says why once).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from .audio import SAMPLE_RATE

log = logging.getLogger("speech")

GENDER_COLORS = {"female": "#d6336c", "male": "#1c7ed6", "child": "#f59f00"}
GENDER_NAMES = {"female": "여성 female", "male": "남성 male", "child": "어린이 child"}
_FONT_FILES = ["NotoSansCJK-Regular.ttc", "NotoSansCJKkr-Regular.otf", "NotoSansKR-Regular.otf",
               "NotoSansKR-Regular.ttf"]
_FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts")]


@lru_cache(maxsize=1)
def hangul_font() -> Optional[str]:
    """Register a Hangul-capable font with matplotlib once; -> its family name, or None."""
    from matplotlib import font_manager

    for name in ("Noto Sans CJK KR", "Noto Sans KR", "NanumGothic"):
        try:
            path = font_manager.findfont(name, fallback_to_default=False)
            if path:
                return name
        except ValueError:
            pass
    for d in _FONT_DIRS:
        for f in _FONT_FILES:
            for path in Path(d).rglob(f) if Path(d).is_dir() else []:
                font_manager.fontManager.addfont(str(path))
                # A .ttc holds several families; the Korean one is what we want if present.
                names = {e.name for e in font_manager.fontManager.ttflist if e.fname == str(path)}
                for want in ("Noto Sans CJK KR", "Noto Sans KR"):
                    if want in names:
                        return want
                if names:
                    return sorted(names)[0]
    log.warning("No Hangul-capable font found (apt-get install fonts-noto-cjk); Korean labels will not render")
    return None


@contextmanager
def _style():
    import matplotlib

    font = hangul_font()
    rc = {"axes.unicode_minus": False}
    if font:
        rc["font.family"] = [font, "DejaVu Sans"]
    with matplotlib.rc_context(rc):
        yield


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# -- pitch ----------------------------------------------------------------------------------------

def pitch_track(audio: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = 60.0, fmax: float = 500.0,
                hop: float = 0.01, frame: float = 0.064, min_periodicity: float = 0.5,
                min_level_db: float = -40.0) -> tuple[np.ndarray, np.ndarray]:
    """F0 per frame: -> (times in seconds, f0 in Hz with NaN where unvoiced).

    YIN (librosa.yin) gives the period; a frame counts as voiced when the normalised
    autocorrelation at that period reaches `min_periodicity` and its level is within
    `min_level_db` of the loudest frame. ~100x faster than pYIN, which matters for hour-long input.
    """
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    hop_length = max(1, int(round(hop * sr)))
    frame_length = int(2 ** np.ceil(np.log2(frame * sr)))
    if len(audio) < frame_length:
        audio = np.pad(audio, (0, frame_length - len(audio)))
    f0 = librosa.yin(audio, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop_length,
                     center=True)
    padded = np.pad(audio, frame_length // 2)
    frames = librosa.util.frame(padded, frame_length=frame_length, hop_length=hop_length)[:, :len(f0)]  # (L, N)
    period = np.clip(np.round(sr / f0).astype(int), 1, frame_length // 2)
    width = frame_length - int(np.ceil(sr / fmin))
    idx = np.arange(width)[:, None]
    x = frames[:width]
    y = np.take_along_axis(frames, idx + period[None, :], axis=0)
    num = (x * y).sum(0)
    den = np.sqrt((x * x).sum(0) * (y * y).sum(0)) + 1e-12
    periodicity = num / den
    level = 10 * np.log10((frames ** 2).mean(0) + 1e-12)
    voiced = (periodicity >= min_periodicity) & (level >= level.max() + min_level_db)
    times = np.arange(len(f0)) * hop_length / sr
    return times, np.where(voiced, f0, np.nan).astype(np.float32)


def median_f0(audio: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Median F0 over voiced frames (NaN when nothing is voiced)."""
    _, f0 = pitch_track(audio, sr)
    f0 = f0[np.isfinite(f0)]
    return float(np.median(f0)) if f0.size else float("nan")


# -- figures --------------------------------------------------------------------------------------

def spectrogram_figure(audio: np.ndarray, sr: int = SAMPLE_RATE, pitch=None, title: Optional[str] = None,
                       max_freq: float = 4000.0, max_columns: int = 3000):
    """dB spectrogram (0..max_freq Hz) against seconds; `pitch` = (times, f0) from `pitch_track`."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    duration = len(audio) / sr
    n_fft = 512 if sr <= 16000 else 1024
    hop = max(n_fft // 4, int(np.ceil(len(audio) / max_columns)))  # long input: fewer columns
    spec = np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop)) if len(audio) else np.zeros((n_fft // 2 + 1, 1))
    db = librosa.amplitude_to_db(spec, ref=np.max(spec) if spec.size and spec.max() > 0 else 1.0, top_db=80)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    keep = freqs <= max_freq
    with _style():
        fig = _figure(10, 3.6)
        ax = fig.add_subplot()
        im = ax.imshow(db[keep], origin="lower", aspect="auto", cmap="magma",
                       extent=[0, max(duration, 1e-3), 0, freqs[keep][-1]])
        fig.colorbar(im, ax=ax, label="dB")
        if pitch is not None:
            t, f0 = pitch
            ax.plot(t, f0, color="#40c057", linewidth=1.6, label="F0 (Hz)")
            finite = np.asarray(f0)[np.isfinite(f0)]
            if finite.size:
                ax.axhline(float(np.median(finite)), color="#40c057", linestyle="--", linewidth=0.8,
                           label=f"median F0 {np.median(finite):.0f} Hz")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel("시간 time (s)")
        ax.set_ylabel("주파수 frequency (Hz)")
        if title:
            ax.set_title(title)
    return fig


def timeline_figure(report, title: Optional[str] = None):
    """Speech turns of a ConversationReport on one lane per gender, shares in the legend."""
    from matplotlib.patches import Patch

    labels = [g for g in GENDER_COLORS if g in report.genders]   # a 2-class report has no child lane
    with _style():
        fig = _figure(11, 2.6)
        ax = fig.add_subplot()
        for lane, g in enumerate(labels):
            bars = [(t.start, t.end - t.start) for t in report.turns if t.gender == g]
            if bars:
                ax.broken_barh(bars, (lane - 0.35, 0.7), facecolors=GENDER_COLORS[g])
        ax.set_yticks(range(len(labels)), [GENDER_NAMES[g] for g in labels])
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.set_xlim(0, max(report.duration, 1e-3))
        ax.set_xlabel("시간 time (s)")
        handles = [Patch(color=GENDER_COLORS[g],
                         label=f"{GENDER_NAMES[g]}: {report.genders[g]['seconds']:.1f} s "
                               f"({100 * report.genders[g]['share']:.1f}%)") for g in labels]
        ax.legend(handles=handles, loc="upper right", fontsize=8, ncol=2)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(title or f"발화 타임라인 speech timeline — {len(report.turns)} turns, "
                              f"speech {report.speech_seconds:.1f} s of {report.duration:.1f} s")
    return fig
