"""Posed photos rated by observers (posed-tw's labels.csv layout) as soft training targets.

The photos go through the product's own detector and alignment: each is detected once
(the most confident face), and every epoch renders new crops from the photo with the
alignment jittered (scale, rotation, shift, landmark noise) and the camera varied (resolution,
blur, exposure, noise), so a few hundred photos teach expressions rather than one lab's
crops. Targets are the observers' endorsement shares, normalised: what people saw, not the
performer's instruction.

Performers are split into folds by `performer_folds`; a model trained with a fold held out is
scored on that fold's performers only (benchmarks/label_quality.py), never on photos of a
performer it has seen.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch import nn

from emobatch.faces.align import TEMPLATE_48, align_face
from emobatch.faces.emotion.classifier import predict_probs
from emobatch.types import EMOTIONS
from .data import SIZE, TrainingError

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
TEMPLATE_CENTRE = np.array([24.0, 28.0], np.float32)  # the template's rotation/zoom pivot


@dataclass
class PosedSet:
    """n rated photos, each with its face found: photos (n, H, W) uint8 gray, landmarks
    (n, 5, 2) float32 in photo pixels, shares (n, 7) float32 (rows sum to 1, EMOTIONS order),
    intended (n,) int64 (the instruction), performer (n,) str, paths."""

    photos: np.ndarray
    landmarks: np.ndarray
    shares: np.ndarray
    intended: np.ndarray
    performer: np.ndarray
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: np.ndarray) -> "PosedSet":
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        return PosedSet(self.photos[index], self.landmarks[index], self.shares[index],
                        self.intended[index], self.performer[index],
                        [self.paths[i] for i in index])


def _natural(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def performer_folds(performer: np.ndarray, k: int) -> np.ndarray:
    """Fold (n,) int64 of each photo: performers in natural order, dealt round-robin into k
    folds, so every fold holds about the same number of performers and every performer
    is in exactly one."""
    if k < 2:
        raise TrainingError(f"posed folds: need at least 2, not {k}")
    order = sorted(set(performer.tolist()), key=_natural)
    if len(order) < k:
        raise TrainingError(f"posed folds: {len(order)} performers cannot fill {k} folds")
    fold_of = {p: i % k for i, p in enumerate(order)}
    return np.array([fold_of[p] for p in performer], np.int64)


def read_labels(root: Path) -> list[dict[str, str]]:
    """labels.csv's rows (file, performer, intended, the seven shares)."""
    path = Path(root) / LABELS_FILE
    if not path.is_file():
        raise TrainingError(f"--posed {root}: no {LABELS_FILE} (file,performer,intended and "
                            f"one share column per emotion)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"file", "performer", "intended", *EMOTIONS} - set(rows[0] if rows else ())
    if missing:
        raise TrainingError(f"{path}: missing columns {sorted(missing)}")
    return rows


def load_posed(root: str | Path, cache_dir: str | Path | None = None) -> PosedSet:
    """Read the photos under root with labels.csv, each face detected by the product's
    detector (photos without a face are skipped with a warning). The detections are cached in
    cache_dir, keyed by labels.csv's hash, because MTCNN on every photo takes a minute."""
    root = Path(root)
    rows = read_labels(root)
    digest = hashlib.sha256((root / LABELS_FILE).read_bytes()).hexdigest()[:16]
    cache = Path(cache_dir) / f"posed-{digest}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return PosedSet(z["photos"], z["landmarks"], z["shares"], z["intended"],
                        z["performer"], z["paths"].tolist())
    posed = _detect_all(root, rows)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, photos=posed.photos, landmarks=posed.landmarks, shares=posed.shares,
                 intended=posed.intended, performer=posed.performer,
                 paths=np.array(posed.paths))
    return posed


