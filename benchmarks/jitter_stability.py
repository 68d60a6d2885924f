"""How often a classifier keeps its top emotion when the aligned face moves a little.

    python benchmarks/jitter_stability.py W.pt [W2.pt ...] [--data ../shared/data/fer2013]
        [--tta none zoom] [--copies 4] [--json OUT]

On FER2013 PublicTest, each image gets `--copies` randomly jittered copies (shift up to
±2 px, scale ±4%, rotation ±3°: about the landmark noise between detection passes on video).
Prints, per weights and TTA mode: accuracy on the originals, mean accuracy on the copies, and
`agreement`, the fraction of copies whose top emotion equals the original's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from emobatch.config import TTA_MODES
from emobatch.training.data import load_fer
from emobatch.training.ensemble import model_probs
from emobatch.training.evaluate import write_report


def jittered(images: np.ndarray, rng: np.random.Generator, shift: float = 2.0,
             scale: float = 0.04, degrees: float = 3.0) -> np.ndarray:
    """A randomly shifted / scaled / rotated copy of uint8 images (N, H, W)."""
    out = np.empty_like(images)
    h, w = images.shape[1:]
    for i, img in enumerate(images):
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rng.uniform(-degrees, degrees),
                                    1 + rng.uniform(-scale, scale))
        m[:, 2] += rng.uniform(-shift, shift, 2)
        out[i] = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def stability(weights: Path, images: np.ndarray, labels: np.ndarray, copies: list[np.ndarray],
              tta: str) -> dict[str, float]:
    """Accuracy on images and copies, and how often the copies keep the original's argmax."""
    # one pass over originals + copies: the classifier is loaded and folded once
    tops = model_probs(weights, np.concatenate([images, *copies]), "auto", "auto",
                       tta=tta)[0].argmax(1).reshape(len(copies) + 1, len(images))
    top, jit = tops[0], tops[1:]
    return {"acc": float(np.mean(top == labels)),
            "jittered_acc": float(np.mean(jit == labels)),
            "agreement": float(np.mean(jit == top))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, nargs="+")
    p.add_argument("--data", default="../shared/data/fer2013")
    p.add_argument("--tta", nargs="+", default=["none", "zoom"], choices=TTA_MODES)
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()

    val = load_fer(a.data)["PublicTest"]
    rng = np.random.default_rng(a.seed)
    copies = [jittered(val.images, rng) for _ in range(a.copies)]
    rows = []
    for w in a.weights:
        for tta in a.tta:
            rows.append({"weights": str(w), "tta": tta,
                         **stability(w, val.images, val.labels, copies, tta)})
            r = rows[-1]
            print(f"{str(w):40s} tta={tta:8s} acc {r['acc']:.4f}  jittered acc "
                  f"{r['jittered_acc']:.4f}  agreement {r['agreement']:.4f}", flush=True)
    if a.json:
        write_report({"data": a.data, "split": "PublicTest", "copies": a.copies, "seed": a.seed,
                      "rows": rows}, a.json)


if __name__ == "__main__":
    main()
