"""Online face tracking: stable per-video track ids for the faces of successive frames.

`Tracker` is a small SORT/ByteTrack-style tracker that works frame by frame (never clustering
over the whole video), so memory stays flat on long videos:

* every track predicts where its face is now with a constant-velocity model in box centre and
  size, using the video time in seconds (skipped frames and variable frame rates just give a
  larger dt);
* detections are assigned to tracks with the Hungarian algorithm on ``1 - IoU`` against the
  predicted boxes, plus a centre-distance fallback for small, fast faces (see `match_cost`);
* two stages as in ByteTrack: confident detections (score >= high_score) first, then the
  remaining low-score detections against the still-unmatched tracks; a low-score detection
  can continue a track but never starts one;
* unmatched tracks are "lost" and keep predicting for up to max_age seconds, so a face hidden
  for a moment gets its id back; after that the track is deleted and a returning face gets a
  new id. Ids start at 0 and are never reused within a video (until `reset()`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...types import FaceBatch
from ..boxes import iou_matrix

_FORBIDDEN = np.inf
"""Cost of a detection/track pair that may not be matched."""

_UNMATCHED_COST = 1.0
"""Cost of leaving a track or a detection unassigned (see `assign`).

Allowed pairs cost < 2 = leaving both sides unassigned, so any allowed pair is better than no
pair; but one IoU match (cost <= 1 - iou_threshold) beats breaking it up into two fallback
matches (cost >= 1 each), so the distance fallback never steals from a good IoU match.
"""


# --------------------------------------------------------------------------------- geometry

def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) x1,y1,x2,y2 -> (..., 4) centre x, centre y, width, height (float64)."""
    b = np.asarray(boxes, np.float64)
    return np.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], axis=-1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) centre x, centre y, width, height -> (..., 4) x1,y1,x2,y2 (float64)."""
    b = np.asarray(boxes, np.float64)
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], axis=-1)


# ------------------------------------------------------------------------------- assignment

def match_cost(pred: np.ndarray, dets: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Assignment cost (n_tracks, n_dets) of predicted track boxes vs detections (both xyxy).

    * IoU >= iou_threshold: cost ``1 - IoU`` in [0, 1 - iou_threshold].
    * Otherwise, distance fallback: a face that is small or moves fast can have IoU 0 with its
      predicted box even when the prediction is only a little off (a 10 px face whose speed
      changes by 6 px/frame already drops below IoU 0.3). IoU cannot tell "slightly off" from
      "somebody else", the centre distance can: if the detection's centre is closer than half
      the predicted box's diagonal, the pair is allowed with cost ``1 + d / gate`` in [1, 2) --
      above every IoU match, so the fallback only fills in where IoU has nothing to offer.
    * Otherwise the pair is forbidden (``inf``).
    """
    n, m = len(pred), len(dets)
    if n == 0 or m == 0:
        return np.zeros((n, m), np.float64)
    iou = iou_matrix(pred, dets)
    pc, dc = xyxy_to_cxcywh(pred), xyxy_to_cxcywh(dets)
    dist = np.linalg.norm(pc[:, None, :2] - dc[None, :, :2], axis=2)           # (n, m)
    gate = 0.5 * np.hypot(pc[:, 2], pc[:, 3])[:, None]                         # (n, 1)
    near = dist < gate
    fallback = 1.0 + dist / np.maximum(gate, 1e-9)
    cost = np.where(near, fallback, _FORBIDDEN)
    return np.where(iou >= iou_threshold, 1.0 - iou, cost)


def assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost partial matching of a cost matrix (n, m) with ``inf`` = forbidden.

    Returns (rows, cols), two int arrays of the matched pairs. Every row and column may also
    stay unmatched at `_UNMATCHED_COST`: the (n + m) square matrix ``[[C, U], [U', 0]]`` (U a
    diagonal of that cost, inf elsewhere) is solved with `scipy.optimize.linear_sum_assignment`,
    as in lapjv's ``extend_cost`` used by ByteTrack, so forbidden pairs never force a match.
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    big = 1e6  # finite stand-in for inf (linear_sum_assignment wants a feasible matrix)
    aug = np.full((n + m, m + n), big)
    aug[:n, :m] = np.where(np.isfinite(cost), cost, big)
    aug[np.arange(n), m + np.arange(n)] = _UNMATCHED_COST
    aug[n + np.arange(m), np.arange(m)] = _UNMATCHED_COST
    aug[n:, m:] = 0.0
    r, c = linear_sum_assignment(aug)
    keep = (r < n) & (c < m)
    r, c = r[keep], c[keep]
    ok = np.isfinite(cost[r, c])
    return r[ok], c[ok]


# ----------------------------------------------------------------------------------- tracks

@dataclass
class _Track:
    """State of one track. Boxes are float64 cx, cy, w, h; velocity is per second."""

    box: np.ndarray                # (4,) last observed cxcywh
    t: float                       # video time of the last observation
    tid: int = -1                  # public id, assigned when confirmed
    hits: int = 1                  # observations so far
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))

    def predict(self, t: float) -> np.ndarray:
        """(4,) xyxy box predicted at time t (constant velocity; width/height kept >= 1 px)."""
        p = self.box + self.velocity * (t - self.t)
        p[2:] = np.maximum(p[2:], 1.0)
        return cxcywh_to_xyxy(p)

    def update(self, xyxy: np.ndarray, t: float) -> None:
        """Add an observation; velocity from the last two observations (dt in seconds)."""
        box = xyxy_to_cxcywh(xyxy)
        dt = t - self.t
        if dt > 0:  # a duplicate timestamp keeps the previous velocity
            self.velocity = (box - self.box) / dt
        self.box, self.t = box, t
        self.hits += 1


