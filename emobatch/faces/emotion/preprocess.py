"""Pixel preparation shared by inference and training (one copy only)."""
from __future__ import annotations

import cv2
import numpy as np
import torch

DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.25


def to_tensor(crops: np.ndarray | torch.Tensor, mean: float = DEFAULT_MEAN,
              std: float = DEFAULT_STD) -> torch.Tensor:
    """uint8 crops (N, H, W) -> float32 tensor (N, 1, H, W), scaled to [0, 1] then standardised."""
    t = torch.as_tensor(crops)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    return (t.float() / 255.0 - mean) / std


def resize_crops(crops: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 crops (N, H, W) -> (N, size, size) uint8, for a network whose input side is
    `size` (its weights' `input_size`) fed crops of another side, such as FER2013's 48-pixel
    faces: bilinear up, area-averaged down. The crops themselves where they already fit
    (or size is None)."""
    if size is None or crops.shape[1:] == (size, size):
        return crops
    if len(crops) == 0:
        return np.zeros((0, size, size), np.uint8)
    interp = cv2.INTER_LINEAR if size > crops.shape[1] else cv2.INTER_AREA
    return np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in crops])
