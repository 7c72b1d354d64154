"""Subtitle and table writers shared by the CLI, the analysis exports and the app."""
from __future__ import annotations

from typing import Iterable

import numpy as np


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


# Subtitles sized for reading (Netflix's timed-text rules: at most 7 s and 2 lines a cue, 16
# characters a line in Korean, where Latin letters, digits, spaces and punctuation count half).
MAX_CUE_SECONDS = 7.0
MAX_LINES = 2
LINE_WIDTH = 16.0


def text_width(text: str) -> float:
    return sum(0.5 if ord(c) < 128 else 1.0 for c in text)


def _wrap(tokens: list[str], width: float = LINE_WIDTH) -> list[str]:
    """Words -> lines: one line when it fits, else the most even split into two (or, for text
    that two lines cannot hold, greedy lines)."""
    text = " ".join(tokens)
    if text_width(text) <= width or len(tokens) == 1:
        return [text]
    splits = [(" ".join(tokens[:i]), " ".join(tokens[i:])) for i in range(1, len(tokens))]
    best = min(splits, key=lambda ab: max(text_width(ab[0]), text_width(ab[1])))
    if max(map(text_width, best)) <= width:
        return list(best)
    lines = [tokens[0]]
    for t in tokens[1:]:
        if text_width(f"{lines[-1]} {t}") <= width:
            lines[-1] += f" {t}"
        else:
            lines.append(t)
    return lines


def _fits(tokens: list[str], width: float, max_lines: int) -> bool:
    return len(_wrap(tokens, width)) <= max_lines


def _timed_tokens(start: float, end: float, text: str, words) -> list[tuple[float, float, str]]:
    """A segment's words with their times; without word times, the segment's time shared out
    over its words by their width."""
    if words:
        return [(float(w.start), float(w.end), w.text) if hasattr(w, "start") else (float(w[0]), float(w[1]), w[2])
                for w in words if (w.text if hasattr(w, "text") else w[2]).strip()]
    tokens = text.split()
    widths = np.array([max(text_width(t), 0.5) for t in tokens])
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(widths) / max(widths.sum(), 1e-9)])
    return [(float(a), float(b), t) for a, b, t in zip(edges[:-1], edges[1:], tokens)]


def subtitle_cues(items: Iterable[tuple], max_seconds: float = MAX_CUE_SECONDS, line_width: float = LINE_WIDTH,
                  max_lines: int = MAX_LINES) -> list[tuple[float, float, str]]:
    """Segments -> cues sized for reading: each at most `max_seconds` long and `max_lines` lines
    of `line_width`, split at word times (or the segment's times shared out over its words).

    items: (start, end, text) or (start, end, text, words), words having .start/.end/.text or being
    (start, end, text) tuples. A cue never spans two segments. -> (start, end, text with "\n")."""
    cues = []
    for item in items:
        start, end, text = float(item[0]), float(item[1]), item[2]
        words = item[3] if len(item) > 3 else None
        group: list[tuple[float, float, str]] = []
        for tok in _timed_tokens(start, end, text, words):
            if group and (tok[1] - group[0][0] > max_seconds
                          or not _fits([g[2] for g in group] + [tok[2]], line_width, max_lines)):
                cues.append((group[0][0], group[-1][1], "\n".join(_wrap([g[2] for g in group], line_width))))
                group = []
            group.append(tok)
        if group:
            cues.append((group[0][0], group[-1][1], "\n".join(_wrap([g[2] for g in group], line_width))))
    return cues


def split_span(start: float, end: float, max_seconds: float = MAX_CUE_SECONDS) -> list[tuple[float, float]]:
    """(start, end) -> equal pieces of at most `max_seconds` (for cues that carry no words)."""
    n = max(1, int(np.ceil((end - start) / max_seconds - 1e-9)))
    edges = np.linspace(start, end, n + 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def to_srt(items: Iterable[tuple[float, float, str]]) -> str:
    """items: (start, end, text) in seconds -> SubRip text, one cue per item (see `subtitle_cues`)."""
    blocks = []
    for i, (start, end, text) in enumerate(items, 1):
        blocks.append(f"{i}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text.strip()}\n")
    return "\n".join(blocks)


def to_vtt(items: Iterable[tuple[float, float, str]]) -> str:
    lines = ["WEBVTT", ""]
    for start, end, text in items:
        lines += [f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}", text.strip(), ""]
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """1:02:03.4 / 2:03.4 style for people."""
    m, s = divmod(max(0.0, seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"
