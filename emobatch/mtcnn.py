"""MTCNN's cascade on one image, driven for speed on CPU.

The algorithm, the networks and their weights are facenet-pytorch's (P-, R- and O-Net from
its wheel; `facenet_pytorch.models.utils.detect_face` step for step: pyramid, thresholds,
NMS, box regression). What differs is only how the work is done, because on a CPU
facenet-pytorch spends most of a frame outside the convolutions:
- the networks run channels-last: PyTorch's max-pooling on channels-first tensors is ~4x
  slower than on channels-last ones, and was ~40% of a 1080p detection;
- the R-/O-Net candidate crops (hundreds a frame) are area-resampled by OpenCV instead of one
  `interpolate(mode="area")` call each (~90 us of overhead a call);
- each pyramid level is area-resampled by OpenCV from the uint8 level before it, not from the
  full float frame (at 1080p: ~60 ms a frame in resampling alone, 12 levels each reading
  the whole frame).
So the networks see inputs that differ by about a grey level from facenet-pytorch's; the faces
found are the same up to MTCNN's own jitter: `tests/test_mtcnn.py` checks boxes and scores on
photos, and benchmarks/video_throughput.py measures recall against facenet-pytorch's MTCNN.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    batched_nms_numpy, bbreg, generateBoundingBox, pad, rerec)
from torch import nn
from torchvision.ops import nms


class CascadeMTCNN:
    """image (H, W, 3) uint8 RGB -> (boxes (n, 5) x1 y1 x2 y2 score, landmarks (n, 5, 2))."""

    def __init__(self, pnet: nn.Module, rnet: nn.Module, onet: nn.Module,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709) -> None:
        self.pnet, self.rnet, self.onet = (
            net.eval().to(memory_format=torch.channels_last) for net in (pnet, rnet, onet))
        self.thresholds = thresholds
        self.factor = factor
        self.device = next(self.pnet.parameters()).device

    @torch.inference_mode()
    def detect(self, image: np.ndarray, min_face_size: float) -> tuple[np.ndarray, np.ndarray]:
        img = np.ascontiguousarray(image, dtype=np.float32)
        boxes = self._proposals(np.ascontiguousarray(image), min_face_size)
        if len(boxes):
            boxes = self._refine_rnet(img, boxes)
        if len(boxes):
            return self._output_onet(img, boxes)
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)

    def _scales(self, h: int, w: int, min_face_size: float) -> list[float]:
        m = 12.0 / min_face_size
        minl, scales, s = min(h, w) * m, [], m
        while minl >= 12:
            scales.append(s)
            s *= self.factor
            minl *= self.factor
        return scales

    def _proposals(self, img: np.ndarray, min_face_size: float) -> torch.Tensor:
        """Stage 1: P-Net over the pyramid of the uint8 image -> candidate squares (k, 5) in
        image pixels."""
        h, w = img.shape[:2]
        found, level = [], img
        for scale in self._scales(h, w, min_face_size):
            # each level from the one before: OpenCV's cost grows with the input's size
            level = cv2.resize(level, (int(w * scale + 1), int(h * scale + 1)),
                               interpolation=cv2.INTER_AREA)
            reg, probs = self.pnet(_to_input(level[None].astype(np.float32)).to(self.device))
            b, _ = generateBoundingBox(reg.contiguous().cpu(), probs[:, 1].cpu(), scale,
                                       self.thresholds[0])
            found.append(b[nms(b[:, :4], b[:, 4], 0.5)])
        if not found:  # image smaller than the smallest face
            return torch.zeros((0, 5))
        boxes = torch.cat(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * bw, boxes[:, 1] + boxes[:, 6] * bh,
                             boxes[:, 2] + boxes[:, 7] * bw, boxes[:, 3] + boxes[:, 8] * bh,
                             boxes[:, 4]], dim=1)
        return rerec(boxes)

    def _refine_rnet(self, img: np.ndarray, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2: R-Net on 24x24 crops -> surviving, regressed squares."""
        crops, boxes = _crops(img, boxes, 24)
        reg, prob = (t.cpu() for t in self.rnet(crops.to(self.device)))
        score = prob[:, 1]
        ok = score > self.thresholds[1]
        boxes = torch.cat([boxes[ok, :4], score[ok, None]], dim=1)
        reg = reg[ok]
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return rerec(bbreg(boxes[keep], reg[keep]))

    def _output_onet(self, img: np.ndarray, boxes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Stage 3: O-Net on 48x48 crops -> final boxes, scores and landmarks."""
        crops, boxes = _crops(img, boxes, 48)
        reg, pts, prob = (t.cpu() for t in self.onet(crops.to(self.device)))
        score = prob[:, 1]
        ok = score > self.thresholds[2]
        boxes = torch.cat([boxes[ok, :4], score[ok, None]], dim=1)
        reg, pts = reg[ok], pts[ok]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        lm = torch.stack([bw * pts[:, :5] + boxes[:, :1] - 1,
                          bh * pts[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = bbreg(boxes, reg)
        keep = batched_nms_numpy(boxes[:, :4], boxes[:, 4],
                                 torch.zeros(len(boxes), dtype=torch.long), 0.7, "Min")
        return boxes[keep].numpy(), lm[keep].numpy()


def _to_input(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) float32 0..255 -> normalised (N, 3, H, W) channels-last tensor."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    return (x - 127.5) * 0.0078125


def _crops(img: np.ndarray, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop each box (clipped to the image, as facenet-pytorch's `pad`) and area-resample it to
    size x size -> (network input (k, 3, size, size), the boxes that had a non-empty crop)."""
    h, w = img.shape[:2]
    y, ey, x, ex = pad(boxes, w, h)
    keep = np.flatnonzero((ey > y - 1) & (ex > x - 1))
    out = np.empty((len(keep), size, size, 3), np.float32)
    for j, k in enumerate(keep):
        out[j] = cv2.resize(img[y[k] - 1:ey[k], x[k] - 1:ex[k]], (size, size),
                            interpolation=cv2.INTER_AREA)
    return _to_input(out), boxes[torch.from_numpy(keep)]
