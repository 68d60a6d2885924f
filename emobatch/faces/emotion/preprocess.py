"""Pixel normalisation shared by inference and training (one copy only)."""
from __future__ import annotations

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
