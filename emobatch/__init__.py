"""emobatch: folders of photos and videos -> per-frame facial-emotion timelines."""
from __future__ import annotations

import os

from ._version import __version__

# MKL's matrix products (MTCNN's dense layers) round differently with 1 and 2 threads, so
# the same frame came out a few 1e-4 apart in one process and in a 1-thread worker.
# Strict conditional numerical reproducibility makes the rows the same whatever the thread
# count (--workers, Dask, a resume on another machine of the same CPU kind). MKL reads this
# at its first call, so it is set when emobatch is imported; a value already set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from .types import EMOTIONS, FaceBatch, Frame  # noqa: E402

__all__ = ["EMOTIONS", "FaceBatch", "Frame", "Settings", "__version__", "coverage", "episodes",
           "read_timeline", "resample", "run", "summarize", "write_report"]
_ANALYSIS = ("coverage", "episodes", "resample", "summarize")


def __getattr__(name: str):
    # Lazy: `import emobatch` stays fast; torch and MTCNN load only when a run starts.
    if name == "run":
        from .batch.driver import run
        return run
    if name == "Settings":
        from .config import Settings
        return Settings
    if name in _ANALYSIS:  # pandas loads only when a timeline is analysed
        from . import analysis
        return getattr(analysis, name)
    if name == "read_timeline":  # pandas loads only when a timeline is read
        from .batch.sinks import read_timeline
        return read_timeline
    if name == "write_report":
        from .report import write_report
        return write_report
    raise AttributeError(name)
