"""Score several weights and their ensembles on a labelled split: do they make different mistakes?

    python -m training.ensemble --data ../shared/data/fer2013 A.pt B.pt [C.pt ...]
        [--split PublicTest] [--tta auto|none|flip|zoom|tencrop] [--json REPORT.json]

Each model runs as the product runs it (emobatch's Classifier, with its config's TTA unless
--tta names one). Prints each model's accuracy; for each pair how often they disagree, how
often both are wrong, and the oracle (either right), since an ensemble or a distilled
student can only gain where the models' mistakes differ; and the accuracy of the mean
probabilities of every subset of two or more models. Used to decide whether models are
diverse enough to be worth distilling from together (training.fit --distill A.pt B.pt).
"""
from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from emobatch.faces.emotion.classifier import Classifier
from emobatch.config import TTA_MODES
from .data import TrainingError, add_align_argument, exit_on_error, load_fer
from .evaluate import select_split, to_emotions_order, write_report

log = logging.getLogger("training.ensemble")


def model_probs(path: str | Path, images: np.ndarray, device: torch.device | str, amp: str,
                tta: str | None = None, batch_size: int = 256,
                backend: str = "torch") -> tuple[np.ndarray, Classifier]:
    """Probabilities (N, 7) float32 in EMOTIONS order of the weights at path on uint8 images
    (N, H, W), with the config's TTA (or tta); and the Classifier that produced them. Torch
    eager unless asked: distillation targets and ensembles of the float models."""
    clf = Classifier(path, device=str(device), batch_size=batch_size, tta=tta, amp=amp,
                     backend=backend)
    return to_emotions_order(clf.predict(images), clf.labels).astype(np.float32), clf


def pair_stats(pa: np.ndarray, pb: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """For two models' probabilities (N, C) on labels (N,): the fraction of images where
    their top classes differ, where both are wrong, and where at least one is right."""
    top_a, top_b = pa.argmax(1), pb.argmax(1)
    a, b = top_a == labels, top_b == labels
    return {"disagree": float(np.mean(top_a != top_b)),
            "both_wrong": float(np.mean(~a & ~b)), "oracle": float(np.mean(a | b))}


def ensemble_accuracies(probs: dict[str, np.ndarray], labels: np.ndarray,
                        max_size: int = 0) -> list[dict[str, Any]]:
    """Accuracy of the mean probabilities of every subset of 2..max_size (0: all) models."""
    names = list(probs)
    top = max_size or len(names)
    rows = []
    for r in range(2, min(top, len(names)) + 1):
        for subset in itertools.combinations(names, r):
            mean = sum(probs[n] for n in subset) / r
            rows.append({"models": list(subset), "accuracy": float(np.mean(mean.argmax(1) == labels))})
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Score weights and their ensembles on a labelled split.")
    p.add_argument("weights", nargs="+", help="weights .pt files (pairs and ensembles need two or more)")
    p.add_argument("--data", required=True, help="FER2013 folder layout, <class>/ folder, or fer2013.csv")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--tta", default="auto", choices=[*TTA_MODES, "auto"],
                   help="TTA for every model (auto: each model's config)")
    p.add_argument("--max-size", type=int, default=0, help="largest ensemble scored (0: all models)")
    p.add_argument("--json", default=None, metavar="REPORT.json")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_align_argument(p)
    return p


def _label(paths: Sequence[str]) -> dict[str, str]:
    """Short unique names: the parent folder when the file names repeat (runs/x/emobatch_fer.pt)."""
    for name in (lambda p: Path(p).name, lambda p: f"{Path(p).parent.name}/{Path(p).name}", str):
        names = [name(p) for p in paths]
        if len(set(names)) == len(names):
            return dict(zip(paths, names))
    raise TrainingError(f"the same weights are named twice: {list(paths)}")


@exit_on_error
def main(args: argparse.Namespace) -> dict[str, Any]:
    """Score, print, write --json; returns the report."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    split, split_name = select_split(load_fer(args.data, align=args.align), args.split)
    labels, short = split.labels, _label(args.weights)
    probs, models = {}, []
    for path in args.weights:
        p, clf = model_probs(path, split.images, args.device, args.amp,
                             None if args.tta == "auto" else args.tta)
        probs[short[path]] = p
        models.append({"name": short[path], "path": str(path), "sha256": clf.sha256, "tta": clf.tta,
                       "accuracy": float(np.mean(p.argmax(1) == labels))})
        print(f"{short[path]:<32} tta {clf.tta:<8} accuracy {models[-1]['accuracy']:.4f}", flush=True)
    pairs = [{"models": [a, b], **pair_stats(probs[a], probs[b], labels)}
             for a, b in itertools.combinations(probs, 2)]
    for r in pairs:
        print(f"pair {' + '.join(r['models'])}: disagree {r['disagree']:.4f}  both wrong "
              f"{r['both_wrong']:.4f}  oracle {r['oracle']:.4f}")
    ensembles = ensemble_accuracies(probs, labels, args.max_size)
    for r in ensembles:
        print(f"mean of {' + '.join(r['models'])}: accuracy {r['accuracy']:.4f}")
    report = {"split": split_name, "n": int(len(labels)), "data": str(args.data),
              "models": models, "pairs": pairs, "ensembles": ensembles}
    if args.json:
        write_report(report, args.json)
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