class Tracker:
    """Online IoU tracker with constant-velocity prediction and Hungarian assignment
    (ByteTrack-style two-stage: high-score detections first, then low-score ones against the
    still-unmatched tracks).

    One instance per video; call `track` on its frames in time order. Per frame the cost is
    O(n_tracks * n_dets) for the cost matrix plus a Hungarian solve on at most
    (n_tracks + n_dets) squared entries -- microseconds to a millisecond for ~50 faces.

    iou_threshold: minimum IoU of a detection with a track's predicted box (below it only the
        centre-distance fallback can match, see `match_cost`).
    max_age: seconds of video time a lost (unmatched) track keeps predicting and can be
        re-found, e.g. after an occlusion; then it is deleted and its id is never used again.
    high_score: detections scoring at least this are matched first and may start new tracks;
        lower ones can only continue an existing track (else they get track -1).
    min_hits: observations (in consecutive frames) before a new track is confirmed and given an
        id; until then its faces get track -1, and a tentative track missed once is deleted.
        1 (default) gives every new confident face an id at once.
    """

    def __init__(self, iou_threshold: float = 0.3, max_age: float = 1.0, high_score: float = 0.95,
                 min_hits: int = 1) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], not {iou_threshold}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0 seconds, not {max_age}")
        if min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, not {min_hits}")
        self.iou_threshold = float(iou_threshold)
        self.max_age = float(max_age)
        self.high_score = float(high_score)
        self.min_hits = int(min_hits)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart ids at 0 (call between videos)."""
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._t_prev: float | None = None

    def cut(self) -> None:
        """A hard cut: every track ends (ids go on from where they were, never reused)."""
        self._tracks = []

    def __len__(self) -> int:
        """Tracks currently held (matched or lost); lost ones go after max_age seconds."""
        return len(self._tracks)

    def state_dict(self) -> dict:
        """Tracks, next id and clock (a checkpoint resumes from it exactly)."""
        return {"next_id": self._next_id, "t_prev": self._t_prev,
                "tracks": [{"box": tr.box.copy(), "t": tr.t, "tid": tr.tid, "hits": tr.hits,
                            "velocity": tr.velocity.copy()} for tr in self._tracks]}

    def load_state_dict(self, d: dict) -> None:
        self._next_id, self._t_prev = int(d["next_id"]), d["t_prev"]
        self._tracks = [_Track(box=t["box"], t=t["t"], tid=int(t["tid"]), hits=int(t["hits"]),
                               velocity=t["velocity"]) for t in d["tracks"]]

    def track(self, faces: FaceBatch, t_sec: float | None) -> FaceBatch:
        """Return faces with `track` (n,) int64 set: stable ids within a video, starting at 0,
        never reused; -1 for a face that belongs to no confirmed track (an unmatched low-score
        detection, or a track still short of min_hits).

        t_sec None (a still image): the call is independent of the video state and the id is
        just the face's index 0..n-1. faces is not modified.
        """
        n = len(faces)
        if t_sec is None:
            return faces.with_(track=np.arange(n, dtype=np.int64))
        t = float(t_sec)
        if self._t_prev is not None and t < self._t_prev:
            self._tracks = []  # time went backwards (seek / new video): old tracks are useless
        self._t_prev = t
        self._drop_expired(t)

        dets = np.asarray(faces.xyxy, np.float64).reshape(n, 4)
        score = np.asarray(faces.score, np.float64).reshape(n)
        ids = np.full(n, -1, np.int64)
        det_track: dict[int, _Track] = {}

        high = np.flatnonzero(score >= self.high_score)
        low = np.flatnonzero(score < self.high_score)
        free = list(self._tracks)
        for det_idx in (high, low):  # ByteTrack: confident detections first
            pairs = self._match(free, dets[det_idx], t)
            for ti, di in pairs:
                det_track[int(det_idx[di])] = free[ti]
            used = {ti for ti, _ in pairs}
            free = [tr for k, tr in enumerate(free) if k not in used]

        for d, tr in det_track.items():
            tr.update(dets[d], t)
        self._drop_missed_tentative(free)
        for d in high:
            if int(d) not in det_track:
                tr = _Track(box=xyxy_to_cxcywh(dets[d]), t=t)
                self._tracks.append(tr)
                det_track[int(d)] = tr
        for d, tr in det_track.items():
            ids[d] = self._confirm(tr)
        return faces.with_(track=ids)

    # -- steps of track() ------------------------------------------------------------------

    def _drop_expired(self, t: float) -> None:
        """Delete tracks not observed for more than max_age seconds."""
        self._tracks = [tr for tr in self._tracks if t - tr.t <= self.max_age]

    def _drop_missed_tentative(self, unmatched: list[_Track]) -> None:
        """Delete unconfirmed tracks that found no detection in this frame."""
        gone = {id(tr) for tr in unmatched if tr.tid < 0}
        if gone:
            self._tracks = [tr for tr in self._tracks if id(tr) not in gone]

    def _match(self, tracks: list[_Track], dets: np.ndarray, t: float) -> list[tuple[int, int]]:
        """Hungarian matching of tracks (predicted at t) with detections (k, 4) xyxy.

        Returns (track index, detection index) pairs.
        """
        if not tracks or len(dets) == 0:
            return []
        pred = np.stack([tr.predict(t) for tr in tracks])
        rows, cols = assign(match_cost(pred, dets, self.iou_threshold))
        return [(int(r), int(c)) for r, c in zip(rows, cols)]

    def _confirm(self, tr: _Track) -> int:
        """The track's public id, giving it the next one once it has min_hits observations."""
        if tr.tid < 0 and tr.hits >= self.min_hits:
            tr.tid = self._next_id
            self._next_id += 1
        return tr.tid
