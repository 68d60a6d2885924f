"""FER2013 loaders: the folder layout (train/<class>/, test/<class>/) and the single CSV.

Both return uint8 images (N, 48, 48) and int64 labels in EMOTIONS order, per split
(Training, PublicTest, PrivateTest).
"""
from __future__ import annotations

import argparse
import csv
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import cv2
import numpy as np

from emobatch.media.filetypes import IMAGE_SUFFIXES
from emobatch.types import EMOTIONS
from . import ferplus

log = logging.getLogger(__name__)

ALIASES: dict[str, str] = {
    "angry": "angry", "anger": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "calm": "neutral",
}
SPLITS = ("Training", "PublicTest", "PrivateTest")
SIZE = 48
CLASS_FOLDERS = "class folders"
"""Split.origin of images read from <class>/ folders directly under the data root."""


class TrainingError(ValueError):
    """Bad data, arguments or weights for training or evaluation. Library functions raise it;
    each module's `main` (wrapped by `exit_on_error`) turns it into an exit message."""


_Main = TypeVar("_Main", bound=Callable[..., Any])


def exit_on_error(main: _Main) -> _Main:
    """Decorator for a command's `main`: TrainingError (and a missing file or bad weights)
    ends the process with its message instead of a traceback."""
    from emobatch.errors import WeightsError

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except (TrainingError, FileNotFoundError, WeightsError) as exc:
            raise SystemExit(f"error: {exc}") from None
    return wrapper  # type: ignore[return-value]


@dataclass
class Split:
    """Images (N, 48, 48) uint8 and labels (N,) int64 in EMOTIONS order.

    origin: '' when the images are this FER2013 split (file-name prefix `Training_`/
    `PublicTest_`/`PrivateTest_`, or the CSV's Usage column); otherwise where images without
    a prefix came from ('class folders' directly under the data root, or 'test/', 'train/'),
    so a report names other data as what it is rather than as a FER2013 split.
    """

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    origin: str = ""
    votes: np.ndarray | None = None
    """FER+ votes (N, 10) int64 in training.ferplus.VOTE_COLUMNS, rows of -1 for images
    FER+ has no votes for; None when no votes folder was found."""

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "Split":
        """The images at index (an int or bool array), with their labels, paths and votes."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Split(self.images[index], self.labels[index], [self.paths[i] for i in index],
                     self.origin, None if self.votes is None else self.votes[index])


def class_index(name: str) -> int | None:
    """Map a class folder name (or alias) to its EMOTIONS index; None for classes we skip."""
    canon = ALIASES.get(name.strip().lower())
    return None if canon is None else EMOTIONS.index(canon)


def _split_of(path: Path, top: str) -> tuple[str, bool]:
    """(split, True) from a FER2013 file-name prefix, else (split by the top folder, False)."""
    m = re.match(r"(Training|PublicTest|PrivateTest)_", path.name)
    if m:
        return m.group(1), True
    return ("Training" if top.lower() in ("train", "training") else "PublicTest"), False


ALIGN_ABOVE = 96  # --align auto: images larger than this are photos, not face crops


class FaceCropper:
    """Photos (not crops): detect the most confident face and align it exactly as the
    pipeline does at inference (emobatch.faces.detection.detector + emobatch.faces.align), so a model trained or
    evaluated on a user's own photos sees the faces it will see in `emobatch run`."""

    def __init__(self) -> None:
        from emobatch.faces.align import Aligner
        from emobatch.faces.detection.detector import Detector

        self.detector, self.aligner = Detector(), Aligner(SIZE)

    def __call__(self, path: Path) -> np.ndarray | None:
        from emobatch.media.sources import read_image
        from emobatch.errors import InputError

        try:
            image = read_image(path).image
        except InputError:
            return None
        faces = self.detector.detect(image)
        if len(faces) == 0:
            return None
        return self.aligner.align(image, faces[[0]]).crops[0]


