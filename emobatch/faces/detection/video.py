"""A per-video detection schedule: the full MTCNN only every few frames, O-Net in between.

Full detection (P-, R- and O-Net over an image pyramid) dominates the cost of a video.
Faces move little between consecutive frames, so between full detections each face of the
previous frame is re-measured with MTCNN's last stage alone (O-Net on a region around its
predicted position: far cheaper than the cascade), which also gives fresh landmarks for alignment; a face O-Net
loses is looked for with the whole cascade in a small window around it. Full detection runs
every `detect_every` frames (to pick up new faces), after a face is lost for good, and on scene
cuts; it may run on a downscaled frame, and then every `full_res_every`-th one runs at full
resolution to find the faces too small for the downscaled pass.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from .detector import Detector
from ..state_json import faces_from_state, faces_state
from ..boxes import iou_matrix
from ...types import FaceBatch


class VideoDetector:
    """Stage for one video: frame -> FaceBatch, using `Detector.detect` and `Detector.refine`."""

    def __init__(self, detector: Detector, detect_every: int = 1, detect_scale: float = 1.0,
                 full_res_every: int = 0, refine_score: float = 0.5,
                 cut_threshold: float = 0.5, max_batch: int = 1) -> None:
        if detect_every < 1 or not 0 < detect_scale <= 1 or full_res_every < 0:
            raise ValueError("need detect_every >= 1, 0 < detect_scale <= 1, full_res_every >= 0")
        self.detector = detector
        self.detect_every = detect_every
        self.detect_scale = detect_scale
        self.full_res_every = full_res_every
        self.refine_score = refine_score
        self.cut_threshold = cut_threshold
        self.max_batch = max(1, max_batch)  # frames per detector call (detect_many)
        self.full_runs = 0
        self.reset()

    @property
    def frames_per_call(self) -> int:
        """Frames worth handing to detect_many at once: several only where it batches them."""
        return self.max_batch if self.detect_every == 1 else 1

    def reset(self) -> None:
        self._prev = FaceBatch.empty()
        self._vel = np.zeros((0, 4), np.float32)
        self._since_full = 0
        self._thumb: np.ndarray | None = None
        self._force = True

    def state_dict(self) -> dict:
        """The schedule's state after the last frame (a checkpoint resumes from it exactly)."""
        return {"prev": faces_state(self._prev), "vel": self._vel.copy(),
                "since_full": self._since_full, "force": self._force, "full_runs": self.full_runs,
                "thumb": None if self._thumb is None else self._thumb.copy(),
                "max_batch": self.max_batch}  # halved by an out-of-memory call, it stays so

    def load_state_dict(self, d: dict) -> None:
        self._prev, self._vel = faces_from_state(d["prev"]), d["vel"]
        self._since_full, self._force = int(d["since_full"]), bool(d["force"])
        self.full_runs, self._thumb = int(d["full_runs"]), d["thumb"]
        self.max_batch = int(d.get("max_batch", self.max_batch))

    def detect(self, image: np.ndarray) -> FaceBatch:
        """image (H, W, 3) uint8 RGB -> faces, boxes in full-frame pixels."""
        cut = self._scene_cut(image)
        if self._force or cut or self._since_full + 1 >= self.detect_every:
            return self._full(image)
        return self._follow(image)

    def detect_many(self, images: Sequence[np.ndarray]) -> list[FaceBatch]:
        """Consecutive frames -> their faces, the same as `detect` frame by frame. Where every
        frame is a full detection (detect_every 1: nothing is followed from one frame to the
        next) the detector sees them together, in calls of at most `max_batch` frames;
        following needs the frame before, so a schedule that follows goes frame by frame."""
        if self.detect_every > 1 or len(images) < 2:
            return [self.detect(i) for i in images]
        found: dict[int, FaceBatch] = {}
        keys = [(self._full_scale(j), i.shape) for j, i in enumerate(images)]
        for key in dict.fromkeys(keys):
            idx = [j for j, k in enumerate(keys) if k == key]
            found.update(zip(idx, self._detect_split([images[j] for j in idx], key[0])))
        out = []
        for j, image in enumerate(images):
            self._scene_cut(image)  # its histogram is part of the state a checkpoint saves
            out.append(self._commit_full(image, found[j]))
        return out

    def _detect_split(self, images: list[np.ndarray], scale: float) -> list[FaceBatch]:
        """detect_batch in calls of at most max_batch frames; a call that runs out of GPU
        memory is split in two, and max_batch stays halved for the rest of the video."""
        if len(images) > self.max_batch:
            n = self.max_batch
            return [f for a in range(0, len(images), n)
                    for f in self._detect_split(images[a:a + n], scale)]
        try:
            return self.detector.detect_batch(images, scale)
        except torch.cuda.OutOfMemoryError:
            if len(images) == 1:
                raise
        # retried only here, after the except block: its traceback held the failed call's
        # tensors (frames, levels, crops) on the GPU
        torch.cuda.empty_cache()
        self.max_batch = len(images) // 2
        return self._detect_split(images, scale)

    def _full_scale(self, ahead: int = 0) -> float:
        """The scale of the full detection `ahead` full detections from now."""
        fine = self.full_res_every and (self.full_runs + ahead) % self.full_res_every == 0
        return 1.0 if fine else self.detect_scale

    def _full(self, image: np.ndarray) -> FaceBatch:
        return self._commit_full(image, self.detector.detect(image, self._full_scale()))

    def _commit_full(self, image: np.ndarray, faces: FaceBatch) -> FaceBatch:
        """The schedule's bookkeeping after a full detection found `faces` on `image`."""
        self.full_runs += 1
        faces = FaceBatch.concat([faces, self._still_followed(image, faces)])
        self._vel = self._carry_velocity(faces)
        self._prev, self._since_full, self._force = faces, 0, False
        return faces

    def _carry_velocity(self, faces: FaceBatch) -> np.ndarray:
        """Per-frame box motion (n, 4) of faces that were also in the last frame (matched by
        IoU with their predicted boxes), zero for new ones: a fast face (~1/3 of its width a
        frame) falls out of O-Net's view on the next frame without it."""
        vel = np.zeros((len(faces), 4), np.float32)
        if len(faces) == 0 or len(self._prev) == 0:
            return vel
        iou = iou_matrix(faces.xyxy, self._prev.xyxy + self._vel)
        j = iou.argmax(1)
        ok = iou[np.arange(len(faces)), j] >= 0.3
        vel[ok] = faces.xyxy[ok] - self._prev.xyxy[j[ok]]
        return vel

    def _still_followed(self, image: np.ndarray, found: FaceBatch) -> FaceBatch:
        """Faces being followed that the full detector did not report this time but O-Net
        still confirms. MTCNN's pyramid misses a face now and then (near its thresholds, or
        on the downscaled frame); dropping it until the next full pass would lose frames."""
        if len(self._prev) == 0 or self.detect_every == 1:  # exhaustive stays pure MTCNN
            return FaceBatch.empty()
        followed, _ = self.detector.refine(image, self._prev.xyxy + self._vel,
                                           min_score=self.refine_score)
        if len(followed) == 0 or len(found) == 0:
            return followed
        return followed[np.flatnonzero(iou_matrix(followed.xyxy, found.xyxy).max(1) < 0.3)]

    def _follow(self, image: np.ndarray) -> FaceBatch:
        self._since_full += 1
        pred = self._prev.xyxy + self._vel
        faces, idx = self.detector.refine(image, pred, min_score=self.refine_score)
        lost = np.setdiff1d(np.arange(len(pred)), idx)
        if len(lost):
            faces, idx = self._search_lost(image, pred, lost, faces, idx)
        if len(idx) < len(self._prev):
            self._force = True  # a face is still lost: look again properly on the next frame
        self._vel = (faces.xyxy - self._prev.xyxy[idx]).astype(np.float32)
        self._prev = faces
        return faces

    def _search_lost(self, image: np.ndarray, pred: np.ndarray, lost: np.ndarray,
                     faces: FaceBatch, idx: np.ndarray) -> tuple[FaceBatch, np.ndarray]:
        """Faces O-Net lost, looked for with the whole cascade in a window around each; the
        ones found that are not a face already followed join `faces` (order kept by index)."""
        found, fidx = self.detector.search(image, pred[lost], min_score=self.refine_score)
        if len(found) and len(faces):
            new = iou_matrix(found.xyxy, faces.xyxy).max(1) < 0.3
            found, fidx = found[np.flatnonzero(new)], fidx[new]
        if len(found) == 0:
            return faces, idx
        all_idx = np.concatenate([idx, lost[fidx]])
        order = np.argsort(all_idx, kind="stable")
        return FaceBatch.concat([faces, found])[order], all_idx[order]

    def _scene_cut(self, image: np.ndarray) -> bool:
        """L1 distance between 32-bin gray histograms of this and the last frame above the
        threshold (0..2). Histograms ignore motion and zoom (a fast zoom stays far below the
        threshold, real cuts far above it: docs/experiments.md), unlike pixel differences."""
        # every 4th pixel of every 4th row: the same histogram for 1/16 of the work (OpenCV's
        # nearest-neighbour resize picks them faster than numpy's strided copy)
        h, w = image.shape[:2]
        small = cv2.resize(image, ((w + 3) // 4, (h + 3) // 4), interpolation=cv2.INTER_NEAREST)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        hist = cv2.calcHist([gray], [0], None, [32], [0, 256]).ravel()
        hist /= max(hist.sum(), 1.0)
        prev, self._thumb = self._thumb, hist
        return prev is not None and float(np.abs(hist - prev).sum()) > self.cut_threshold
