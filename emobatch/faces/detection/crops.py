"""MTCNN's candidate crops cut where its networks run (a GPU), as OpenCV would cut them.

The cascade resamples each candidate box of a frame to 24x24 (R-Net) or 48x48 (O-Net) with
`cv2.resize(crop.astype(float32), INTER_AREA)`, one call per box: hundreds of calls a 1080p
frame on the host, however fast the GPU (docs/experiments.md). Here every crop of a frame is computed in one
gather and one weighted sum on the frame's device, with OpenCV's own resampling formulas
(resize.cpp): where the crop is at least the output's size on both axes, area averaging
(`computeResizeAreaTab`: each output pixel the mean of the source cell it covers, partial
pixels weighted by coverage, slivers <= 1e-3 dropped); otherwise its INTER_AREA flavour of
linear interpolation. The weights are those OpenCV computes and they are summed in its order,
so crops agree with its to float32 rounding (its integer-ratio shortcut sums in another
order) and pyramid levels are its own (tests/test_crops.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch

# gathered values a call may hold at once (crops x output pixels x taps x 3): ~200 MB float32
GATHER_BUDGET = 50_000_000


def crop_windows(boxes: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (k, 4+) x1 y1 x2 y2 -> (windows (m, 4) int64 row0, col0, rows, cols; the indices
    (m,) of the boxes with a non-empty window). Truncated to integers and clipped to the
    frame as facenet-pytorch's `pad` does (emobatch.faces.detection.cascade._crops)."""
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
    keep = np.flatnonzero((ey > y - 1) & (ex > x - 1))
    x, y, ex, ey = x[keep], y[keep], ex[keep], ey[keep]
    return np.stack([y - 1, x - 1, ey - y + 1, ex - x + 1], 1), keep


def _div(a: float, b: torch.Tensor) -> torch.Tensor:
    """a / b in float64 as C divides (torch computes a number over a tensor as a times b's
    reciprocal, which rounds differently: OpenCV's 12 * (1 / (24 / 82)) is 41.0, torch's
    40.99999999999999, a different source pixel)."""
    b = b.double()
    return torch.full_like(b, float(a)) / b


