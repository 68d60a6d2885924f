"""Core data types: Frame, FaceBatch and the emotion label order."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013's label order (the CSV's 0..6); every probability array uses it."""


@dataclass
class Frame:
    """One decoded picture: a video frame or a still image.

    image: (H, W, 3) uint8 RGB. t_sec is None for stills.
    """

    image: np.ndarray
    source: Path
    index: int = 0
    t_sec: float | None = None


def _empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


# each array's shape after its first side (the faces): exact, or how many sides of any size
_SHAPES: dict[str, tuple[int, ...] | int] = {
    "xyxy": (4,), "score": (), "landmarks": (5, 2), "crops": 2, "probs": 1, "probs_raw": 1,
    "track": (), "classified": ()}


@dataclass
class FaceBatch:
    """All faces of one frame as parallel arrays (n may be 0; never None).

    xyxy (n, 4) float32 pixels of the original frame; score (n,) float32;
    landmarks (n, 5, 2) float32 (left eye, right eye, nose, mouth left, mouth right);
    crops (n, S, S) uint8 aligned faces (S: the classifier's input side, 48 by default);
    probs (n, 7) float32 in EMOTIONS order; probs_raw (n, 7) before smoothing; track (n,)
    int64 (-1 = untracked); classified (n,) bool: False where a video face's probabilities
    were carried from its track's last classified frame
    (emobatch.faces.tracking.classify_schedule), None = all classified.
    """

    xyxy: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.float32))
    score: np.ndarray = field(default_factory=lambda: _empty((0,), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: _empty((0, 5, 2), np.float32))
    crops: np.ndarray | None = None
    probs: np.ndarray | None = None
    probs_raw: np.ndarray | None = None
    track: np.ndarray | None = None
    classified: np.ndarray | None = None

    def __post_init__(self) -> None:
        """ValueError unless the arrays are parallel and of the shapes above (a stage that
        drops or reorders faces in one array only is caught where it builds the batch)."""
        n = len(self.xyxy)
        for name, trailing in _SHAPES.items():
            a = getattr(self, name)
            if a is None:
                continue
            ok = (a.shape == (n, *trailing) if isinstance(trailing, tuple)
                  else a.ndim == 1 + trailing and a.shape[0] == n)
            if not ok:
                raise ValueError(f"FaceBatch.{name} has shape {a.shape}: not that of {n} faces "
                                 f"(see FaceBatch's shapes)")

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls) -> "FaceBatch":
        return cls()

    def with_(self, **changes) -> "FaceBatch":
        """A copy with some fields replaced (stages never mutate their input)."""
        return replace(self, **changes)

    @classmethod
    def concat(cls, batches: "list[FaceBatch]") -> "FaceBatch":
        """Faces of several batches of the same frame, in order (detection fields only)."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        return cls(np.concatenate([b.xyxy for b in batches]),
                   np.concatenate([b.score for b in batches]),
                   np.concatenate([b.landmarks for b in batches]))

    def __getitem__(self, idx) -> "FaceBatch":
        """Select faces by index array or boolean mask; keeps the arrays parallel."""
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]
        return FaceBatch(self.xyxy[idx], self.score[idx], self.landmarks[idx], pick(self.crops),
                         pick(self.probs), pick(self.probs_raw), pick(self.track),
                         pick(self.classified))
