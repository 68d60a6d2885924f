"""Hard cuts in a video: a track must not carry one person's id onto the next shot's face
that happens to stand where theirs stood (IoU cannot tell them apart).

A frame is a cut when its hue-saturation histogram (16 x 8 bins, of a copy about 72 px
high) differs from the previous processed frame's by more than CUT_THRESHOLD (total
variation distance, 0..1). A histogram ignores where things are, so camera motion, zooms
and `--every N` (frames far apart) do not look like cuts, which a grey thumbnail's pixel
difference did (the sample clip at --every 5: 27.9 vs cuts from 12.9). Measured on the
product's clips (docs/experiments.md, "Who is who"): within a shot at most 0.17 (0.12 on
the zooming sample clip at --every 5), at a cut 0.40 to 0.99.
"""
from __future__ import annotations

import cv2
import numpy as np

CUT_THRESHOLD = 0.3
BINS = (16, 8)  # hue, saturation


def colour_histogram(image: np.ndarray) -> np.ndarray:
    """image (H, W, 3) uint8 RGB -> (16, 8) float32 hue-saturation histogram summing to 1,
    from a strided view (cheap on 1080p)."""
    step = max(1, min(image.shape[:2]) // 72)
    hsv = cv2.cvtColor(np.ascontiguousarray(image[::step, ::step]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(BINS), [0, 180, 0, 256])
    return hist / max(float(hist.sum()), 1.0)


class CutDetector:
    """Stage (one per video): `is_cut` on each processed frame in order."""

    def __init__(self, threshold: float = CUT_THRESHOLD) -> None:
        self.threshold = float(threshold)
        self._prev: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        hist = colour_histogram(image)
        prev, self._prev = self._prev, hist
        return prev is not None and 0.5 * float(np.abs(hist - prev).sum()) > self.threshold

    def state_dict(self) -> dict:
        return {"prev": self._prev}

    def load_state_dict(self, d: dict) -> None:
        self._prev = d["prev"]
