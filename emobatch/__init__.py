"""emobatch: folders of photos and videos -> per-frame facial-emotion timelines."""
from __future__ import annotations

from .types import EMOTIONS, FaceBatch, Frame

from ._version import __version__

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
        from .timeline import read_timeline
        return read_timeline
    if name == "write_report":
        from .report import write_report
        return write_report
    raise AttributeError(name)
