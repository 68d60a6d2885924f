"""Keep the process's memory flat on long videos (glibc only; a no-op elsewhere).

Frames are multi-megabyte buffers freed every few milliseconds, from several threads. By
default glibc raises its mmap threshold to the largest block freed so far (up to 32 MB), after
which such frames come from per-thread heap arenas that fragment and rarely shrink: a 1080p
run grew ~0.5 GB beyond what it holds. A fixed 1 MB threshold returns every frame-sized block
to the system when freed, and two arenas bound the per-thread heaps.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
_done = False


def limit_heap_growth(mmap_threshold: int = 1 << 20, arenas: int = 2) -> bool:
    """Apply the malloc settings once per process; True if they took effect."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
        ok = bool(libc.mallopt(_M_ARENA_MAX, arenas)) and ok
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _done = ok
    return ok
