"""FER+ (Barsoum et al. 2016, MIT): ten annotators' votes for every FER2013 image.

A votes folder holds `train.csv` / `publictest.csv` (or any `*.csv`) with a `file` column
(the image's path relative to the FER2013 folder, e.g. `train/angry/Training_10118481.jpg`)
and the counts in VOTE_COLUMNS, which sum to 10 for each image.

What becomes of FER+'s three columns outside the timeline's seven emotions:
- `contempt` and `unknown` votes are dropped and the remaining emotion votes renormalised
  (a face seen as contempt by 2 of 10 keeps the other 8 people's shares);
- a face with no emotion vote left (`NF=10`, "not a face", or all contempt/unknown) has no
  target: training skips it, and it counts in no FER+ metric.
"""
from __future__ import annotations

from collections.abc import Sequence

import csv
import logging
from pathlib import Path

import numpy as np

from emobatch.types import EMOTIONS

log = logging.getLogger(__name__)

VOTE_COLUMNS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger",
                                 "disgust", "fear", "contempt", "unknown", "NF")
_AS_EMOTION = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise",
               "sadness": "sad", "anger": "angry", "disgust": "disgust", "fear": "fear"}
EMOTION_COLUMNS = [VOTE_COLUMNS.index(next(k for k, v in _AS_EMOTION.items() if v == e))
                   for e in EMOTIONS]
"""For each of EMOTIONS, its column in VOTE_COLUMNS."""
NO_LABEL = -1
"""majority()'s value for a face with no single seven-emotion majority."""


def find_votes(data: str | Path) -> Path | None:
    """The FER+ votes folder for a FER2013 folder: `<data>/ferplus` or `<data>/../ferplus`
    (the layout of ../shared/data), or None."""
    data = Path(data)
    for cand in (data / "ferplus", data.parent / "ferplus"):
        if cand.is_dir() and any(cand.glob("*.csv")):
            return cand
    return None


def read_votes(folder: str | Path) -> dict[str, np.ndarray]:
    """Every `*.csv` in folder: {file relative to the FER2013 folder: votes (10,) int64}."""
    out: dict[str, np.ndarray] = {}
    for path in sorted(Path(folder).glob("*.csv")):
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("file", *VOTE_COLUMNS) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: not a FER+ votes file (no column {missing[0]!r})")
            for line, row in enumerate(reader, start=2):
                try:
                    out[row["file"]] = np.array([int(row[c]) for c in VOTE_COLUMNS], np.int64)
                except (TypeError, ValueError):
                    raise ValueError(f"{path}:{line}: vote counts must be whole numbers, got "
                                     f"{[row.get(c) for c in VOTE_COLUMNS]}") from None
    return out


def votes_for(paths: list[str], root: str | Path, table: dict[str, np.ndarray]) -> np.ndarray:
    """Votes (N, 10) int64 for images at paths under root; rows of -1 where the table has
    none (an image FER+ never saw, e.g. a user's own)."""
    root = Path(root)
    out = np.full((len(paths), len(VOTE_COLUMNS)), -1, np.int64)
    for i, p in enumerate(paths):
        try:
            key = Path(p).relative_to(root).as_posix()
        except ValueError:
            continue
        if key in table:
            out[i] = table[key]
    return out


def distribution(votes: np.ndarray) -> np.ndarray:
    """The seven emotions' vote shares (N, 7) float32 in EMOTIONS order (contempt and
    unknown votes dropped, the rest renormalised); rows of zeros where no emotion vote is
    left (not a face, or no votes known)."""
    v = np.clip(np.asarray(votes, np.float64)[:, EMOTION_COLUMNS], 0, None)
    total = v.sum(1, keepdims=True)
    return np.divide(v, total, out=np.zeros_like(v), where=total > 0).astype(np.float32)


def majority(votes: np.ndarray) -> np.ndarray:
    """FER+ majority label (N,) int64 in EMOTIONS order, NO_LABEL where the most-voted of the
    ten columns is tied, or is contempt, unknown or not-a-face (as the held-out figures in
    the README count it)."""
    v = np.asarray(votes, np.int64)
    top = v.max(1, keepdims=True)
    unique = (v == top).sum(1) == 1
    col = v.argmax(1)
    to_emotion = np.full(len(VOTE_COLUMNS), NO_LABEL, np.int64)
    to_emotion[EMOTION_COLUMNS] = np.arange(len(EMOTIONS))
    out = to_emotion[col]
    out[~unique | (top[:, 0] <= 0)] = NO_LABEL
    return out


def targets(votes: np.ndarray, labels: np.ndarray, mix: float = 0.0,
            mix_classes: Sequence[str] | None = None) -> np.ndarray:
    """Training targets (N, 7) float32: (1 - mix) * the vote distribution + mix * one-hot of
    FER2013's own label (only for faces FER2013 labels one of `mix_classes`, where given);
    rows of zeros where the image has no vote distribution."""
    dist = distribution(votes)
    has = dist.sum(1) > 0
    labels = np.asarray(labels, np.int64)
    onehot = np.eye(len(EMOTIONS), dtype=np.float32)[labels]
    w = np.full((len(labels), 1), mix, np.float32)
    if mix_classes is not None:
        w[~np.isin(labels, [EMOTIONS.index(c) for c in mix_classes])] = 0.0
    out = (1 - w) * dist + w * onehot
    out[~has] = 0.0
    return out.astype(np.float32)
