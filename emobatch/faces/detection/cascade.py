"""MTCNN's cascade on one image, driven for speed on CPU.

The algorithm, the networks and their weights are facenet-pytorch's (P-, R- and O-Net with
the weight files from its wheel; `facenet_pytorch.models.utils.detect_face` step for step:
pyramid, thresholds, NMS, box regression). What differs is only how the work is done, because
on a CPU facenet-pytorch spends most of a frame outside the convolutions:
- the networks run channels-last: PyTorch's max-pooling on channels-first tensors is much
  slower than on channels-last ones, and was a large share of a 1080p detection;
- the R-/O-Net candidate crops (hundreds a frame) are area-resampled by OpenCV instead of one
  `interpolate(mode="area")` call each (each call has a fixed overhead);
- each pyramid level is area-resampled by OpenCV from the uint8 level before it, not from the
  full float frame (12 levels each reading the whole frame).
The figures are in docs/experiments.md ("Figures behind the code").
So the networks see inputs that differ by about a grey level from facenet-pytorch's; the faces
found are the same up to MTCNN's own jitter: `tests/test_mtcnn.py` checks boxes and scores on
photos, and benchmarks/video_throughput.py measures recall against facenet-pytorch's MTCNN.

The networks (emobatch.faces.detection.nets) run through a backend (emobatch.faces.detection.runtimes).
On a GPU, several frames share each network call (`detect_batch`) and the pyramid and crops
are made on the device with OpenCV's own weights (emobatch.faces.detection.crops), so a frame's work
stays there between the networks.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from .crops import crop_windows, resize_crops, resize_level
from .runtimes import NET_BACKENDS, NetRunner, NetSpec


class CascadeMTCNN:
    """image (H, W, 3) uint8 RGB -> (boxes (n, 5) x1 y1 x2 y2 score, landmarks (n, 5, 2))."""

    def __init__(self, pnet: nn.Module, rnet: nn.Module, onet: nn.Module,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, backend: str = "torch", precision: str = "f32",
                 crop_device: torch.device | None = None) -> None:
        """crop_device: build P-Net's pyramid and cut R-/O-Net's crops there, for networks
        that run there (a GPU; emobatch.faces.detection.crops, the frames copied to it once per call);
        None: on the host, by OpenCV."""
        def make(net: nn.Module, size: int | None, dtypes: tuple[str, ...]) -> NetRunner:
            return NET_BACKENDS[backend](NetSpec(net, size, dtypes, precision))

        # the input types each network gets: pyramid levels, R-Net's float crops, O-Net's
        # float crops (full detection) and uint8 ones (following)
        self.pnet, self.rnet = make(pnet, None, ("uint8",)), make(rnet, 24, ("float32",))
        self.onet = make(onet, 48, ("float32", "uint8"))
        self.thresholds = thresholds
        self.factor = factor
        self.crop_device = crop_device

    def detect(self, image: np.ndarray, min_face_size: float) -> tuple[np.ndarray, np.ndarray]:
        """image (H, W, 3) uint8 RGB, faces from `min_face_size` px -> (boxes (n, 5) x1 y1
        x2 y2 score, landmarks (n, 5, 2)): `detect_batch` of one image."""
        return self.detect_batch([image], min_face_size)[0]

    def detect_batch(self, images: Sequence[np.ndarray], min_face_size: float
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """N images (H, W, 3) uint8 RGB of one size -> per image (boxes (n, 5), landmarks
        (n, 5, 2)), each as `detect` would find alone: P-Net runs over all images' pyramid
        level in one call per level, R- and O-Net over all images' crops in one call each
        (on a GPU a call's cost is mostly its launch, not its size)."""
        if not images:
            return []
        imgs = [np.ascontiguousarray(i) for i in images]
        if len({i.shape for i in imgs}) > 1:
            raise ValueError("detect_batch needs images of one size")
        frames = (None if self.crop_device is None else
                  [torch.from_numpy(i).to(self.crop_device).float() for i in imgs])
        boxes = self._refine_rnet(imgs, frames, self._proposals(imgs, frames, min_face_size))
        return self._output_onet(imgs, frames, boxes)

    def _scales(self, h: int, w: int, min_face_size: float) -> list[float]:
        m = 12.0 / min_face_size
        minl, scales, s = min(h, w) * m, [], m
        while minl >= 12:
            scales.append(s)
            s *= self.factor
            minl *= self.factor
        return scales

    def _proposals(self, imgs: list[np.ndarray], frames: list[torch.Tensor] | None,
                   min_face_size: float) -> list[np.ndarray]:
        """Stage 1: P-Net over the pyramid of each uint8 image (built on the crops' device
        where `frames` are there) -> its candidate squares (k, 5) in image pixels."""
        h, w = imgs[0].shape[:2]
        found: list[list[np.ndarray]] = [[] for _ in imgs]
        levels = imgs if frames is None else frames
        for scale in self._scales(h, w, min_face_size):
            size = (int(w * scale + 1), int(h * scale + 1))
            # each level from the one before: OpenCV's cost grows with the input's size
            if frames is None:
                levels = [cv2.resize(lv, size, interpolation=cv2.INTER_AREA) for lv in levels]
            elif size[0] > w or size[1] > h:
                # a first level enlarged (faces from 12 px): OpenCV resizes uint8 up in fixed
                # point, which resize_level does not imitate; made here, then sent over
                levels = [torch.from_numpy(cv2.resize(im, size, interpolation=cv2.INTER_AREA))
                          .to(frames[0].device).float() for im in imgs]
            else:
                levels = [resize_level(lv, size[1], size[0]) for lv in levels]
            reg, probs = self.pnet(_stack(levels))
            for k, f in enumerate(found):
                b = _window_boxes(reg[k], probs[k, 1], scale, self.thresholds[0])
                f.append(b[nms(b[:, :4], b[:, 4], 0.5)])
        return [_merge_levels(f) for f in found]

    def _refine_rnet(self, imgs: list[np.ndarray], frames: list[torch.Tensor] | None,
                     boxes: list[np.ndarray]) -> list[np.ndarray]:
        """Stage 2: R-Net on 24x24 crops -> each image's surviving, regressed squares."""
        out = []
        for (reg, prob), b in self._run_on_crops(self.rnet, imgs, frames, boxes, 24, (4, 2)):
            ok = prob[:, 1] > self.thresholds[1]
            b = np.concatenate([b[ok, :4], prob[ok, 1:2]], 1)
            keep = nms(b[:, :4], b[:, 4], 0.7)
            out.append(square(bbreg(b[keep], reg[ok][keep])))
        return out

    def _output_onet(self, imgs: list[np.ndarray], frames: list[torch.Tensor] | None,
                     boxes: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stage 3: O-Net on 48x48 crops -> each image's final boxes, scores and landmarks."""
        out = []
        for (reg, pts, prob), b in self._run_on_crops(self.onet, imgs, frames, boxes, 48,
                                                      (4, 10, 2)):
            ok = prob[:, 1] > self.thresholds[2]
            b = np.concatenate([b[ok, :4], prob[ok, 1:2]], 1)
            b, lm = decode_onet(b, reg[ok], pts[ok])
            keep = nms(b[:, :4], b[:, 4], 0.7, mode="min")
            out.append((b[keep], lm[keep]))
        return out

    def _run_on_crops(self, net: NetRunner, imgs: list[np.ndarray],
                      frames: list[torch.Tensor] | None, boxes: list[np.ndarray], size: int,
                      widths: tuple[int, ...]) -> list[tuple[list[np.ndarray], np.ndarray]]:
        """Each image's boxes cropped at size x size, all images' crops through `net` in one
        call -> per image (the net's outputs for its crops, the boxes that had a crop).
        `widths`: the outputs' columns, for the empty outputs when no image has a crop (no
        call then)."""
        if frames is None:
            cut = [_crops(img, b, size) for img, b in zip(imgs, boxes)]
            crops, kept = [c for c, _ in cut], [b for _, b in cut]
            batch = crops[0] if len(crops) == 1 else np.concatenate(crops)
        else:
            wins = [crop_windows(b, *img.shape[:2]) for img, b in zip(imgs, boxes)]
            kept = [b[k] for b, (_, k) in zip(boxes, wins)]
            batch = torch.cat([resize_crops(f, w, size) for f, (w, _) in zip(frames, wins)])
        counts = [len(b) for b in kept]
        if sum(counts) == 0:
            return [([np.zeros((0, n), np.float32) for n in widths], b) for b in kept]
        res = net(batch)
        bounds = np.cumsum([0] + counts)
        return [([o[a:z] for o in res], b) for b, a, z in zip(kept, bounds[:-1], bounds[1:])]


def _stack(levels: list) -> np.ndarray | torch.Tensor:
    """Same-size images (numpy on the host, tensors on a device) -> one batch (N, H, W, 3);
    a single host image is a view, not a copy."""
    if isinstance(levels[0], torch.Tensor):
        return torch.stack(levels)
    return levels[0][None] if len(levels) == 1 else np.stack(levels)


def _merge_levels(found: list[np.ndarray]) -> np.ndarray:
    """One image's P-Net windows of all levels -> its candidate squares (k, 5)."""
    if not found:  # image smaller than the smallest face
        return np.zeros((0, 5), np.float32)
    boxes = np.concatenate(found)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    wh = np.tile(boxes[:, 2:4] - boxes[:, :2], 2)
    return square(np.concatenate([boxes[:, :4] + boxes[:, 5:9] * wh, boxes[:, 4:5]], 1))


def _window_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, thresh: float) -> np.ndarray:
    """P-Net's windows scoring >= thresh -> (k, 9): x1 y1 x2 y2 in image pixels, score, the
    4 box offsets. reg (4, h, w), prob (h, w); windows are 12 px at stride 2 on the level."""
    ys, xs = np.nonzero(prob >= thresh)
    xy = np.stack([xs, ys], 1).astype(np.float32)
    q1 = np.floor((2 * xy + 1) / scale)
    q2 = np.floor((2 * xy + 12) / scale)
    return np.concatenate([q1, q2, prob[ys, xs, None], reg[:, ys, xs].T], 1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
        mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression of boxes (n, 4) xyxy -> indices kept (k,), best first.

    mode 'union': overlap is IoU with areas w * h (torchvision's nms, used by
    facenet-pytorch's first two stages; OpenCV's NMSBoxes computes the same, in C++);
    'min': intersection over the smaller box with areas (w + 1) * (h + 1) (its final
    stage). A box overlapping a kept one by more than threshold is dropped.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if mode == "union":
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], 1)
        # NMSBoxes drops scores <= its score threshold, which must be >= 0
        keep = cv2.dnn.NMSBoxes(xywh.astype(np.float64), scores.astype(np.float32), 0.0,
                                threshold)
        return np.asarray(keep, np.int64).reshape(-1)
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[w * h / np.minimum(area[i], area[rest]) <= threshold]
    return np.asarray(keep, np.int64)


def bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R-/O-Net's box offsets reg (k, 4), in box sizes, to boxes (k, 5)."""
    out = boxes.copy()
    wh = boxes[:, 2:4] - boxes[:, :2] + 1
    out[:, :4] = boxes[:, :4] + reg * np.tile(wh, 2)
    return out


def decode_onet(boxes: np.ndarray, reg: np.ndarray, pts: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """O-Net's outputs for the squares it saw -> (boxes, landmarks) in image pixels.

    boxes (k, 4 or more) x1 y1 x2 y2 (...): the input squares; reg (k, 4) box offsets and
    pts (k, 10) landmark x's then y's, both in box sizes. Returns the regressed boxes (same
    columns, extra ones kept) and landmarks (k, 5, 2) x, y.
    """
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    lm = np.stack([w * pts[:, :5] + boxes[:, :1] - 1, h * pts[:, 5:] + boxes[:, 1:2] - 1], axis=2)
    return bbreg(boxes, reg), lm


def square(boxes: np.ndarray, expand: float = 1.0) -> np.ndarray:
    """Boxes (k, 4 or more) made square with side expand x their longer side, same centres;
    columns after the 4th (a score) are kept."""
    out = boxes.copy()
    wh = boxes[:, 2:4] - boxes[:, :2]
    side = wh.max(1, keepdims=True) * expand
    out[:, :2] = boxes[:, :2] + wh * 0.5 - side * 0.5
    out[:, 2:4] = out[:, :2] + side
    return out


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop each box of img (H, W, 3) uint8 (truncated to integers and clipped to the image,
    as facenet-pytorch's `pad`: crops.crop_windows) and area-resample it to size x size ->
    (crops (k, size, size, 3) float32 0..255, the boxes that had a non-empty crop)."""
    win, keep = crop_windows(boxes, *img.shape[:2])
    out = np.empty((len(keep), size, size, 3), np.float32)
    for j, (r0, c0, rows, cols) in enumerate(win):
        # resampled in float, as facenet-pytorch does; converting only the crop, not the
        # frame (25 MB at 1080p for each stage), gives the same values
        out[j] = cv2.resize(img[r0:r0 + rows, c0:c0 + cols].astype(np.float32), (size, size),
                            interpolation=cv2.INTER_AREA)
    return out, boxes[keep]
