"""Calibrate the int8 backend of classifier weights on FER2013 training faces.

    python -m training.quantize --data ../shared/data/fer2013 [--weights W.pt] [--out W8.pt]
        [--faces 2048] [--seed 0] [--eval]

Runs `--faces` Training images (a seeded sample; PublicTest and PrivateTest are never used)
through the network with observers on every activation (emobatch.faces.emotion.runtimes.prepare_int8),
and writes the weights again with those observers' state added, which the `int8` backend
turns into a quantised network at load time. The float weights are unchanged, so the
`torch` backend's results are too; the file's sha256 changes. --eval scores the int8
network on PublicTest with every TTA mode and records it in the config.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emobatch.faces.emotion.runtimes import convert_int8, load_runtime, observer_state, prepare_int8
from emobatch.faces.emotion.classifier import predict_probs
from emobatch.config import TTA_MODES
from emobatch.faces.emotion.preprocess import resize_crops, to_tensor
from emobatch.faces.emotion.weights import load_weights, save_weights
from .data import TrainingError, add_align_argument, exit_on_error, load_fer
from .scoring import vote_metrics

log = logging.getLogger("training.quantize")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Calibrate the int8 backend of emobatch weights.")
    p.add_argument("--data", required=True, help="FER2013 folder layout or fer2013.csv")
    p.add_argument("--weights", default=None, help="weights .pt (default: the shipped weights)")
    p.add_argument("--out", default=None, help="where to write (default: over --weights)")
    p.add_argument("--faces", type=int, default=2048, help="Training images to calibrate on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval", action="store_true", help="score int8 on PublicTest, every TTA mode")
    add_align_argument(p)
    return p


def calibrate(model: torch.nn.Module, images: np.ndarray, mean: float, std: float,
              batch_size: int = 256, size: int = 48) -> dict[str, torch.Tensor]:
    """Observer state of `model` (float, any architecture, input side `size`) after seeing
    images (N, H, W) uint8, resized and normalised as inference does."""
    prepared = prepare_int8(model.cpu().eval(), size)
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            prepared(to_tensor(resize_crops(images[i:i + batch_size], size), mean, std))
    state = observer_state(prepared)
    convert_int8(prepared)  # fails here, not at load time, if the graph cannot be quantised
    return state


@exit_on_error
def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = load_fer(args.data, align=args.align)
    train = data["Training"]
    if len(train) == 0:
        raise TrainingError(f"no Training images in {args.data} to calibrate on")
    loaded = load_weights(args.weights)
    cfg = loaded.config
    pick = np.sort(np.random.default_rng(args.seed).choice(
        len(train), min(args.faces, len(train)), replace=False))
    wc = loaded.weights_config
    observers = calibrate(loaded.model, train.images[pick], **wc.inputs)
    info: dict[str, Any] = {
        "engine": torch.backends.quantized.engine, "faces": len(pick), "seed": args.seed,
        "calibration": "FER2013 Training (seeded sample)", "torch": str(torch.__version__),
        "command": shlex.join(["python", "-m", "training.quantize", *sys.argv[1:]]),
    }
    if args.eval:
        test = data["PublicTest"]
        runtime = load_runtime(replace(loaded, int8=observers), torch.device("cpu"), "int8")
        info["publictest"] = {}
        if test.votes is not None:
            info["publictest_ferplus"] = {}
        for tta in TTA_MODES:
            probs = predict_probs(runtime.model, test.images, torch.device("cpu"), None, 256, tta,
                                  **wc.inputs)
            info["publictest"][tta] = round(float(np.mean(probs.argmax(1) == test.labels)), 4)
            log.info("int8 PublicTest accuracy (FER2013 labels), tta %s: %.4f", tta,
                     info["publictest"][tta])
            if test.votes is not None:
                acc = vote_metrics(probs, test.votes)["majority"]["accuracy"]
                info["publictest_ferplus"][tta] = round(acc, 4)
                log.info("int8 PublicTest accuracy (FER+ majority), tta %s: %.4f", tta, acc)
    out = Path(args.out) if args.out else loaded.path
    config = {k: v for k, v in cfg.items() if k != "sha256"}
    digest = save_weights(loaded.model, {**config, "int8": info}, out, int8=observers)
    log.info("wrote %s (sha256 %s) with int8 calibration on %d faces", out, digest[:12], len(pick))
    return info


if __name__ == "__main__":
    main(get_args_parser().parse_args())
