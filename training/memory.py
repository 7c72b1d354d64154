"""Resident memory of this process: now, its peak so far, and the peak inside a block
(`RssSampler`), for the evaluation and benchmark scripts."""
from __future__ import annotations

import os
import threading

from speech.memory import peak_rss_mb


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; peak-so-far elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return peak_rss_mb()


class RssSampler:
    """Peak RSS inside a `with` block, sampled every `interval` s (ru_maxrss only ever grows)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0.0
        self.start = 0.0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())
