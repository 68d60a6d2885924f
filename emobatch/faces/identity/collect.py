"""Per-video choice of the frames a track's identity is computed from, and the embeddings
that leave the pipeline (`Identities`).

`TrackSampler` keeps, per live track, the K best aligned crops seen so far (sharp, frontal,
large: `face_quality`); a track unseen for longer than the tracker keeps it is embedded
once (its K crops, averaged) and forgotten, so memory stays flat and the embedder runs K
times a track, not once a frame. Its `state_dict()` holds the live tracks' crops: a
checkpoint resumes it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ...types import FaceBatch
from .embedder import EMBED_DIM, Embedder, aligned_crop, normalize

TOP_K = 3  # crops a track's embedding averages


@dataclass
class Identities:
    """Embeddings of one input's faces: a finished track's (track >= 0, frame -1), or an
    untracked photo face's (track -1, its frame and face index). Arrays of m rows:
    track, frame, face (m,) int64; frames (m,) int64 crops averaged; embedding (m, 128)
    float32 unit vectors."""

    track: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    frame: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    face: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    embedding: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBED_DIM), np.float32))

    def __len__(self) -> int:
        return len(self.track)

    @classmethod
    def of_photo(cls, frame: int, embedding: np.ndarray) -> "Identities":
        """The faces (n,) of one photo frame, embedded one by one."""
        n = len(embedding)
        return cls(np.full(n, -1, np.int64), np.full(n, frame, np.int64),
                   np.arange(n, dtype=np.int64), np.ones(n, np.int64), embedding)


def face_quality(faces: FaceBatch) -> np.ndarray:
    """(n,) how well a face shows who it is: det score x frontality (the nose between the
    eyes) x size (eye distance, full at 40 px) x sharpness (the aligned crop's Laplacian)."""
    lm = faces.landmarks.astype(np.float64)
    eye_d = np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1)
    mid = (lm[:, 0] + lm[:, 1]) / 2
    yaw = np.abs(lm[:, 2, 0] - mid[:, 0]) / np.maximum(eye_d, 1e-6)
    frontal = np.clip(1.0 - 2.0 * yaw, 0.05, 1.0)
    size = np.clip(eye_d / 40.0, 0.05, 1.0)
    sharp = np.ones(len(faces))
    if faces.crops is not None:
        sharp = np.array([min(1.0, 0.2 + cv2.Laplacian(c, cv2.CV_64F).var() / 400.0)
                          for c in faces.crops])
    return faces.score.astype(np.float64) * frontal * size * sharp


class TrackSampler:
    """Stage (one per video): `observe` each tracked frame, `finished` / `drain` the tracks
    done with, as `Identities`."""

    def __init__(self, embedder: Embedder, hold: float, k: int = TOP_K) -> None:
        """hold: seconds a track may go unseen and still come back (the tracker's max_age)."""
        self.embedder, self.hold, self.k = embedder, float(hold), int(k)
        self._tracks: dict[int, dict] = {}  # id -> {"last": t, "q": [..], "crops": [..]}

    def observe(self, image: np.ndarray, faces: FaceBatch, t: float) -> None:
        """image (H, W, 3) uint8 RGB; faces with `track` set."""
        if not len(faces) or faces.track is None:
            return
        quality = face_quality(faces)
        for i in np.flatnonzero(faces.track >= 0):
            tr = self._tracks.setdefault(int(faces.track[i]), {"last": t, "q": [], "crops": []})
            tr["last"] = t
            q = float(quality[i])
            if len(tr["q"]) < self.k or q > min(tr["q"]):
                if len(tr["q"]) >= self.k:  # the worst goes (the earliest of equals)
                    j = int(np.argmin(tr["q"]))
                    del tr["q"][j], tr["crops"][j]
                tr["q"].append(q)
                tr["crops"].append(aligned_crop(image, faces.landmarks[i]))

    def finished(self, t: float) -> Identities:
        """The tracks unseen for longer than `hold` at video time t, embedded and dropped."""
        return self._embed([k for k, tr in self._tracks.items() if t - tr["last"] > self.hold])

    def drain(self) -> Identities:
        """Every track still held (the video ended)."""
        return self._embed(list(self._tracks))

    def _embed(self, ids: list[int]) -> Identities:
        if not ids:
            return Identities()
        ids = sorted(ids)
        emb, frames = [], []
        for k in ids:
            tr = self._tracks.pop(k)
            emb.append(normalize(self.embedder.embed(np.stack(tr["crops"])).mean(0)[None])[0])
            frames.append(len(tr["crops"]))
        n = len(ids)
        return Identities(np.array(ids, np.int64), np.full(n, -1, np.int64),
                          np.full(n, -1, np.int64), np.array(frames, np.int64), np.stack(emb))

    def state_dict(self) -> dict:
        return {"tracks": {str(k): {"last": tr["last"], "q": list(tr["q"]),
                                    "crops": np.stack(tr["crops"])}
                           for k, tr in self._tracks.items()}}

    def load_state_dict(self, d: dict) -> None:
        self._tracks = {int(k): {"last": tr["last"], "q": list(tr["q"]),
                                 "crops": list(tr["crops"])}
                        for k, tr in d["tracks"].items()}
