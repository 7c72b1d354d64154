"""Subtitle and table writers shared by the CLI, the analysis exports and the app."""
from __future__ import annotations

from typing import Iterable


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(items: Iterable[tuple[float, float, str]]) -> str:
    """items: (start, end, text) in seconds -> SubRip text."""
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
