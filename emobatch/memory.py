"""glibc's malloc tuned for long videos, applied by `configure_process`
(emobatch.batch.process_tuning) where emobatch owns the process.

Keep the process's memory flat on long videos without paying for it in page faults (glibc
only; a no-op elsewhere).

Frames and detector feature maps are multi-megabyte buffers freed every few milliseconds,
from several threads. glibc's default raises its mmap threshold to the largest block freed so
far and its trim threshold with it, and gives each thread its own heap arena: arenas that
fragment and rarely shrink (a 1080p run grew far beyond what it holds). Returning every
block over 1 MB to the system instead kept memory flat but cost much of the 1080p video
speed: each new mapping is page-faulted and zeroed again (figures: docs/experiments.md).
So: one arena for all threads, blocks up to glibc's largest mmap threshold (32 MB) come from
it and are reused, it is trimmed only when 64 MB lie free at its top, and the pipeline calls
`release_free_memory` every few dozen frames, which returns the free pages inside the heap
(fragmentation) to the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_done = False


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    # once per process: find_library runs `ldconfig -p` in a child process each call, and
    # release_free_memory is called after every input (20,000 photos: 20,000 processes)
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def limit_heap_growth(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20,
                      arenas: int = 1) -> bool:
    """Apply the malloc settings once per process; True if they took effect."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = _libc()
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
        ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and ok
        ok = bool(libc.mallopt(_M_ARENA_MAX, arenas)) and ok
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _done = ok
    return ok


def release_free_memory() -> bool:
    """Return the free pages inside the heap to the system (glibc's malloc_trim); a no-op
    unless `limit_heap_growth` took effect. True if memory was released."""
    return bool(_done and _libc().malloc_trim(0))
