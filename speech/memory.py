"""Process memory: the peak resident size, and handing freed memory back to the system.

    from speech.memory import peak_rss_mb, release
    release()            # after a stage that freed large buffers
    peak_rss_mb()        # this process's peak resident memory so far (MB)

glibc keeps memory that was freed inside its heaps (tensors and arrays of a few MB land there),
so an analysis that frees one speaker's buffers and allocates the next speaker's grows its
resident size stage after stage: measured on a one-hour recording, 1.0 -> 1.4 GB while labelling
speakers (results/analysis_benchmark.md). `release()` calls `malloc_trim(0)`, which returns those
free pages; elsewhere (macOS, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim   # glibc only
    except (OSError, AttributeError):
        return None
    return libc


def release() -> None:
    """Return the free memory of the C heaps to the system (glibc's malloc_trim)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
