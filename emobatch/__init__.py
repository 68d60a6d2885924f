"""emobatch: folders of photos and videos -> per-frame facial-emotion timelines."""
from __future__ import annotations

from .types import EMOTIONS, FaceBatch, Frame

__version__ = "0.1.0"

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
    if name == "write_report":
        from .report import write_report
        return write_report
    raise AttributeError(name)


def read_timeline(path: str):
    """Read a timeline (.parquet or .csv) into a pandas DataFrame; run metadata in df.attrs."""
    import pandas as pd

    from .batch.sinks import read_metadata

    df = pd.read_parquet(path) if not str(path).lower().endswith(".csv") else pd.read_csv(path)
    try:
        df.attrs["emobatch"] = read_metadata(path)
    except (OSError, ValueError):
        pass
    return df
