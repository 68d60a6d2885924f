"""Where each face's tag goes on an annotated frame: beside its box, clear of every other tag
and of every face box. Pure geometry on integer rectangles (x1, y1, x2, y2), ends exclusive.
"""
from __future__ import annotations

import numpy as np

Rects = np.ndarray
"""(n, 4) int64 rectangles x1, y1, x2, y2 with exclusive ends."""


def _overlapping(cands: Rects, obstacles: Rects) -> np.ndarray:
    """(k,) bool: which of the (k, 4) candidates overlap any of the (m, 4) obstacles."""
    if not len(obstacles):
        return np.zeros(len(cands), bool)
    c, o = cands[:, None, :], obstacles[None, :, :]
    hit = (c[..., 0] < o[..., 2]) & (o[..., 0] < c[..., 2]) \
        & (c[..., 1] < o[..., 3]) & (o[..., 1] < c[..., 3])
    return hit.any(axis=1)


def _inside(cands: Rects, height: int, width: int) -> np.ndarray:
    """(k,) bool: which candidates lie wholly inside a height x width image."""
    return (cands[:, 0] >= 0) & (cands[:, 1] >= 0) & (cands[:, 2] <= width) \
        & (cands[:, 3] <= height)


def _beside(box: np.ndarray, w: int, h: int, width: int, gap: int) -> Rects:
    """(6, 4) tag positions around box in order of preference: above (left-aligned, then
    right-aligned), below (same), right, left; above/below slid inside the image's width."""
    x1, y1, x2, y2 = (int(v) for v in box)
    left = min(max(x1, 0), max(width - w, 0))
    right = min(max(x2 - w, 0), max(width - w, 0))
    above, below = y1 - gap - h, y2 + gap
    tops = ((left, above), (right, above), (left, below), (right, below),
            (x2 + gap, y1), (x1 - gap - w, y1))
    return np.array([(x, y, x + w, y + h) for x, y in tops], np.int64)


def _nearby(box: np.ndarray, w: int, h: int, height: int, width: int) -> Rects:
    """Every tag position on a grid of half a tag inside the image, nearest to box first."""
    xs = np.unique(np.r_[np.arange(0, max(width - w, 0) + 1, max(2, w // 4)), max(width - w, 0)])
    ys = np.unique(np.r_[np.arange(0, max(height - h, 0) + 1, max(2, h // 2)),
                         max(height - h, 0)])
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    dist = (gx + w / 2 - cx) ** 2 + (gy + h / 2 - cy) ** 2
    order = np.argsort(dist, kind="stable")
    return np.stack([gx, gy, gx + w, gy + h], 1)[order].astype(np.int64)


def layout_tags(boxes: np.ndarray, sizes: np.ndarray, height: int, width: int,
                gap: int = 1) -> tuple[Rects, np.ndarray]:
    """Place one tag per face: (rects (n, 4) int64, leader (n,) bool).

    boxes: (n, 4) float x1, y1, x2, y2 (rows with a non-finite value get no tag: rect -1);
    sizes: (n, 2) int tag width, height. Faces are placed in order; each takes the first
    position beside its box (see _beside) that lies inside the image and overlaps no face
    box (grown by gap) and no tag placed before it, else the free grid position nearest to
    its box (leader True: draw a line to the box), else, when the image has no room, the
    first position beside its box slid into the image (it then overlaps). Deterministic.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    rects, leader = np.full((n, 4), -1, np.int64), np.zeros(n, bool)
    valid = np.isfinite(boxes).all(axis=1)
    ib = np.zeros((n, 4), np.int64)
    ib[valid] = np.round(boxes[valid]).astype(np.int64)
    faces = ib[valid] + np.array([-gap, -gap, gap + 1, gap + 1])
    for i in np.flatnonzero(valid):
        w, h = int(sizes[i][0]), int(sizes[i][1])
        taken = np.concatenate([faces, rects[:i][valid[:i]]])
        cands = _beside(ib[i], w, h, width, gap)
        ok = _inside(cands, height, width) & ~_overlapping(cands, taken)
        if not ok.any():
            far = _nearby(ib[i], w, h, height, width)
            free = np.flatnonzero(_inside(far, height, width) & ~_overlapping(far, taken))
            if len(free):
                rects[i], leader[i] = far[free[0]], True
                continue
            cands[:, [1, 3]] -= np.minimum(cands[:, 1], 0)[:, None]
            cands[:, [1, 3]] -= np.maximum(cands[:, 3] - height, 0)[:, None]
            ok = np.arange(len(cands)) == 0
        rects[i] = cands[np.argmax(ok)]
    return rects, leader
