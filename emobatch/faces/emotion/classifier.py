"""Emotion classification of aligned crops with the shipped (or a given) CNN."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import TTA_MODES
from ...types import FaceBatch
from .runtimes import build_runtime, inference_model, resolve_backend
from ..device import autocast, select_device
from .preprocess import resize_crops, to_tensor
from .weights import LoadedModel, load_weights

CROP_FRACTION = 44 / 48  # side of the zoom/ten-crop views' crops, as a fraction of the input
MAX_FORWARD = 512  # images in one forward pass when TTA views are batched together


def _crops(x: torch.Tensor, corners: bool) -> list[torch.Tensor]:
    """Crops of side H * CROP_FRACTION (centre; with corners, the four corners first),
    scaled back to (H, W): the net was trained on faces scaled by 0.9-1.1."""
    h, w = x.shape[-2:]
    ch, cw = round(h * CROP_FRACTION), round(w * CROP_FRACTION)
    oy, ox = h - ch, w - cw
    at = ((0, 0), (0, ox), (oy, 0), (oy, ox)) if corners else ()
    return [F.interpolate(x[:, :, t:t + ch, l:l + cw], size=(h, w), mode="bilinear",
                          align_corners=False)
            for t, l in (*at, (oy // 2, ox // 2))]


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views of a normalised batch (N, 1, H, W) whose probabilities TTA averages:
    none 1, flip 2 (the batch and its mirror image), zoom 4 (the batch and its centre crop
    (_crops), each with its mirror image), tencrop 10 (the five crops, mirrored too)."""
    if tta == "none":
        return [x]
    views = {"flip": [x], "zoom": [x, *_crops(x, corners=False)],
             "tencrop": _crops(x, corners=True)}[tta]
    return views + [torch.flip(v, dims=[3]) for v in views]


@torch.inference_mode()
def predict_probs(model: nn.Module, crops: np.ndarray, device: torch.device,
                  dtype: torch.dtype | None, batch_size: int = 256, tta: str = "none",
                  mean: float = 0.5, std: float = 0.25,
                  on_batch: Callable[[int], None] | None = None,
                  size: int | None = None) -> np.ndarray:
    """Softmax probabilities (N, C) float32 for uint8 crops (N, H, W).

    tta averages the probabilities of several views of each crop (tta_views): 'flip' the
    crop and its mirror image, 'zoom' 4 views, 'tencrop' 10. Shared by the pipeline and by
    training/evaluation. on_batch(n) is called after each batch of n crops (progress).
    size: the network's input side (its weights' `input_size`); crops of another side are
    resized to it first (resize_crops), so 48-pixel datasets score any network.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    model.eval()
    out = []
    for i in range(0, len(crops), batch_size):
        x = to_tensor(resize_crops(crops[i:i + batch_size], size), mean, std).to(device)
        views = tta_views(x, tta)
        # several views in one forward pass keep small batches efficient; the cap bounds
        # the activations' memory for large ones
        group = max(1, MAX_FORWARD // len(x))
        total = 0.0
        for j in range(0, len(views), group):
            chunk = views[j:j + group]  # no copy for a single view: the no-TTA hot path
            xv = (chunk[0] if len(chunk) == 1 else torch.cat(chunk)).contiguous(
                memory_format=torch.channels_last)
            with autocast(device, dtype):
                p = model(xv).float().softmax(1)
            total = total + p.view(-1, len(x), p.shape[1]).sum(0)
        out.append((total / len(views)).cpu())
        if on_batch is not None:
            on_batch(len(x))
    n_cls = [m.out_features for m in model.modules() if hasattr(m, "out_features")][-1]
    return torch.cat(out).numpy() if out else np.zeros((0, n_cls), np.float32)


__all__ = ["Classifier", "inference_model", "predict_probs", "tta_views"]


class Classifier:
    """Stage: FaceBatch with crops -> FaceBatch with probs (and probs_raw, identical here;
    classified all True)."""

    def __init__(self, weights: str | Path | None = None, device: str = "auto",
                 batch_size: int = 64, tta: str | None = None, amp: str = "auto",
                 backend: str = "auto") -> None:
        """A classifier on its own (a run builds its own from its plan, `from_loaded`).
        backend: a name in emobatch.faces.emotion.runtimes.BACKENDS, or 'auto' (int8 on a CPU
        when the weights carry a calibration, else torch eager with `amp`)."""
        device = select_device(device)
        loaded = load_weights(weights, device=str(device))
        self._load(loaded, device, resolve_backend(backend, device, bool(loaded.int8)), amp, tta,
                   batch_size)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, device: torch.device, backend: str, amp: str,
                    tta: str | None, batch_size: int) -> "Classifier":
        """A classifier of weights already loaded on `device`, run by a resolved `backend`."""
        self = cls.__new__(cls)
        self._load(loaded, device, backend, amp, tta, batch_size)
        return self

    def _load(self, loaded: LoadedModel, device: torch.device, backend: str, amp: str,
              tta: str | None, batch_size: int) -> None:
        """Build the network through the registered `backend` (a resolved name)."""
        self.device = device
        runtime = build_runtime(loaded, self.device, backend, amp)
        self.model, self.dtype, self.backend = runtime.model, runtime.dtype, runtime.name
        self.config, self.path, self.sha256 = loaded.config, loaded.path, loaded.sha256
        self.weights_config = cfg = loaded.weights_config
        self.labels: list[str] = list(cfg.labels)
        self.tta = tta if tta is not None else cfg.tta
        self.batch_size = batch_size

    @property
    def input_size(self) -> int:
        """Side of the aligned crops the network reads (its weights' `input_size`)."""
        return self.weights_config.input_size

    def predict(self, crops: np.ndarray, tta: str | None = None) -> np.ndarray:
        """uint8 crops (N, S, S) -> probabilities (N, 7) float32; tta None: self.tta. Crops
        of another side than input_size are resized to it."""
        return predict_probs(self.model, crops, self.device, self.dtype, self.batch_size,
                             tta or self.tta, **self.weights_config.inputs)

    def classify(self, faces: FaceBatch) -> FaceBatch:
        if faces.crops is None:
            raise ValueError("classify needs aligned crops: run Aligner.align first")
        probs = self.predict(faces.crops)
        return faces.with_(probs=probs, probs_raw=probs, classified=np.ones(len(faces), bool))
