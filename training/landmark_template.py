"""Measure where MTCNN finds the 5 landmarks on FER2013 crops: the template align.py uses.

    python -m training.landmark_template --data ../shared/data/fer2013 --n 400

Each 48x48 training image is upscaled 4x (MTCNN needs faces >= 20 px), detected, and the
landmarks of the single most confident face are mapped back to 48x48 coordinates. The
template is the median over images, mirrored-symmetrised so the eyes are level.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
from facenet_pytorch import MTCNN

from .data import load_fer

UPSCALE = 4


def measure(images: np.ndarray) -> np.ndarray:
    """Landmarks (M, 5, 2) in 48x48 coordinates for the images where one face was found."""
    mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=40, thresholds=[0.5, 0.6, 0.6])
    found = []
    for img in images:
        big = cv2.resize(img, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
        boxes, probs, pts = mtcnn.detect(cv2.cvtColor(big, cv2.COLOR_GRAY2RGB), landmarks=True)
        if boxes is None:
            continue
        found.append(np.asarray(pts[int(np.argmax(probs))], np.float32) / UPSCALE)
    return np.stack(found)


def symmetrise(tpl: np.ndarray, width: float = 48.0) -> np.ndarray:
    """Average the template with its mirror image (left/right landmark pairs swapped)."""
    mirror = tpl[[1, 0, 2, 4, 3]].copy()
    mirror[:, 0] = width - mirror[:, 0]
    return (tpl + mirror) / 2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    train = load_fer(args.data)["Training"]
    sel = np.random.default_rng(args.seed).permutation(len(train))[:args.n]
    pts = measure(train.images[sel])
    tpl = symmetrise(np.median(pts, axis=0))
    print(f"faces found on {len(pts)}/{len(sel)} images; spread (px) {pts.std(0).mean():.2f}")
    print("TEMPLATE_48 = np.array(" + np.array2string(tpl.round(2), separator=", ") + ", np.float32)")


if __name__ == "__main__":
    main()