def _read_gray48(path: Path, align: str, crop: Callable[[Path], np.ndarray | None]
                 ) -> np.ndarray | None:
    """A 48x48 uint8 face: FER-style crops are resized; photos are detected and aligned
    (align 'on', or 'auto' for images larger than ALIGN_ABOVE px)."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    if align == "on" or (align == "auto" and max(img.shape) > ALIGN_ABOVE):
        return crop(path)
    if img.shape != (SIZE, SIZE):
        img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return img


def load_folder(root: Path, align: str = "auto") -> dict[str, Split]:
    """Read root/<split>/<class>/*.jpg, or root/<class>/*.jpg (everything as one test split).

    align: 'auto' (photos larger than ALIGN_ABOVE px are detected + aligned, crops resized),
    'on' (always detect + align), 'off' (always just resize). Images without a detectable
    face are skipped with a warning.
    """
    root = Path(root)
    cropper: list[FaceCropper] = []  # built on first use: most datasets never need MTCNN

    def crop(p: Path) -> np.ndarray | None:
        if not cropper:
            cropper.append(FaceCropper())
        return cropper[0](p)

    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    flat = any(class_index(p.name) is not None for p in subdirs)
    tops = [(root, "test")] if flat else [(p, p.name) for p in subdirs]
    out: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in SPLITS}
    origins: dict[str, set[str]] = {s: set() for s in SPLITS}
    skipped: set[str] = set()
    for top, top_name in tops:
        for cdir in sorted(p for p in top.iterdir() if p.is_dir()):
            idx = class_index(cdir.name)
            if idx is None:
                skipped.add(cdir.name)
                continue
            for f in sorted(cdir.rglob("*")):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                img = _read_gray48(f, align, crop)
                if img is None:
                    log.warning("unreadable image or no face found, skipped: %s", f)
                    continue
                split, prefixed = _split_of(f, top_name)
                if not prefixed:
                    origins[split].add(CLASS_FOLDERS if flat else f"{top_name}/")
                imgs, labels, paths = out[split]
                imgs.append(img)
                labels.append(idx)
                paths.append(str(f))
    for name in sorted(skipped):
        log.warning("class folder %r is not one of the seven FER2013 emotions: skipped", name)
    return _pack(out, {s: ", ".join(sorted(o)) for s, o in origins.items()})


def load_csv(path: Path) -> dict[str, Split]:
    """Read fer2013.csv (emotion,pixels,Usage; emotion 0..6 already in EMOTIONS order)."""
    out: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in SPLITS}
    with open(path, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            pix = np.array(row["pixels"].split(), dtype=np.uint8)
            if pix.size != SIZE * SIZE:
                log.warning("row %d: %d pixels, expected %d: skipped", i, pix.size, SIZE * SIZE)
                continue
            usage = row.get("Usage") or "Training"
            imgs, labels, paths = out.setdefault(usage, ([], [], []))
            imgs.append(pix.reshape(SIZE, SIZE))
            labels.append(int(row["emotion"]))
            paths.append(f"{path}:{i}")
    return _pack(out)


def _pack(out: dict[str, tuple[list, list, list]],
          origins: dict[str, str] | None = None) -> dict[str, Split]:
    return {s: Split(np.stack(i) if i else np.zeros((0, SIZE, SIZE), np.uint8),
                     np.asarray(l, dtype=np.int64), p, (origins or {}).get(s, ""))
            for s, (i, l, p) in out.items()}


def load_fer(path: str | Path, align: str = "auto", votes: str | Path | None = "auto"
             ) -> dict[str, Split]:
    """Load FER2013 from a folder layout or a CSV file, keyed by split name.
    align applies to folder layouts (see load_folder); CSV rows are 48x48 crops already.
    votes: a FER+ votes folder to attach to a folder layout's splits (Split.votes), 'auto'
    for the one beside it (training.ferplus.find_votes), or None for none."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return load_csv(path)
    if path.is_dir():
        csvs = sorted(path.glob("*.csv"))
        if not any(p.is_dir() for p in path.iterdir()) and csvs:
            return load_csv(csvs[0])
        data = load_folder(path, align)
        votes_given = votes not in ("auto", None)
        folder = ferplus.find_votes(path) if votes == "auto" else votes
        if folder is not None:
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"no FER+ votes folder at {folder}")
            try:
                table = ferplus.read_votes(folder)
            except ValueError as e:
                raise TrainingError(str(e)) from None
            votes = {name: ferplus.votes_for(s.paths, path, table) for name, s in data.items()}
            matched = any((v[:, 0] >= 0).any() for v in votes.values())
            if not matched and votes_given:
                example = next(iter(table), "nothing")
                raise TrainingError(f"--votes {folder}: no image under {path} has votes there "
                                    f"(its 'file' column names paths relative to the FER2013 "
                                    f"folder, e.g. {example})")
            if matched:  # else: not FER2013's images
                for name, split in data.items():
                    split.votes = votes[name]
                log.info("FER+ votes from %s: %s", folder, ", ".join(
                    f"{name} {int((v[:, 0] >= 0).sum())}/{len(v)}"
                    for name, v in votes.items() if len(v)))
        return data
    raise FileNotFoundError(f"no FER2013 folder or CSV at {path}")


def add_votes_argument(p: argparse.ArgumentParser) -> None:
    """--votes for the training and evaluation CLIs (see load_fer)."""
    p.add_argument("--votes", default="auto", metavar="DIR",
                   help="FER+ votes folder (train.csv, publictest.csv; auto: a ferplus/ folder "
                        "inside or beside --data; 'none' to ignore them)")


def add_label_mix_arguments(p: argparse.ArgumentParser) -> None:
    """--label-mix and --label-mix-classes (see training_targets)."""
    p.add_argument("--label-mix", type=float, default=0.0, metavar="W",
                   help="with ferplus: the target is (1 - W) * the vote distribution + W * "
                        "FER2013's own label")
    p.add_argument("--label-mix-classes", nargs="+", choices=EMOTIONS, default=None,
                   metavar="CLASS", help="mix FER2013's label in only for the faces it labels "
                                         "one of these (default: every face)")


def votes_arg(value: str) -> str | None:
    """--votes as load_fer takes it."""
    return None if value.lower() == "none" else value


def add_align_argument(p: argparse.ArgumentParser) -> None:
    """--align for the training and evaluation CLIs (see load_folder)."""
    p.add_argument("--align", default="auto", choices=["auto", "on", "off"],
                   help="folder layouts: detect + align faces in photos like `emobatch run` "
                        f"(auto: images larger than {ALIGN_ABOVE} px; crops like FER2013's are "
                        "resized)")


def resolve_labels(args, train: Split, val: Split) -> str:
    """--labels with auto resolved: ferplus where both splits have FER+ votes."""
    have = all(s.votes is not None and (s.votes[:, 0] >= 0).all() for s in (train, val))
    if args.labels == "auto":
        return "ferplus" if have else "fer2013"
    if args.labels == "ferplus" and not have:
        raise TrainingError(f"--labels ferplus: no FER+ votes for every Training and PublicTest "
                            f"image of {args.data} (give the votes folder with --votes, or use "
                            f"--labels fer2013)")
    return args.labels


def training_targets(labels: str, train: Split, mix: float,
                     mix_classes: Sequence[str] | None = None) -> tuple[Split, np.ndarray]:
    """The images to train on and their targets: FER2013's labels (N,), or FER+ vote
    distributions (N, 7) mixed with them (for FER2013's `mix_classes` only, where given),
    without the faces that have no emotion votes."""
    if labels == "fer2013":
        if mix:
            raise TrainingError("--label-mix mixes FER2013's labels into FER+ targets: it needs "
                                "--labels ferplus")
        return train, train.labels
    if not 0.0 <= mix <= 1.0:
        raise TrainingError(f"--label-mix {mix}: must be within 0..1")
    q = ferplus.targets(train.votes, train.labels, mix, mix_classes)
    keep = q.sum(1) > 0
    log.info("FER+ targets (label mix %.2f): %d faces, %d without emotion votes left out",
             mix, int(keep.sum()), int((~keep).sum()))
    return train.subset(keep), q[keep]
