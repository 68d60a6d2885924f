"""Lower the pull of frequent classes: fold a logit adjustment into trained weights.

    python -m training.adjust --data ../shared/data/fer2013 --weights W.pt --out W2.pt
        [--strength auto|S] [--max-drop 0.005]

A model trained on FER+'s votes learns how often people pick each label, and a third of all
votes say neutral: mild or unfamiliar expressions lean to neutral. The adjustment divides
the probabilities by the training votes' class shares raised to the strength S (logit
adjustment, Menon et al. 2021: S = 1 targets balanced per-class recall), which is a constant
added to the last layer's bias: the adjusted model is the same network at the same cost.

--strength auto picks S on PublicTest only: the largest S on a grid of 0.05 whose accuracy
against the FER+ majority (with the weights' TTA) stays within --max-drop of S = 0's. The
adjusted weights' TTA is then chosen again on PublicTest, as training.fit does.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emobatch.faces.emotion.classifier import predict_probs
from emobatch.faces.device import amp_dtype, select_device
from emobatch.types import EMOTIONS
from emobatch.faces.emotion.weights import load_weights, save_weights
from . import ferplus, fit
from .data import TrainingError, add_votes_argument, exit_on_error, load_fer, votes_arg
from .distill import provenance
from .evaluate import to_emotions_order
from .scoring import vote_metrics

log = logging.getLogger("training.adjust")

GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Fold a logit adjustment (class prior ** -S) into weights.")
    p.add_argument("--data", required=True, help="FER2013 folder with FER+ votes beside it")
    p.add_argument("--weights", required=True, help="weights trained on FER+ votes")
    p.add_argument("--out", required=True, help="adjusted weights .pt")
    p.add_argument("--strength", default="auto", help="S, or auto (see the module's docstring)")
    p.add_argument("--max-drop", type=float, default=0.005,
                   help="auto: largest PublicTest FER+ majority accuracy loss allowed")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"])
    add_votes_argument(p)
    return p


def vote_prior(votes: np.ndarray) -> np.ndarray:
    """Mean vote distribution (7,) in EMOTIONS order over the faces that have one."""
    dist = ferplus.distribution(votes)
    return dist[dist.sum(1) > 0].mean(0)


def last_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise TrainingError("these weights have no linear output layer to adjust")
    return layers[-1]


def adjust(model: nn.Module, prior: np.ndarray, labels: list[str], strength: float) -> None:
    """Add -strength * log(prior) to the output layer's bias (prior in EMOTIONS order, the
    model's outputs in `labels` order), in place."""
    shift = -strength * np.log(np.clip(prior, 1e-6, 1.0))
    order = [EMOTIONS.index(name) for name in labels]
    out = last_linear(model)
    with torch.no_grad():
        out.bias += torch.as_tensor(shift[order], dtype=out.bias.dtype, device=out.bias.device)


def grid_scores(probs: np.ndarray, prior: np.ndarray, votes: np.ndarray) -> list[dict[str, Any]]:
    """PublicTest figures for each strength on GRID, from the unadjusted probabilities (N, 7)
    in EMOTIONS order (adjusting logits = reweighting probabilities, up to TTA's averaging)."""
    rows = []
    for s in GRID:
        p = probs / prior ** s
        v = vote_metrics(p / p.sum(1, keepdims=True), votes)
        pc = v["majority"]["per_class"]
        rows.append({"strength": float(s), "ferplus_acc": v["majority"]["accuracy"],
                     "balanced_recall": float(np.mean([c["recall"] for c in pc.values()])),
                     "vote_ce": v["vote_cross_entropy"]})
    return rows


@exit_on_error
def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = load_fer(args.data, align="off", votes=votes_arg(args.votes))
    train, val = data["Training"], data["PublicTest"]
    if train.votes is None or val.votes is None:
        raise TrainingError(f"no FER+ votes beside {args.data} (give --votes)")
    device = select_device(args.device)
    dtype = amp_dtype(device, args.amp)
    loaded = load_weights(args.weights, device=str(device))
    cfg = loaded.config
    if "logit_adjustment" in cfg:
        raise TrainingError(f"{args.weights} is adjusted already ({cfg['logit_adjustment']})")
    prior = vote_prior(train.votes)
    model = loaded.model.to(device)

    def probs(tta: str) -> np.ndarray:
        p = predict_probs(model, val.images, device, dtype, batch_size=512, tta=tta,
                          mean=cfg.get("mean", 0.5), std=cfg.get("std", 0.25))
        return to_emotions_order(p.astype(np.float64), cfg["labels"])

    grid = grid_scores(probs(cfg.get("tta", "none")), prior, val.votes)
    for r in grid:
        log.info("strength %.2f: FER+ majority %.4f, balanced recall %.4f, vote CE %.4f",
                 r["strength"], r["ferplus_acc"], r["balanced_recall"], r["vote_ce"])
    if args.strength == "auto":
        floor = grid[0]["ferplus_acc"] - args.max_drop
        strength = max(r["strength"] for r in grid if r["ferplus_acc"] >= floor)
    else:
        strength = float(args.strength)
    adjust(model, prior, cfg["labels"], strength)

    scores = fit.evaluate(model, val, device, dtype)
    kept = {k: v for k, v in cfg.get("metrics", {}).items() if not k.startswith("publictest_")}
    config = {k: v for k, v in cfg.items() if k not in ("labels", "sha256", "int8")}
    config |= {"tta": "none",
               "metrics": {**kept, **fit._config_metrics(scores),
                           "selected_on": "publictest_ferplus_acc"},
               "logit_adjustment": {"strength": strength, "prior": prior.round(6).tolist(),
                                    "prior_from": "FER+ votes of FER2013 Training",
                                    "rule": None if args.strength != "auto" else
                                    f"largest strength within {args.max_drop} of the "
                                    f"unadjusted PublicTest FER+ majority accuracy"},
               "adjusted_from": provenance(loaded, args.weights),
               "adjust_command": shlex.join(["python", "-m", "training.adjust", *sys.argv[1:]])}
    out = Path(args.out)
    save_weights(model, config, out)
    fit.finalize(out, val, device, dtype)  # TTA chosen again, every mode scored
    final = load_weights(out).config
    log.info("strength %.2f -> %s (tta %s)", strength, out, final["tta"])
    return {"strength": strength, "tta": final["tta"], "metrics": final["metrics"], "grid": grid}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
