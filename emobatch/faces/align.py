"""Landmarks -> square grayscale crops (48x48 by default) with the geometry of FER2013's faces.

Used by inference and by training (one copy). The template is where MTCNN finds the five
landmarks on FER2013 training crops (median over 260 faces, mirrored so the eyes are level);
`python -m training.landmark_template` re-measures it.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..types import FaceBatch

TEMPLATE_48 = np.array([[14.84, 18.99],   # left eye (image left)
                        [33.16, 18.99],   # right eye
                        [24.00, 29.64],   # nose
                        [16.44, 38.45],   # mouth left
                        [31.56, 38.45]],  # mouth right
                       np.float32)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) mapping
    src (K, 2) onto dst (K, 2) (Umeyama 1991). Returns the (2, 3) affine matrix."""
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var_s = (s ** 2).sum() / len(src)
    scale = (sig * sign).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align_face(gray: np.ndarray, landmarks: np.ndarray, size: int = 48,
               template: np.ndarray = TEMPLATE_48) -> np.ndarray:
    """Warp one face of gray (H, W) uint8 so its landmarks (5, 2) land on the template;
    returns (size, size) uint8. Large faces are warped at up to 4x and area-downsampled,
    so the crop is antialiased like a camera image rather than aliased by point sampling."""
    return _warp(gray, similarity(landmarks, template * (size / 48.0)), size)


def _warp(gray: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """gray (H, W) uint8 warped by the (2, 3) similarity m to (size, size), antialiased."""
    scale = float(np.hypot(m[0, 0], m[0, 1]))
    k = int(np.clip(round(1.0 / max(scale, 1e-6)), 1, 4))
    big = cv2.warpAffine(gray, m * k, (size * k, size * k), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    if k == 1:
        return big
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


class Aligner:
    """Stage: adds `crops` (n, size, size) uint8 to a FaceBatch."""

    def __init__(self, size: int = 48) -> None:
        self.size = size

    def align(self, image: np.ndarray, faces: FaceBatch) -> FaceBatch:
        """image (H, W, 3) uint8 RGB (or (H, W) gray) -> faces with crops."""
        if len(faces) == 0:
            return faces.with_(crops=np.zeros((0, self.size, self.size), np.uint8))
        if image.ndim == 2:
            crops = [align_face(image, lm, self.size) for lm in faces.landmarks]
        else:  # gray only where each crop samples: converting a whole frame costs more
            crops = [self._align_rgb(image, lm) for lm in faces.landmarks]
        return faces.with_(crops=np.stack(crops))

    def _align_rgb(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """align_face on the gray version of the part of image (H, W, 3) it samples from
        (the crop's square mapped back, plus 2 px for interpolation): the same pixels."""
        m = similarity(landmarks, TEMPLATE_48 * (self.size / 48.0))
        inv = cv2.invertAffineTransform(m)
        c = np.array([[0, 0, 1], [self.size, 0, 1], [0, self.size, 1], [self.size, self.size, 1]])
        src = c @ inv.T
        h, w = image.shape[:2]
        # at least the edge row/column nearest to a region outside the frame, which the
        # warp's border replication repeats
        x0, y0 = np.clip(np.floor(src.min(0)) - 2, 0, [w - 1, h - 1]).astype(int)
        x1, y1 = np.maximum(np.clip(np.ceil(src.max(0)) + 3, 0, [w, h]).astype(int), [x0 + 1, y0 + 1])
        gray = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        m[:, 2] += m[:, :2] @ [x0, y0]  # the same map, from the region's coordinates
        return _warp(gray, m, self.size)
