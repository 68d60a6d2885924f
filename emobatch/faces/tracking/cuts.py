"""Hard cuts in a video: a track must not carry one person's id onto the next shot's face
that happens to stand where theirs stood (IoU cannot tell them apart).

A frame is a cut when its 16x9 grey thumbnail differs from the previous processed frame's
by more than CUT_THRESHOLD (mean absolute difference, 0..255). Measured on the product's
clips (docs/experiments.md, "Who is who"): within a shot at most 8 (a walking camera, 1080p:
4), at a cut 23 to 145.
"""
from __future__ import annotations

import cv2
import numpy as np

CUT_THRESHOLD = 20.0
THUMB = (16, 9)


def thumbnail(image: np.ndarray) -> np.ndarray:
    """image (H, W, 3) uint8 -> (9, 16) float32 grey, from a strided view (cheap on 1080p)."""
    step = max(1, min(image.shape[:2]) // 72)
    small = cv2.resize(image[::step, ::step], THUMB, interpolation=cv2.INTER_AREA)
    return small.astype(np.float32).mean(axis=2) if small.ndim == 3 else small.astype(np.float32)


class CutDetector:
    """Stage (one per video): `is_cut` on each processed frame in order."""

    def __init__(self, threshold: float = CUT_THRESHOLD) -> None:
        self.threshold = float(threshold)
        self._prev: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        thumb = thumbnail(image)
        prev, self._prev = self._prev, thumb
        return prev is not None and float(np.abs(thumb - prev).mean()) > self.threshold

    def state_dict(self) -> dict:
        return {"prev": self._prev}

    def load_state_dict(self, d: dict) -> None:
        self._prev = d["prev"]