def _detect_all(root: Path, rows: list[dict[str, str]]) -> PosedSet:
    from emobatch.errors import InputError
    from emobatch.faces.detection.detector import Detector
    from emobatch.media.sources import read_image

    detector = Detector()
    photos, marks, kept = [], [], []
    for row in rows:
        path = root / row["file"]
        try:
            image = read_image(path).image
        except InputError as exc:
            log.warning("posed photo skipped: %s", exc)
            continue
        faces = detector.detect(image)
        if len(faces) == 0:
            log.warning("no face found, skipped: %s", path)
            continue
        photos.append(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        marks.append(faces.landmarks[0])
        kept.append(row)
    if not kept:
        raise TrainingError(f"--posed {root}: no photo with a face")
    if len({p.shape for p in photos}) > 1:
        raise TrainingError(f"--posed {root}: photos of different sizes")
    shares = np.array([[float(r[e]) for e in EMOTIONS] for r in kept], np.float32)
    if (shares.sum(1) <= 0).any():
        raise TrainingError(f"--posed {root}: a photo with no endorsement at all")
    intended = [EMOTIONS.index(r["intended"]) if r["intended"] in EMOTIONS else -1 for r in kept]
    log.info("posed photos from %s: %d of %d with a face", root, len(kept), len(rows))
    return PosedSet(np.stack(photos), np.stack(marks).astype(np.float32),
                    shares / shares.sum(1, keepdims=True), np.array(intended, np.int64),
                    np.array([r["performer"] for r in kept]), [str(root / r["file"]) for r in kept])


def render(photo: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator | None,
           size: int = SIZE) -> np.ndarray:
    """One (size, size) uint8 crop of photo (H, W) gray aligned on landmarks (5, 2) like the
    pipeline's Aligner; with rng, the alignment and the camera are jittered (see module doc)."""
    if rng is None:
        return align_face(photo, landmarks, size)
    zoom = math.exp(rng.uniform(math.log(0.85), math.log(1.35)))
    angle = math.radians(rng.uniform(-8, 8))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    target = (TEMPLATE_48 - TEMPLATE_CENTRE) @ rot.T * zoom + TEMPLATE_CENTRE + rng.uniform(-2.5, 2.5, 2)
    marks = landmarks + rng.normal(0, 1.0, landmarks.shape)
    crop = align_face(photo, marks, size, target).astype(np.float32)
    return _camera(crop, rng)


def _camera(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """crop (S, S) float32 as another camera might give it: lower resolution (down to 20 px
    on FER2013's 48-pixel scale), blur, gamma, contrast and brightness, sensor noise.
    Returns uint8."""
    size = crop.shape[0]
    if rng.random() < 0.5:
        side = round(int(rng.integers(20, 44)) * size / SIZE)
        small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.4, 1.0) * size / SIZE)
    crop = 255.0 * (np.clip(crop, 0, 255) / 255.0) ** math.exp(rng.uniform(-0.4, 0.4))
    mean = crop.mean()
    crop = (crop - mean) * rng.uniform(0.6, 1.3) + mean + rng.uniform(-30, 30)
    if rng.random() < 0.3:
        crop = crop + rng.normal(0, rng.uniform(2, 8), crop.shape)
    return np.clip(crop + 0.5, 0, 255).astype(np.uint8)