def _area_taps(src: torch.Tensor, dst: int, taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Area averaging of `src` (k,) source pixels into `dst`: (first (k, dst, taps) source
    index, weights (k, dst, taps)), as computeResizeAreaTab."""
    scale = _div(1, _div(dst, src))[:, None, None]          # OpenCV: 1 / (dst / src)
    f1 = torch.arange(dst, dtype=torch.float64, device=src.device)[None, :, None] * scale
    f2 = f1 + scale
    s = torch.floor(f1) + torch.arange(taps, dtype=torch.float64, device=src.device)
    overlap = (torch.minimum(s + 1, f2) - torch.maximum(s, f1)).clamp(min=0)
    overlap = torch.where(overlap > 1e-3, overlap.clamp(max=1.0), torch.zeros_like(overlap))
    overlap = torch.where(s < src[:, None, None], overlap, torch.zeros_like(overlap))
    cell = torch.minimum(scale, src[:, None, None] - f1)
    return s.long(), (overlap / cell).float()


def _linear_taps(src: torch.Tensor, dst: int) -> tuple[torch.Tensor, torch.Tensor]:
    """INTER_AREA's linear interpolation (an axis that is upscaled): (index (k, dst, 2),
    weights (k, dst, 2))."""
    inv = _div(dst, src)[:, None]
    d = torch.arange(dst, dtype=torch.float64, device=src.device)[None, :]
    sx = torch.floor(d * _div(1, inv))
    fx = ((d + 1) - (sx + 1) * inv).float()
    fx = torch.where(fx <= 0, torch.zeros_like(fx), fx - torch.floor(fx))
    last = sx >= (src[:, None] - 1)
    sx = torch.where(last, src[:, None].double() - 1, sx)
    fx = torch.where(last, torch.zeros_like(fx), fx)
    return torch.stack([sx, sx + 1], 2).long(), torch.stack([1.0 - fx, fx], 2)


def _taps(src: torch.Tensor, dst: int, area: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if area:
        taps = int(math.ceil(float(src.max()) / dst)) + 1
        return _area_taps(src, dst, taps)
    return _linear_taps(src, dst)


def resize_crops(frame: torch.Tensor, windows: np.ndarray, size: int) -> torch.Tensor:
    """frame (H, W, 3) float32 on its device, windows (m, 4) row0, col0, rows, cols ->
    crops (m, size, size, 3) float32 on that device, each window resampled as
    cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA) would."""
    out = torch.empty((len(windows), size, size, 3), dtype=frame.dtype, device=frame.device)
    if len(windows) == 0:
        return out
    area = (windows[:, 2] >= size) & (windows[:, 3] >= size)  # OpenCV's test: both axes down
    side = np.maximum(windows[:, 2], windows[:, 3])
    for mode in (True, False):
        idx = np.flatnonzero(area == mode)
        idx = idx[np.argsort(side[idx], kind="stable")]  # similar sizes gather together
        start = 0
        while start < len(idx):
            stop = _group_end(side[idx], start, size, mode)
            part = idx[start:stop]
            out[torch.as_tensor(part, device=frame.device)] = _resize_group(
                frame, torch.as_tensor(windows[part], device=frame.device), size, size, mode)
            start = stop
    return out


def _group_end(sides: np.ndarray, start: int, size: int, area: bool) -> int:
    """The end of a group from `start` (sides ascending) whose gather fits GATHER_BUDGET."""
    stop = start + 1
    while stop < len(sides):
        taps = (math.ceil(sides[stop] / size) + 1) if area else 2
        # the buffers hold one tap along x at a time: crops x size^2 x taps along y x 3
        if (stop + 1 - start) * size * size * taps * 3 > GATHER_BUDGET:
            break
        stop += 1
    return stop


def resize_level(level: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """A pyramid level (H, W, 3) float32 holding uint8 values -> the next, (out_h, out_w, 3),
    as cv2.resize(level as uint8, (out_w, out_h), interpolation=cv2.INTER_AREA): OpenCV's
    weights, summed in its order, rounded half to even (its cvRound) and saturated to
    0..255: its very levels on the CPU; a device that fuses a product into a sum could round
    a sum near a half the other way (one grey level)."""
    h, w = level.shape[:2]
    win = torch.tensor([[0, 0, h, w]], device=level.device)
    out = _resize_group(level, win, out_h, out_w, h >= out_h and w >= out_w)[0]
    return torch.round(out).clamp_(0, 255)


def _resize_group(frame: torch.Tensor, win: torch.Tensor, size_y: int, size_x: int,
                  area: bool) -> torch.Tensor:
    """Windows win (g, 4) of frame resampled to size_y x size_x, all in one mode ->
    (g, size_y, size_x, 3)."""
    iy, wy = _taps(win[:, 2], size_y, area)                 # (g, size_y, ty)
    ix, wx = _taps(win[:, 3], size_x, area)                 # (g, size_x, tx)
    # taps past a window's edge have weight 0; their index is clamped into the window
    iy = torch.minimum(iy, win[:, 2, None, None] - 1) + win[:, 0, None, None]
    ix = torch.minimum(ix, win[:, 3, None, None] - 1) + win[:, 1, None, None]
    # summed tap after tap in OpenCV's order (each source row along x into a buffer, then
    # the rows), with separate float32 products and sums: the same roundings as its own
    rows = iy[:, :, :, None]                                 # (g, size_y, ty, 1)
    buf = torch.zeros((*iy.shape, size_x, 3), dtype=frame.dtype, device=frame.device)
    for t in range(ix.shape[2]):
        buf = buf + frame[rows, ix[:, None, None, :, t]] * wx[:, None, None, :, t, None]
    out = buf[:, :, 0] * wy[:, :, 0, None, None]
    for t in range(1, iy.shape[2]):
        out = out + buf[:, :, t] * wy[:, :, t, None, None]
    return out
