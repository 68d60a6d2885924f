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

    python -m training.adjust --data ../shared/data/fer2013 --weights W.pt --out W2.pt
        --shift posed --posed ../shared/data/posed-tw --folds F0.pt F1.pt F2.pt
        [--shift-classes angry disgust neutral] [--max-drop 0]
    python -m training.adjust ... --shift angry=0.3,disgust=0.4

--shift adds a constant to some classes' logits instead. `posed` fits the constants on posed
photos scored only by models that never saw their performers: --folds are W's recipe trained
with each performer fold held out (training.fit --posed-holdout F), and every photo is
scored by the first of them that did not train on its performer. On a grid of 0.1 from -0.6
to 1.0 per class, the shift chosen is the one whose held-out agreement with the observers'
top choice is highest while W's PublicTest FER+ majority accuracy stays within --max-drop of
W's own and its vote cross-entropy does not rise (the smallest shift on a tie). FER+'s votes
lean to neutral more than observers of a posed face do; the fold models' photos tell by how
much without letting W grade itself on performers it trained on.
"""
from __future__ import annotations

import argparse
import itertools
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
from . import ferplus, fit, posed as posed_data
from .data import TrainingError, add_votes_argument, exit_on_error, load_fer, votes_arg
from .distill import provenance
from .ensemble import model_probs
from .evaluate import to_emotions_order
from .scoring import vote_metrics

log = logging.getLogger("training.adjust")

GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)
SHIFT_GRID = np.round(np.arange(-0.6, 1.0001, 0.1), 2) + 0.0  # no -0.0


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Fold a logit adjustment (class prior ** -S) into weights.")
    p.add_argument("--data", required=True, help="FER2013 folder with FER+ votes beside it")
    p.add_argument("--weights", required=True, help="weights trained on FER+ votes")
    p.add_argument("--out", required=True, help="adjusted weights .pt")
    p.add_argument("--strength", default="auto", help="S, or auto (see the module's docstring)")
    p.add_argument("--max-drop", type=float, default=0.005,
                   help="auto: largest PublicTest FER+ majority accuracy loss allowed")
    p.add_argument("--shift", default=None, metavar="posed|CLASS=B,...",
                   help="add constants to classes' logits instead of --strength: given, or "
                        "'posed' to fit them on --posed photos scored by the --folds models")
    p.add_argument("--posed", default=None, metavar="DIR", help="posed photos (--shift posed)")
    p.add_argument("--folds", nargs="+", default=[], metavar="WEIGHTS.pt",
                   help="--shift posed: the recipe's models trained with a performer fold "
                        "held out")
    p.add_argument("--shift-classes", nargs="+", default=["angry", "disgust", "neutral"],
                   choices=list(EMOTIONS), metavar="CLASS",
                   help="--shift posed: the classes whose constants are fitted")
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


def add_to_bias(model: nn.Module, shift: np.ndarray, labels: list[str]) -> None:
    """Add shift (7,) in EMOTIONS order to the output layer's bias (the model's outputs in
    `labels` order), in place."""
    order = [EMOTIONS.index(name) for name in labels]
    out = last_linear(model)
    with torch.no_grad():
        out.bias += torch.as_tensor(shift[order], dtype=out.bias.dtype, device=out.bias.device)


def adjust(model: nn.Module, prior: np.ndarray, labels: list[str], strength: float) -> None:
    """Add -strength * log(prior) to the output layer's bias (prior in EMOTIONS order), in
    place."""
    add_to_bias(model, -strength * np.log(np.clip(prior, 1e-6, 1.0)), labels)


def parse_shift(text: str) -> np.ndarray:
    """'angry=0.3,disgust=0.4' -> (7,) float64 in EMOTIONS order (other classes 0)."""
    shift = np.zeros(len(EMOTIONS))
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name.strip() not in EMOTIONS:
            raise TrainingError(f"--shift {text!r}: {name.strip()!r} is not one of {EMOTIONS}")
        try:
            shift[EMOTIONS.index(name.strip())] = float(value)
        except ValueError:
            raise TrainingError(f"--shift {text!r}: {item!r} is not CLASS=NUMBER") from None
    return shift


def held_out_log_probs(folds: list[str], posed: posed_data.PosedSet, device, amp: str
                       ) -> np.ndarray:
    """(n, 7) log probabilities of each posed photo's clean crop (aligned at the model's
    input side) from the first fold model whose config says it never trained on the
    photo's performer."""
    loaded = [load_weights(w) for w in folds]
    seen = [set(m.config.get("posed", {}).get("performers", ())) for m in loaded]
    owner = np.array([next((i for i, s in enumerate(seen) if p not in s), -1)
                      for p in posed.performer])
    if (owner < 0).any():
        raise TrainingError(f"--folds: every model trained on performer(s) "
                            f"{sorted(set(posed.performer[owner < 0]))}")
    out = np.zeros((len(posed), len(EMOTIONS)))
    for i, w in enumerate(folds):
        if (owner == i).any():
            side = loaded[i].weights_config.input_size
            images, _ = posed_data.crops(posed.subset(owner == i), size=side)
            probs, _ = model_probs(w, images, device, amp)
            out[owner == i] = np.log(np.clip(probs, 1e-12, 1.0))
    return out


