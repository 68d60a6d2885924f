"""Face detection: MTCNN with facenet-pytorch's weights (they ship in its wheel), wrapped once
so that "no face" is an empty FaceBatch, never None."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from ...types import FaceBatch
from .cascade import CascadeMTCNN, decode_onet, nms, square
from .nets import load_nets
from ..device import CPU
from .runtimes import NetRuntime, net_runtime
from ..boxes import iou_matrix


class Detector:
    """Stage: image -> FaceBatch with boxes, scores and 5 landmarks."""

    def __init__(self, min_face_size: int = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 min_score: float = 0.9, device: torch.device = CPU,
                 exact: bool = False, backend: str = "auto", amp: str = "auto",
                 runtime: NetRuntime | None = None, crops: str = "auto") -> None:
        """exact=True runs facenet-pytorch's own `MTCNN.detect` (the reference the benchmarks
        compare against); the default runs the same cascade faster
        (emobatch.faces.detection.cascade), its
        networks as `runtime` says (a run's plan resolved it), else through `backend`
        (emobatch.faces.detection.runtimes.NET_BACKENDS; auto: openvino on a CPU where it is
        installed, else torch), OpenVINO in bf16 where `amp` says so. `crops`: where R- and
        O-Net's crops are cut: 'host' (OpenCV), 'device' (where torch runs the networks,
        emobatch.faces.detection.crops), 'auto': the device on a GPU."""
        self.min_score = min_score
        self.min_face_size = min_face_size
        # the same cascade on every device (facenet-pytorch's own path found fewer faces on a
        # GPU than this one on the CPU); `exact` is the benchmarks' reference only
        self.exact = exact
        self.reference = None
        if self.exact:
            from facenet_pytorch import MTCNN  # heavy import (torchvision): only when asked

            self.reference = MTCNN(keep_all=True, min_face_size=min_face_size,
                                   thresholds=list(thresholds), post_process=False,
                                   select_largest=False, device=device)
        runtime = runtime or net_runtime(backend, device, amp)
        self.backend = runtime.name
        self.cascade = CascadeMTCNN(*load_nets(device), tuple(thresholds),
                                    backend=runtime.backend, precision=runtime.precision,
                                    crop_device=_crop_device(crops, device, runtime))

    def detect(self, image: np.ndarray, scale: float = 1.0) -> FaceBatch:
        """image (H, W, 3) uint8 RGB -> FaceBatch (boxes clipped to the frame), best first.

        scale < 1 runs the detector on a downscaled copy (faster: MTCNN's cost grows with
        pixels) and maps boxes back to full-frame pixels; faces smaller than
        max(min_face_size, 12 / scale) full-frame pixels are then missed. A downscaled pass
        only proposes: each face it returns (at O-Net's own threshold, below min_score) is
        re-measured by O-Net on the full frame (refine), whose box, landmarks and score count.
        Small faces score low on the downscaled frame but as usual at full resolution.
        """
        return self.detect_batch([image], scale)[0]

    def detect_batch(self, images: Sequence[np.ndarray], scale: float = 1.0) -> list[FaceBatch]:
        """Images of one size (N of (H, W, 3) uint8 RGB), each detected as `detect` would
        alone, the networks' calls shared by all of them (emobatch.faces.detection.cascade)."""
        if not images:
            return []
        smalls = list(images)
        if scale != 1.0:
            smalls = [cv2.resize(i, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                      for i in images]
        # the smallest face in the small frame; MTCNN's P-Net cannot see below 12 px
        min_face = max(12, round(self.min_face_size * scale))
        if self.exact:
            found = [self._reference_detect(s, min_face) for s in smalls]
        else:
            found = [(f[:, :4], f[:, 4], pts)
                     for f, pts in self.cascade.detect_batch(smalls, min_face)]
        faces = [_to_frame(found_i, small.shape, image.shape)
                 for found_i, small, image in zip(found, smalls, images)]
        if scale >= 1:
            return [self._finish(f, i.shape[:2], self.min_score) for f, i in zip(faces, images)]
        faces = [self._finish(f, i.shape[:2], 0.0) for f, i in zip(faces, images)]
        fine = self.refine_batch(images, [f.xyxy for f in faces])
        return [self._finish(f, i.shape[:2], self.min_score) for (f, _), i in zip(fine, images)]

    def _reference_detect(self, image: np.ndarray, min_face: int
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """facenet-pytorch's own MTCNN.detect -> (boxes (n, 4), scores (n,), landmarks)."""
        self.reference.min_face_size = min_face
        with torch.inference_mode():
            boxes, probs, points = self.reference.detect(image, landmarks=True)
        if boxes is None:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2))
        return boxes, probs, points

    def refine(self, image: np.ndarray, boxes: np.ndarray, expand: float = 1.0,
               min_score: float | None = None) -> tuple[FaceBatch, np.ndarray]:
        """Run only MTCNN's last stage (O-Net) on given regions of the full frame.

        boxes (n, 4) xyxy: where faces are expected (e.g. last frame's faces). Each region is
        made square, enlarged by `expand`, cropped (zero-padded at the frame edges) and
        resampled to 48x48; O-Net returns a corrected box, 5 landmarks and a face score.
        Costs ~1 ms per face instead of a full-frame pyramid. Returns the faces that pass
        min_score (default: the detector's) and survive NMS, in input order, and their
        indices (k,) into `boxes`.
        """
        return self.refine_batch([image], [boxes], expand, min_score)[0]

    def refine_batch(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                     expand: float = 1.0, min_score: float | None = None
                     ) -> list[tuple[FaceBatch, np.ndarray]]:
        """`refine` of each image with its boxes, O-Net called once for all of them."""
        squares = [square(np.asarray(b, np.float32)[:, :4], expand).round() if len(b)
                   else np.zeros((0, 4), np.float32) for b in boxes]
        crops = [np.stack([_crop_resize(i, b, 48) for b in sq.astype(int)])
                 for i, sq in zip(images, squares) if len(sq)]
        if not crops:
            return [(FaceBatch.empty(), np.zeros(0, np.int64)) for _ in images]
        reg, pts, prob = self.cascade.onet(np.concatenate(crops) if len(crops) > 1 else crops[0])
        out, start = [], 0
        for image, sq in zip(images, squares):
            k = slice(start, start + len(sq))
            start += len(sq)
            out.append(self._refined(image, sq, reg[k], pts[k], prob[k, 1], min_score))
        return out

    def _refined(self, image: np.ndarray, sq: np.ndarray, reg: np.ndarray, pts: np.ndarray,
                 score: np.ndarray, min_score: float | None) -> tuple[FaceBatch, np.ndarray]:
        """O-Net's outputs for one image's squares -> the faces kept and their indices."""
        if len(sq) == 0:
            return FaceBatch.empty(), np.zeros(0, np.int64)
        xyxy, lm = decode_onet(sq, reg, pts)
        faces = FaceBatch(xyxy.astype(np.float32), score.astype(np.float32), lm.astype(np.float32))
        h, w = image.shape[:2]
        faces = faces.with_(xyxy=_clip(faces.xyxy, w, h))
        thr = self.min_score if min_score is None else min_score
        ok = np.flatnonzero((faces.score >= thr) & _valid(faces.xyxy))
        idx = np.sort(ok[nms(faces.xyxy[ok], faces.score[ok], 0.5)])
        return faces[idx], idx

    def search(self, image: np.ndarray, boxes: np.ndarray, window: float = 2.5,
               min_score: float | None = None) -> tuple[FaceBatch, np.ndarray]:
        """Look for each expected face (boxes (n, 4) xyxy) with the whole cascade, but only in
        a square window `window` times its size around it and for faces of at least half its
        size: a few ms, where O-Net alone loses a face that moved or turned too much.
        Returns the face found closest to each box (IoU >= 0.1) and the indices of the
        boxes that found one."""
        found, idx = [], []
        h, w = image.shape[:2]
        thr = self.min_score if min_score is None else min_score
        for i, win in enumerate(square(np.asarray(boxes, np.float32)[:, :4], window).round().astype(int)):
            x1, y1, x2, y2 = max(win[0], 0), max(win[1], 0), min(win[2], w), min(win[3], h)
            size = float(np.max(boxes[i, 2:] - boxes[i, :2]))
            if x2 - x1 < 12 or y2 - y1 < 12 or size < 12:
                continue
            got, pts = self.cascade.detect(image[y1:y2, x1:x2], max(12.0, size / 2))
            got = got[got[:, 4] >= thr]
            if len(got) == 0:
                continue
            xyxy = got[:, :4] + [x1, y1, x1, y1]
            iou = iou_matrix(boxes[i:i + 1], xyxy)[0]
            j = int(iou.argmax())
            if iou[j] >= 0.1:
                found.append(FaceBatch(xyxy[j:j + 1].astype(np.float32), got[j:j + 1, 4].astype(np.float32),
                                       (pts[j:j + 1] + [x1, y1]).astype(np.float32)))
                idx.append(i)
        if not found:
            return FaceBatch.empty(), np.zeros(0, np.int64)
        faces = FaceBatch.concat(found)
        return faces.with_(xyxy=_clip(faces.xyxy, w, h)), np.asarray(idx, np.int64)

    def _finish(self, faces: FaceBatch, hw: tuple[int, int], min_score: float) -> FaceBatch:
        """Clip boxes to the frame; keep scored, non-degenerate faces, best first."""
        h, w = hw
        faces = faces.with_(xyxy=_clip(faces.xyxy, w, h))
        keep = (faces.score >= min_score) & _valid(faces.xyxy)
        idx = np.flatnonzero(keep)
        return faces[idx[np.argsort(-faces.score[idx], kind="stable")]]


def _crop_device(crops: str, device: torch.device, runtime: NetRuntime
                 ) -> torch.device | None:
    """Where the cascade cuts its crops: on the networks' device where torch runs them and
    `crops` says so ('auto': on a GPU), else None (the host)."""
    if crops not in ("auto", "host", "device"):
        raise ValueError(f"crops must be auto, host or device, not {crops!r}")
    on_device = crops == "device" or (crops == "auto" and device.type == "cuda")
    return device if on_device and runtime.backend == "torch" else None


def _to_frame(found: tuple[np.ndarray, np.ndarray, np.ndarray], small: tuple[int, ...],
              full: tuple[int, ...]) -> FaceBatch:
    """(boxes, scores, landmarks) found on an image of shape `small` -> a FaceBatch in the
    pixels of its full-size original of shape `full`."""
    boxes, probs, points = found
    sx, sy = full[1] / small[1], full[0] / small[0]
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4) * [sx, sy, sx, sy]
    lm = np.asarray(points, np.float32).reshape(-1, 5, 2) * [sx, sy]
    return FaceBatch(xyxy.astype(np.float32), np.asarray(probs, np.float32).reshape(-1),
                     lm.astype(np.float32))


def _clip(xyxy: np.ndarray, w: int, h: int) -> np.ndarray:
    out = xyxy.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def _valid(xyxy: np.ndarray) -> np.ndarray:
    return (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])


def _crop_resize(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Crop box (integer xyxy, may exceed the frame: zero padding) and resize to size x size."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    out = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if cx2 > cx1 and cy2 > cy1:
        out[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1] = image[cy1:cy2, cx1:cx2]
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
