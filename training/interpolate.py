"""Blend two weights of one architecture: (1 - alpha) * BASE + alpha * TUNED, every parameter
and batch-norm statistic (weight-space ensembling, Wortsman et al., "Robust fine-tuning of
zero-shot models", CVPR 2022).

    python -m training.interpolate --data ../shared/data/fer2013 --base weights/emobatch_fer.pt
        --tuned runs/posed/emobatch_fer.pt --alpha 0.7 --out W.pt [--tta zoom ...]

TUNED must have been fine-tuned from BASE (training.fit --init BASE): then the blend is one
network at the same cost that keeps part of what each learnt, e.g. the everyday faces of
BASE and the posed ones of TUNED, where the straight fine-tune gives some of the first away.
The blend's TTA is chosen on PublicTest as training.fit does (among --tta's modes); int8 is
calibrated afterwards (training.quantize).
"""
from __future__ import annotations

import argparse
import copy
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emobatch.config import TTA_MODES
from emobatch.faces.device import amp_dtype, select_device
from emobatch.faces.emotion.weights import LoadedModel, load_weights, save_weights
from . import fit
from .data import TrainingError, add_votes_argument, exit_on_error, load_fer, votes_arg
from .distill import provenance

log = logging.getLogger("training.interpolate")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Blend two weights: (1 - alpha) * base + alpha * tuned.")
    p.add_argument("--data", required=True, help="FER2013 folder (PublicTest chooses the TTA)")
    p.add_argument("--base", required=True, help="the weights TUNED was fine-tuned from")
    p.add_argument("--tuned", required=True, help="weights fine-tuned from --base")
    p.add_argument("--alpha", type=float, required=True, help="TUNED's share, in [0, 1]")
    p.add_argument("--out", required=True, help="blended weights .pt")
    p.add_argument("--tta", nargs="+", default=list(TTA_MODES[1:]), choices=TTA_MODES[1:],
                   metavar="MODE", help="TTA modes weighed against none on PublicTest")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"])
    add_votes_argument(p)
    return p


def blend(base: LoadedModel, tuned: LoadedModel, alpha: float) -> nn.Module:
    """A copy of tuned's network whose floating-point tensors are (1 - alpha) * base's +
    alpha * tuned's (integer ones, e.g. batch norm's step count, are tuned's)."""
    if not 0.0 <= alpha <= 1.0:
        raise TrainingError(f"--alpha {alpha}: must be in [0, 1]")
    if base.config.get("arch") != tuned.config.get("arch") or \
            base.config["labels"] != tuned.config["labels"]:
        raise TrainingError("--base and --tuned must share the architecture and labels "
                            f"({base.config.get('arch')} vs {tuned.config.get('arch')})")
    a, b = base.model.state_dict(), tuned.model.state_dict()
    mixed = {k: (torch.lerp(a[k].float(), v.float(), alpha).to(v.dtype)
                 if v.is_floating_point() else v) for k, v in b.items()}
    model = copy.deepcopy(tuned.model)
    model.load_state_dict(mixed)
    return model.eval()


@exit_on_error
def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    val = load_fer(args.data, align="off", votes=votes_arg(args.votes))["PublicTest"]
    device = select_device(args.device)
    dtype = amp_dtype(device, args.amp)
    base, tuned = load_weights(args.base), load_weights(args.tuned)
    if tuned.config.get("init", {}).get("sha256") not in (None, base.sha256):
        log.warning("%s was not fine-tuned from %s (its init: %s): a blend of unrelated "
                    "weights is usually worse than either", args.tuned, args.base,
                    tuned.config["init"].get("path"))
    model = blend(base, tuned, args.alpha).to(device)
    scores = fit.evaluate(model, val, device, dtype, size=tuned.weights_config.input_size)
    config = {k: v for k, v in tuned.config.items() if k not in ("labels", "sha256", "int8")}
    config |= {"tta": "none",
               "metrics": {**fit._config_metrics(scores), "selected_on": "publictest_ferplus_acc"
                           if val.votes is not None else "publictest_acc"},
               "interpolation": {"alpha": args.alpha, "base": provenance(base, args.base),
                                 "tuned": provenance(tuned, args.tuned)},
               "interpolate_command": shlex.join(["python", "-m", "training.interpolate",
                                                  *sys.argv[1:]])}
    out = Path(args.out)
    save_weights(model, config, out)
    fit.finalize(out, val, device, dtype, tuple(args.tta))
    final = load_weights(out).config
    log.info("alpha %.2f -> %s (tta %s)", args.alpha, out, final["tta"])
    return {"tta": final["tta"], "metrics": final["metrics"]}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