def crops(posed: PosedSet, copies: int = 1, rng: np.random.Generator | None = None,
          size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """copies renders of every photo: images (copies * n, size, size) uint8 and their
    targets (copies * n, 7) float32 (the shares). Without rng, one clean crop each, as
    inference aligns it for a network of input side `size`."""
    images = [render(posed.photos[i], posed.landmarks[i], rng, size)
              for _ in range(copies) for i in range(len(posed))]
    if not images:
        return np.zeros((0, size, size), np.uint8), np.zeros((0, len(EMOTIONS)), np.float32)
    return np.stack(images), np.concatenate([posed.shares] * copies)


def add_posed_arguments(p: argparse.ArgumentParser) -> None:
    """--posed and its options for training.fit."""
    p.add_argument("--posed", default=None, metavar="DIR",
                   help="also learn from posed photos rated by observers (a folder with "
                        "labels.csv: file, performer, intended and one share per emotion, as "
                        "posed-tw's): the normalised shares are soft targets, each photo "
                        "detected and aligned by the product and re-rendered every epoch "
                        "with jittered alignment and camera (training.posed)")
    p.add_argument("--posed-copies", type=int, default=4, metavar="K",
                   help="renders of each posed photo per epoch")
    p.add_argument("--posed-folds", type=int, default=3, metavar="K",
                   help="performer folds (training.posed.performer_folds)")
    p.add_argument("--posed-holdout", type=int, default=None, metavar="F",
                   help="leave fold F's performers out of training and score them every "
                        "epoch (a candidate's held-out check; default: train on all)")


def split_posed(args: argparse.Namespace, labels: str, ckpt_dir: Path
                ) -> tuple[PosedSet | None, PosedSet | None]:
    """--posed's photos split by performer: (to train on, held out), or (None, None)."""
    if not args.posed:
        return None, None
    if labels != "ferplus":
        raise TrainingError("--posed learns observers' shares as soft targets: it needs "
                            "--labels ferplus")
    posed = load_posed(args.posed, cache_dir=ckpt_dir)
    if args.posed_holdout is None:
        return posed, None
    fold = performer_folds(posed.performer, args.posed_folds)
    if not 0 <= args.posed_holdout < args.posed_folds:
        raise TrainingError(f"--posed-holdout {args.posed_holdout}: folds are 0.."
                            f"{args.posed_folds - 1}")
    held = fold == args.posed_holdout
    log.info("posed: %d photos of %d performers to train on, %d held out (fold %d of %d)",
             int((~held).sum()), len(set(posed.performer[~held])), int(held.sum()),
             args.posed_holdout, args.posed_folds)
    return posed.subset(~held), posed.subset(held)


def epoch_data(images: np.ndarray, targets: np.ndarray, posed: PosedSet | None,
               args: argparse.Namespace, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's images (N, 48, 48) and targets (N, 7): the training split's, plus this
    epoch's jittered renders of the posed photos (seeded by seed and epoch, so --resume
    repeats them)."""
    if posed is None:
        return images, targets
    rng = np.random.default_rng([args.seed, epoch])
    rendered, shares = crops(posed, args.posed_copies, rng, images.shape[1])
    return np.concatenate([images, rendered]), np.concatenate([targets, shares])


def soft_targets(soft: np.ndarray | None, targets: np.ndarray) -> np.ndarray | None:
    """--distill's targets for an epoch's rows (N, 7): the teachers' (n, 7) for the training
    split's n images, then the observers' shares for the posed renders after them (teachers
    score the clean training images once, the renders change every epoch); None without."""
    if soft is None or len(soft) == len(targets):
        return soft
    return np.concatenate([soft, targets[len(soft):]]).astype(np.float32)


def config(args: argparse.Namespace, posed: PosedSet | None) -> dict | None:
    """What the weights learnt of --posed, for their config: which performers (so a
    benchmark scores them only on the others), the folds and the copies per epoch."""
    if posed is None:
        return None
    return {"data": Path(args.posed).name, "performers": sorted(set(posed.performer.tolist())),
            "folds": args.posed_folds, "holdout": args.posed_holdout,
            "copies": args.posed_copies, "photos": len(posed)}


def trained_on(config: dict | None) -> str:
    """config's phrase for the weights' `trained_on` ('' without posed photos)."""
    if not config:
        return ""
    return (f"; posed photos of {len(config['performers'])} performers ({config['data']}), "
            f"observers' endorsement shares")


def agreement(model: nn.Module, held: PosedSet, device, dtype, size: int = SIZE) -> float:
    """Share of held-out posed photos whose predicted class is the observers' top choice
    (the model's input side: size)."""
    images, shares = crops(held, size=size)
    probs = predict_probs(model, images, device, dtype, batch_size=512)
    return float((probs.argmax(1) == shares.argmax(1)).mean())
