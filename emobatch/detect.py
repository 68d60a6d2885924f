"""Face detection: facenet-pytorch's MTCNN (weights ship in its wheel), wrapped once so that
"no face" is an empty FaceBatch, never None."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .types import FaceBatch


class Detector:
    """Stage: image -> FaceBatch with boxes, scores and 5 landmarks."""

    def __init__(self, min_face_size: int = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 min_score: float = 0.9, device: str | torch.device = "cpu") -> None:
        from facenet_pytorch import MTCNN  # heavy import, only when a detector is built

        self.min_score = min_score
        self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size,
                           thresholds=list(thresholds), post_process=False,
                           select_largest=False, device=torch.device(device))

    def detect(self, image: np.ndarray) -> FaceBatch:
        """image (H, W, 3) uint8 RGB -> FaceBatch (boxes clipped to the frame), best first."""
        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return FaceBatch.empty()
        h, w = image.shape[:2]
        xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        faces = FaceBatch(xyxy, np.asarray(probs, np.float32).reshape(-1),
                          np.asarray(points, np.float32).reshape(-1, 5, 2))
        keep = (faces.score >= self.min_score) & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return faces[np.flatnonzero(keep)]
