"""One settings dataclass, built by both the CLI and the Python API."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


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
    extra: dict = field(default_factory=dict)

    def as_metadata(self) -> dict:
        d = asdict(self)
        d["weights"] = str(self.weights) if self.weights else None
        return d