def _ferplus_figures(logp: np.ndarray, votes: np.ndarray) -> tuple[float, float]:
    """FER+ majority accuracy and vote cross-entropy of log probabilities (N, 7)."""
    maj = ferplus.majority(votes)
    keep = maj != ferplus.NO_LABEL
    dist = ferplus.distribution(votes)
    has = dist.sum(1) > 0
    logp = logp - np.logaddexp.reduce(logp, axis=1, keepdims=True)
    return (float((logp[keep].argmax(1) == maj[keep]).mean()),
            float(-(dist[has] * logp[has]).sum(1).mean()))


def fit_shift(val_logp: np.ndarray, votes: np.ndarray, posed_logp: np.ndarray,
              top: np.ndarray, classes: list[str], max_drop: float
              ) -> tuple[np.ndarray, dict[str, float]]:
    """The shift (7,) on SHIFT_GRID for `classes` with the best held-out posed agreement
    (posed_logp (n, 7) against the observers' top choice top (n,)), among those that keep
    PublicTest's FER+ majority accuracy (val_logp (N, 7), votes (N, 10)) within max_drop and
    its vote cross-entropy no higher; ties go to the smallest shift. Returns it and its
    figures."""
    acc0, ce0 = _ferplus_figures(val_logp, votes)
    cols = [EMOTIONS.index(c) for c in classes]
    best, best_key = np.zeros(len(EMOTIONS)), None
    for values in itertools.product(SHIFT_GRID, repeat=len(cols)):
        shift = np.zeros(len(EMOTIONS))
        shift[cols] = values
        acc, ce = _ferplus_figures(val_logp + shift, votes)
        if acc < acc0 - max_drop - 1e-12 or ce > ce0 + 1e-12:
            continue
        agree = float(((posed_logp + shift).argmax(1) == top).mean())
        key = (agree, -float(np.abs(shift).sum()))
        if best_key is None or key > best_key:
            best, best_key = shift, key
    acc, ce = _ferplus_figures(val_logp + best, votes)
    return best, {"posed_held_out_top": best_key[0],
                  "posed_held_out_top_unshifted": float((posed_logp.argmax(1) == top).mean()),
                  "ferplus_acc": acc, "ferplus_acc_unshifted": acc0,
                  "vote_ce": ce, "vote_ce_unshifted": ce0}


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


