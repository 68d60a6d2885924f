"""Emotion classification of aligned crops with the shipped (or a given) CNN."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .device import amp_dtype, autocast, select_device
from .models import fold_batchnorm
from .preprocess import to_tensor
from .types import FaceBatch
from .weights import load_weights

TTA_MODES = ("none", "flip")


@torch.inference_mode()
def predict_probs(model: nn.Module, crops: np.ndarray, device: torch.device,
                  dtype: torch.dtype | None, batch_size: int = 256, tta: str = "none",
                  mean: float = 0.5, std: float = 0.25) -> np.ndarray:
    """Softmax probabilities (N, C) float32 for uint8 crops (N, H, W).

    tta='flip' averages the probabilities of the crop and its mirror image.
    Shared by the pipeline and by training/evaluation.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    model.eval()
    out = []
    for i in range(0, len(crops), batch_size):
        x = to_tensor(crops[i:i + batch_size], mean, std).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        if tta == "flip":
            x = torch.cat([x, torch.flip(x, dims=[3])])
        with autocast(device, dtype):
            p = model(x).float().softmax(1)
        if tta == "flip":
            p = (p[: len(p) // 2] + p[len(p) // 2:]) / 2
        out.append(p.cpu())
    n_cls = getattr(model, "num_classes", 7)
    return torch.cat(out).numpy() if out else np.zeros((0, n_cls), np.float32)


def inference_model(model: nn.Module) -> nn.Module:
    """The model as the product runs it: batch norm folded into the convs, channels-last."""
    return fold_batchnorm(model).to(memory_format=torch.channels_last)


class Classifier:
    """Stage: FaceBatch with crops -> FaceBatch with probs (and probs_raw, identical here)."""

    def __init__(self, weights: str | Path | None = None, device: str = "auto",
                 batch_size: int = 64, tta: str | None = None, amp: str = "auto") -> None:
        self.device = select_device(device)
        loaded = load_weights(weights, device=str(self.device))
        self.model = inference_model(loaded.model)
        self.config, self.path, self.sha256 = loaded.config, loaded.path, loaded.sha256
        self.labels: list[str] = list(self.config["labels"])
        self.tta = tta if tta is not None else self.config.get("tta", "none")
        self.dtype = amp_dtype(self.device, amp)
        self.batch_size = batch_size

    def predict(self, crops: np.ndarray, tta: str | None = None) -> np.ndarray:
        """uint8 crops (N, 48, 48) -> probabilities (N, 7) float32; tta None: self.tta."""
        return predict_probs(self.model, crops, self.device, self.dtype, self.batch_size,
                             tta or self.tta, self.config.get("mean", 0.5),
                             self.config.get("std", 0.25))

    def classify(self, faces: FaceBatch) -> FaceBatch:
        if faces.crops is None:
            raise ValueError("classify needs aligned crops: run Aligner.align first")
        probs = self.predict(faces.crops)
        return faces.with_(probs=probs, probs_raw=probs)
