"""Figures for people: spectrogram with an optional F0 track (from speech.pitch), conversation timeline.

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
from .pitch import median_f0, pitch_track  # noqa: F401 (re-exported: the pitch track lives in speech.pitch)

log = logging.getLogger("speech")

GENDER_COLORS = {"female": "#d6336c", "male": "#1c7ed6"}
GENDER_NAMES = {"female": "여성 female", "male": "남성 male"}
CLASS_COLORS = {**GENDER_COLORS, "child": "#f59f00", "tv": "#868e96"}
CLASS_NAMES = {**GENDER_NAMES, "child": "아이 child", "tv": "TV"}
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


# -- figures --------------------------------------------------------------------------------------

# Typical speaking F0 of adults, the reference bands under the pitch track (Hz). They overlap:
# pitch alone does not decide gender, the classifier does.
PITCH_BANDS = {"male": (85.0, 180.0), "female": (165.0, 255.0)}
PITCH_RANGE = (50.0, 500.0)


def spectrogram_figure(audio: np.ndarray, sr: int = SAMPLE_RATE, pitch=None, title: Optional[str] = None,
                       max_freq: float = 4000.0, max_columns: int = 3000):
    """dB spectrogram (0..max_freq Hz) against seconds. With `pitch` = (times, f0) from `pitch_track`,
    a second panel below shows the F0 track on a 50-500 Hz axis over the female/male reference bands
    (on the spectrogram's 0-4000 Hz axis the track would be squashed into the bottom strip)."""
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
        if pitch is None:
            fig = _figure(10, 3.6)
            ax = fig.add_subplot()
        else:
            fig = _figure(10, 5.6)
            ax, pax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        im = ax.imshow(db[keep], origin="lower", aspect="auto", cmap="magma",
                       extent=[0, max(duration, 1e-3), 0, freqs[keep][-1]])
        fig.colorbar(im, ax=ax, label="dB")
        ax.set_ylabel("주파수 frequency (Hz)")
        if title:
            ax.set_title(title)
        if pitch is None:
            ax.set_xlabel("시간 time (s)")
        else:
            _pitch_panel(pax, pitch)
            ax.set_xlim(0, max(duration, 1e-3))
    return fig


def _pitch_panel(ax, pitch) -> None:
    t, f0 = pitch
    for g, (lo, hi) in PITCH_BANDS.items():
        ax.axhspan(lo, hi, color=GENDER_COLORS[g], alpha=0.13, linewidth=0,
                   label=f"{GENDER_NAMES[g]} {lo:.0f}–{hi:.0f} Hz")
    ax.plot(t, f0, color="#2b8a3e", linewidth=1.6, label="F0")
    finite = np.asarray(f0)[np.isfinite(f0)]
    if finite.size:
        ax.axhline(float(np.median(finite)), color="#2b8a3e", linestyle="--", linewidth=0.9,
                   label=f"중앙값 median {np.median(finite):.0f} Hz")
    ax.set_ylim(*PITCH_RANGE)
    ax.set_ylabel("음높이 pitch (Hz)")
    ax.set_xlabel("시간 time (s)")
    ax.grid(axis="y", alpha=0.3)
    ax.figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8,
                     frameon=False)  # below the figure: the track stays visible


def timeline_figure(report, title: Optional[str] = None):
    """Speech turns of a ConversationReport on one lane per speaker (first speaker on top),
    coloured by class (female, male, child, tv), class shares in the legend."""
    from matplotlib.patches import Patch

    speakers = list(getattr(report, "speakers", None) or [])
    if not speakers:       # a report without speakers: one lane per gender
        from types import SimpleNamespace

        speakers = [SimpleNamespace(id=g, cls=g) for g in GENDER_COLORS]
    classes = [c for c in CLASS_COLORS if c in GENDER_COLORS or any(sp.cls == c for sp in speakers)]
    with _style():
        fig = _figure(11, max(2.6, 1.2 + 0.5 * len(speakers)))
        ax = fig.add_subplot()
        n = len(speakers)
        for i, sp in enumerate(speakers):
            lane = n - 1 - i
            bars = [(t.start, t.end - t.start) for t in report.turns if (t.speaker or t.gender) == sp.id]
            if bars:
                ax.broken_barh(bars, (lane - 0.35, 0.7), facecolors=CLASS_COLORS.get(sp.cls, "#868e96"))
        ax.set_yticks(range(n), [CLASS_NAMES.get(sp.cls, sp.cls) if sp.id == sp.cls
                                 else f"{sp.id} · {CLASS_NAMES.get(sp.cls, sp.cls)}"
                                 for sp in reversed(speakers)])
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlim(0, max(report.duration, 1e-3))
        ax.set_xlabel("시간 time (s)")
        handles = [Patch(color=CLASS_COLORS[g],
                         label=f"{CLASS_NAMES[g]}: {report.genders[g]['seconds']:.1f} s "
                               f"({100 * report.genders[g]['share']:.1f}%)") for g in classes]
        fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncol=len(handles),
                   frameon=False)  # off the bars
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(title or f"발화 타임라인 speech timeline — {len(report.turns)} turns, "
                              f"speech {report.speech_seconds:.1f} s of {report.duration:.1f} s")
    return fig
