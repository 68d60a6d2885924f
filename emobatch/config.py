"""One settings dataclass, built by both the CLI and the Python API."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


# quality -> (full detection every N frames, long side of the frame for full detection;
# 0 = full resolution). Measured by benchmarks/video_throughput.py (README).
QUALITY_PRESETS: dict[str, tuple[int, int]] = {
    "exhaustive": (1, 0),
    "balanced": (5, 960),
    "fast": (10, 640),
}


@dataclass
class Settings:
    """Everything that changes what a run computes (recorded in the output's metadata)."""

    device: str = "auto"              # auto | cpu | cuda
    batch_size: int = 64              # classifier batch (faces)
    min_face_size: int = 20           # MTCNN's smallest face, pixels of the original frame
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN P/R/O-Net stage thresholds
    min_score: float = 0.9            # drop detections below this final score
    every: int = 1                    # process every Nth video frame
    weights: Path | None = None       # None: the shipped model
    tta: str | None = None            # none | flip; None: what the weights' config says
    amp: str = "auto"                 # auto | on | off (bf16 on capable CPUs, AMP on CUDA)
    quality: str = "balanced"         # exhaustive | balanced | fast: presets for the two below
    detect_every: int | None = None   # full MTCNN every N processed frames (O-Net in between)
    detect_scale: float | None = None  # full detection on a frame scaled by this (None: preset)
    track: bool = True                # track ids across frames of a video
    smooth_tau: float = 0.3           # per-track smoothing time constant, seconds; 0 = off
    extra: dict = field(default_factory=dict)

    def detection_plan(self, width: int, height: int) -> tuple[int, float]:
        """(detect_every, detect_scale) for a video of this size: explicit values win,
        else the quality preset. Presets cap the long side seen by full detection."""
        every, long_side = QUALITY_PRESETS[self.quality]
        scale = min(1.0, long_side / max(width, height)) if long_side else 1.0
        return (self.detect_every or every,
                self.detect_scale if self.detect_scale is not None else scale)

    def as_metadata(self) -> dict:
        d = asdict(self)
        d["weights"] = str(self.weights) if self.weights else None
        return d
