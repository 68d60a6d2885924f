"""Knowledge distillation from earlier weights (--distill): soft targets computed once.

The teachers (one model or an ensemble of earlier runs) score the clean training images
once, with each teacher's own test-time augmentation; their averaged probabilities are the
soft targets of every augmented view of that image. That costs a few minutes once instead of
a teacher forward pass at every step.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from emobatch.atomic import atomic_write
from emobatch.faces.emotion.classifier import Classifier
from emobatch.faces.emotion.weights import LoadedModel, load_weights, sha256_of
from .ensemble import model_probs

log = logging.getLogger(__name__)


def provenance(loaded: LoadedModel | Classifier, path: str | Path) -> dict[str, Any]:
    """Where earlier weights came from, for a config: path, sha256, the command that trained
    them, their metrics and, recursively, what they started from."""
    cfg = loaded.config
    return {"path": str(path), "sha256": loaded.sha256, "command": cfg.get("command"),
            "metrics": cfg.get("metrics"), "init": cfg.get("init")}


def teacher_probs(paths: Sequence[str | Path], images: np.ndarray, device: torch.device,
                  amp: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Mean probabilities (N, C) float32, columns in EMOTIONS order, of the teachers at paths
    on uint8 images (N, H, W), each run as the product runs it (emobatch's Classifier, with
    the TTA and normalisation its config names); and their provenance."""
    total, teachers = None, []
    for path in paths:
        probs, teacher = model_probs(path, images, device, amp)
        log.info("teacher %s (tta %s) scored %d training images", path, teacher.tta, len(images))
        total = probs if total is None else total + probs
        teachers.append(provenance(teacher, path))
    return (total / len(paths)).astype(np.float32), teachers


def cached_teacher_probs(paths: Sequence[str | Path], images: np.ndarray, cache_dir: Path,
                         device: torch.device, amp: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """teacher_probs, kept in cache_dir/teacher_probs.npz so a resumed run does not pay for
    them again; the cache is keyed by the teachers' sha256 and the images' bytes."""
    key = hashlib.sha256(images.tobytes())
    for path in paths:
        key.update(sha256_of(Path(path)).encode())
    cache = Path(cache_dir) / "teacher_probs.npz"
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key.hexdigest():
                return z["probs"], [provenance(load_weights(p), p) for p in paths]
    probs, teachers = teacher_probs(paths, images, device, amp)
    with atomic_write(cache) as fh:
        np.savez(fh, key=key.hexdigest(), probs=probs)
    return probs, teachers


def soften(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Teacher probabilities (N, C) at a temperature: softmax(log(p) / T)."""
    return torch.softmax(torch.log(probs.clamp_min(1e-8)) / temperature, dim=1)


def distill_loss(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of the student's logits (N, C) at temperature T against softened teacher
    targets (N, C), times T^2 so its gradients keep their scale as T changes (Hinton et al.).
    Equal to the KL divergence up to the targets' entropy, a constant."""
    logp = F.log_softmax(logits.float() / temperature, dim=1)
    return -(target * logp).sum(1).mean() * temperature ** 2
