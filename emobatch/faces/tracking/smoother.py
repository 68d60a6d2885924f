"""Temporal smoothing of per-face emotion probabilities along tracks.

A classifier looking at one frame at a time flickers between neighbouring emotions; smoothing
each track's probabilities over time gives steadier timelines. The smoothing is a first-order
low-pass filter in video *time*, so it behaves the same at any frame rate or frame stride.
"""
from __future__ import annotations

import math

import numpy as np

from ...types import FaceBatch


def ema_weight(dt: float, tau: float) -> float:
    """Weight a = 1 - exp(-dt / tau) of the new value after dt seconds (time constant tau > 0).

    Applying it k times with dt/k gives the same result as once with dt, which is what makes
    the filter frame-rate independent: after tau seconds a step has moved 1 - 1/e of the way.
    """
    return 1.0 - math.exp(-max(dt, 0.0) / tau)


class Smoother:
    """Per-track exponential smoothing of probs in time: p_s = a*p + (1-a)*p_s_prev with
    a = 1 - exp(-dt / tau), so it is frame-rate independent. probs_raw keeps the unsmoothed
    values.

    tau: time constant in seconds; tau <= 0 disables smoothing (identity).
    max_gap: a track unseen for more than this many seconds restarts from its raw probs, and its
        state is forgotten, so memory stays flat on long videos.

    One instance per video; call `smooth` on its frames in time order (after `Tracker.track`).
    """

    def __init__(self, tau: float = 0.3, max_gap: float = 1.0) -> None:
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 seconds, not {max_gap}")
        self.tau = float(tau)
        self.max_gap = float(max_gap)
        self.reset()

    def reset(self) -> None:
        """Forget every track's state (call between videos)."""
        self._state: dict[int, tuple[np.ndarray, float]] = {}  # track -> (probs (C,) f64, t)
        self._t_prev: float | None = None

    def __len__(self) -> int:
        """Tracks whose smoothed state is currently held."""
        return len(self._state)

    def state_dict(self) -> dict:
        """Per-track smoothed probabilities and times (a checkpoint resumes from it exactly)."""
        return {"t_prev": self._t_prev,
                "tracks": [[tid, p.copy(), t] for tid, (p, t) in self._state.items()]}

    def load_state_dict(self, d: dict) -> None:
        self._t_prev = d["t_prev"]
        self._state = {int(tid): (p, t) for tid, p, t in d["tracks"]}

    def smooth(self, faces: FaceBatch, t_sec: float | None) -> FaceBatch:
        """Return faces with probs (n, C) float32 smoothed per track and probs_raw set.

        Needs faces.track (ValueError if None while n > 0) and faces.probs. Faces with
        track -1, and all faces when t_sec is None (stills) or tau <= 0, pass through
        unchanged. probs_raw becomes the input probs if it is None, else it is kept. Smoothed
        rows sum to 1. faces is not modified.
        """
        n = len(faces)
        if n and faces.track is None:
            raise ValueError("Smoother needs faces.track (it is None); run Tracker first")
        if n and faces.probs is None:
            raise ValueError("Smoother needs faces.probs; run the classifier first")
        raw = faces.probs_raw if faces.probs_raw is not None else faces.probs
        if t_sec is None or self.tau <= 0:
            return faces.with_(probs_raw=raw)

        t = float(t_sec)
        if self._t_prev is not None and t < self._t_prev:
            self._state.clear()  # time went backwards (seek / new video)
        self._t_prev = t
        self._forget_stale(t)
        if faces.probs is None:  # n == 0
            return faces.with_(probs_raw=raw)

        out = np.array(faces.probs, dtype=np.float32, copy=True)
        for i, tid in enumerate(np.asarray(faces.track).tolist()):
            if tid >= 0:
                out[i] = self._update(int(tid), np.asarray(faces.probs[i], np.float64), t)
        return faces.with_(probs=out, probs_raw=raw)

    def _forget_stale(self, t: float) -> None:
        """Drop tracks unseen for more than max_gap seconds."""
        stale = [k for k, (_, t_last) in self._state.items() if t - t_last > self.max_gap]
        for k in stale:
            del self._state[k]

    def _update(self, tid: int, p: np.ndarray, t: float) -> np.ndarray:
        """Smoothed probs (C,) of track tid observing p at time t; updates the state."""
        prev = self._state.get(tid)
        if prev is None:  # new track, or restarted after a gap > max_gap: start from raw
            s = p
        else:
            a = ema_weight(t - prev[1], self.tau)
            s = a * p + (1.0 - a) * prev[0]
            total = s.sum()
            if total > 0:  # a mix of distributions sums to 1; keep it so despite rounding
                s = s / total
        self._state[tid] = (s, t)
        return s
