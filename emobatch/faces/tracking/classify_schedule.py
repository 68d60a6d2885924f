"""Which faces of a video frame the classifier sees: a tracked face every Nth frame.

The classifier is the largest single cost of a video once detection is scheduled
(emobatch.faces.detection.video), and consecutive frames of one face differ little. So a face is
classified when its track starts (or comes back after missing a frame) and then every
`every`-th processed frame; in between, its track's last classification is carried (sample
and hold) and per-track smoothing (emobatch.faces.tracking.smoother) blends it with the fresh
ones, as it
already blends neighbouring frames. Untracked faces (track -1, or `--no-track`) are always
classified. The timeline's `classified` column says which rows the classifier saw.

It costs emotion agreement with an every-frame run (fewer independent looks per smoothing
window), so the `balanced` preset asks for it only where the classifier is expensive:
`resolve_classify_every` gives 2 on CPUs without AVX-512, 1 elsewhere: with AVX2 kernels the
int8 classifier is a large share of a frame and every 2nd frame saved time at a small cost in
agreement, while on AVX-512 and AMX CPUs it saved no time beyond the noise
(docs/experiments.md).

The schedule depends only on track ids and the frame order, never on the probabilities, so a
whole buffer of frames is picked first and classified in one batch (FacePipeline._finish),
and an interrupted video resumed from a checkpoint picks exactly the same faces.
"""
from __future__ import annotations

import numpy as np
import torch

from ...types import FaceBatch
from ..device import CPU


def resolve_classify_every(every: int, device: torch.device = CPU) -> int:
    """A setting's classify_every -> frames between classifications of a tracked face:
    0 (auto) gives 2 on a CPU whose widest ISA is AVX2 or less (emobatch.faces.device.cpu_isa),
    else 1; other values stay."""
    if every:
        return every
    from ..device import cpu_isa

    return 2 if device.type == "cpu" and cpu_isa() in ("generic", "avx2") else 1


class ClassifySchedule:
    """Stage for one video: `pick` the faces to classify on each frame, then `fill` every face's
    probabilities from those classified and the ones its track carries.

    Call `pick` on the frames in order and `fill` on the same frames in the same order (all
    picks of a buffer may come before its fills). Only the tracks of the last frame are held,
    so memory stays flat on long videos.
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, not {every}")
        self.every = every
        self.reset()

    def reset(self) -> None:
        self._age: dict[int, int] = {}  # track -> processed frames since it was classified
        self._held: dict[int, np.ndarray] = {}  # track -> its last probabilities (C,) float32

    def state_dict(self) -> dict:
        """The tracks' ages and carried probabilities (a checkpoint resumes from it exactly)."""
        return {"age": [[t, a] for t, a in self._age.items()],
                "held": [[t, p.copy()] for t, p in self._held.items()]}

    def load_state_dict(self, d: dict) -> None:
        self._age = {int(t): int(a) for t, a in d["age"]}
        self._held = {int(t): np.asarray(p, np.float32) for t, p in d["held"]}

    def pick(self, faces: FaceBatch, t_sec: float | None) -> np.ndarray:
        """Mask (n,) bool of this frame's faces the classifier must see. A frame without a time
        (t_sec None) has no tracks to carry (its ids are just face indices): every face."""
        n = len(faces)
        if self.every == 1 or faces.track is None or t_sec is None or n == 0:
            self._age = {}
            return np.ones(n, bool)
        tracks = faces.track.tolist()
        mask = np.array([t < 0 or self._age.get(t, self.every) + 1 >= self.every
                         for t in tracks], bool)
        self._age = {t: 0 if m else self._age[t] + 1 for t, m in zip(tracks, mask) if t >= 0}
        return mask

    def fill(self, faces: FaceBatch, mask: np.ndarray, probs: np.ndarray) -> FaceBatch:
        """faces with probs = probs_raw (n, C) and classified = mask: the picked faces get
        `probs` (mask.sum(), C) in order, the others their track's last probabilities."""
        out = np.empty((len(faces), probs.shape[1]), np.float32)
        out[mask] = probs
        if not mask.all():
            for i in np.flatnonzero(~mask):
                out[i] = self._held[int(faces.track[i])]
        if self.every > 1:
            tracks = [] if faces.track is None else faces.track.tolist()
            self._held = {t: out[i] for i, t in enumerate(tracks) if t >= 0}
        return faces.with_(probs=out, probs_raw=out, classified=mask)