def strength_shift(args: argparse.Namespace, val_probs: np.ndarray, prior: np.ndarray,
                   votes: np.ndarray) -> tuple[np.ndarray, dict[str, Any], list[dict[str, Any]]]:
    """--strength's shift (7,), its config record and the grid's figures."""
    grid = grid_scores(val_probs, prior, votes)
    for r in grid:
        log.info("strength %.2f: FER+ majority %.4f, balanced recall %.4f, vote CE %.4f",
                 r["strength"], r["ferplus_acc"], r["balanced_recall"], r["vote_ce"])
    if args.strength == "auto":
        floor = grid[0]["ferplus_acc"] - args.max_drop
        strength = max(r["strength"] for r in grid if r["ferplus_acc"] >= floor)
    else:
        strength = float(args.strength)
    record = {"strength": strength, "prior": prior.round(6).tolist(),
              "prior_from": "FER+ votes of FER2013 Training",
              "rule": None if args.strength != "auto" else
              f"largest strength within {args.max_drop} of the unadjusted PublicTest FER+ "
              f"majority accuracy"}
    return -strength * np.log(np.clip(prior, 1e-6, 1.0)), record, grid


def class_shift(args: argparse.Namespace, val_probs: np.ndarray, votes: np.ndarray, device
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """--shift's constants (7,) in EMOTIONS order and their config record."""
    if args.shift != "posed":
        shift = parse_shift(args.shift)
        return shift, {"shift": dict(zip(EMOTIONS, shift.round(4).tolist())), "rule": "given"}
    if not args.posed or not args.folds:
        raise TrainingError("--shift posed needs --posed DIR and the --folds models")
    posed = posed_data.load_posed(args.posed)
    posed_logp = held_out_log_probs(args.folds, posed, device, args.amp)
    val_logp = np.log(np.clip(val_probs, 1e-12, 1.0))
    shift, figures = fit_shift(val_logp, votes, posed_logp, posed.shares.argmax(1),
                               args.shift_classes, args.max_drop)
    log.info("shift %s: %s", dict(zip(EMOTIONS, shift.round(2).tolist())),
             " ".join(f"{k}={v:.4f}" for k, v in figures.items()))
    return shift, {"shift": dict(zip(EMOTIONS, shift.round(4).tolist())),
                   "rule": f"best held-out agreement with observers' top choice on "
                           f"{Path(args.posed).name} (each performer scored by a fold model "
                           f"that never saw them) with PublicTest FER+ majority within "
                           f"{args.max_drop} and vote cross-entropy no higher",
                   "classes": list(args.shift_classes),
                   "folds": [provenance(load_weights(w), w) for w in args.folds],
                   "figures": figures}


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
    model = loaded.model.to(device)
    tta = cfg.get("tta", "none")
    val_probs = to_emotions_order(predict_probs(
        model, val.images, device, dtype, batch_size=512, tta=tta,
        **loaded.weights_config.inputs).astype(np.float64), cfg["labels"])
    grid: list[dict[str, Any]] = []
    if args.shift:
        shift, record = class_shift(args, val_probs, val.votes, device)
    else:
        shift, record, grid = strength_shift(args, val_probs, vote_prior(train.votes), val.votes)
    add_to_bias(model, shift, cfg["labels"])

    scores = fit.evaluate(model, val, device, dtype, size=loaded.weights_config.input_size)
    kept = {k: v for k, v in cfg.get("metrics", {}).items() if not k.startswith("publictest_")}
    config = {k: v for k, v in cfg.items() if k not in ("labels", "sha256", "int8")}
    config |= {"tta": "none",
               "metrics": {**kept, **fit._config_metrics(scores),
                           "selected_on": "publictest_ferplus_acc"},
               "logit_adjustment": record,
               "adjusted_from": provenance(loaded, args.weights),
               "adjust_command": shlex.join(["python", "-m", "training.adjust", *sys.argv[1:]])}
    out = Path(args.out)
    save_weights(model, config, out)
    # a fitted shift is fitted under the weights' TTA: only that one is weighed against none
    modes = tuple(m for m in (tta,) if m != "none") if args.shift else fit.TTA_MODES[1:]
    fit.finalize(out, val, device, dtype, modes)
    final = load_weights(out).config
    log.info("%s -> %s (tta %s)", record, out, final["tta"])
    return {"shift": shift.tolist(), "tta": final["tta"], "metrics": final["metrics"],
            "grid": grid, "logit_adjustment": record}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
