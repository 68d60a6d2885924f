"""training.fit's checkpoint folder: the checkpoint (everything an epoch carries to the next:
model, EMA, optimizer, scheduler, history, best score), saved atomically every epoch so
--resume repeats an uninterrupted run exactly, and history.csv."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from emobatch.atomic import atomic_path, atomic_write
from .data import TrainingError

log = logging.getLogger("training.fit")


class Trainee(NamedTuple):
    """What training updates, all of it in the checkpoint."""

    model: nn.Module
    ema: AveragedModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler


def save_checkpoint(path: Path, t: Trainee, epoch: int, args: dict[str, Any],
                    history: list[dict], best: float, labels: str) -> None:
    """Write the checkpoint after `epoch` (0-based) atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model": t.model.state_dict(), "ema": t.ema.state_dict(),
                    "optimizer": t.opt.state_dict(), "scheduler": t.sched.state_dict(),
                    "epoch": epoch, "args": args, "history": history, "best": best,
                    "labels": labels}, tmp)


def resume(src: Path, t: Trainee, labels: str, device) -> tuple[int, list[dict], float] | None:
    """Load the checkpoint at src into t: (first epoch to run, history, best score), or None
    when there is none (a fresh start). TrainingError for one of another --labels mode."""
    if not src.is_file():
        log.info("no checkpoint at %s: starting fresh", src)
        return None
    ck = torch.load(src, map_location=device, weights_only=False)
    if ck.get("labels", "fer2013") != labels:  # checkpoints before FER+ learnt FER2013's
        raise TrainingError(f"{src} was trained with --labels {ck.get('labels', 'fer2013')}, "
                            f"this run resolves --labels to {labels}: give the same "
                            f"--labels, or start a new --ckpt-dir")
    t.model.load_state_dict(ck["model"])
    t.ema.load_state_dict(ck["ema"])
    t.opt.load_state_dict(ck["optimizer"])
    t.sched.load_state_dict(ck["scheduler"])
    start, history, best = ck["epoch"] + 1, ck["history"], ck["best"]
    log.info("resumed from %s at epoch %d (best %.4f)", src, start, best)
    return start, history, best


def write_history(path: Path, history: list[dict]) -> None:
    """The history rows as CSV (every row's columns; blank where a row has none)."""
    if not history:
        return
    with atomic_write(path, "w", newline="") as fh:
        fields = list(dict.fromkeys(k for row in history for k in row))  # all rows' columns
        w = csv.DictWriter(fh, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(history)
