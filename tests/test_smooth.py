"""Smoother: per-track, frame-rate independent exponential smoothing of emotion probs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from emobatch.faces.tracking.smoother import Smoother
from emobatch.types import FaceBatch

E = np.eye(7, dtype=np.float32)
ONE_MINUS_1_OVER_E = 1.0 - 1.0 / math.e


def batch(probs, tracks, probs_raw=None) -> FaceBatch:
    """A FaceBatch with only what the Smoother reads: probs (n, 7), track (n,)."""
    probs = np.asarray(probs, np.float32).reshape(-1, 7)
    n = len(probs)
    return FaceBatch(xyxy=np.zeros((n, 4), np.float32), score=np.ones(n, np.float32),
                     landmarks=np.zeros((n, 5, 2), np.float32), probs=probs,
                     probs_raw=probs_raw, track=np.asarray(tracks, np.int64).reshape(n))


def feed(sm: Smoother, signal, times, track: int = 0) -> np.ndarray:
    """Smooth one track's signal(t) -> (7,) over the times; returns the last output row."""
    out = None
    for t in times:
        out = sm.smooth(batch([signal(t)], [track]), float(t)).probs[0]
    return out


def test_constant_track_unchanged():
    p = np.array([0.1, 0.05, 0.05, 0.5, 0.1, 0.1, 0.1], np.float32)
    sm = Smoother(tau=0.3)
    for k in range(50):
        out = sm.smooth(batch([p], [0]), k / 25)
        np.testing.assert_allclose(out.probs[0], p, atol=1e-6)


@pytest.mark.parametrize("dt", [0.3, 0.03, 0.01])
def test_step_reaches_1_minus_1_over_e_after_tau(dt):
    tau = 0.3
    step = lambda t: E[3] if t > 1.0 + 1e-9 else E[6]    # neutral -> happy after t = 1 s
    times = 1.0 + dt * np.arange(-10, round(tau / dt) + 1)  # up to t = 1 + tau
    out = feed(Smoother(tau=tau), step, times)
    assert out[3] == pytest.approx(ONE_MINUS_1_OVER_E, abs=1e-5)
    assert out[6] == pytest.approx(1.0 / math.e, abs=1e-5)


def test_frame_rate_independent():
    def wave(t):                      # a smooth signal: happy <-> sad, plus neutral
        h = 0.4 + 0.3 * math.sin(2 * math.pi * 1.5 * t)
        return h * E[3] + (0.8 - h) * E[4] + 0.2 * E[6]

    def step(t):  # changes between t = 0.36 and 0.38, i.e. within a frame at both rates
        return E[5] if t > 0.37 else E[6]

    for signal, tol in ((wave, 0.02), (step, 1e-5)):
        a = feed(Smoother(tau=0.3), signal, np.arange(26) / 25)   # 25 fps to t = 1 s
        b = feed(Smoother(tau=0.3), signal, np.arange(51) / 50)   # 50 fps to t = 1 s
        np.testing.assert_allclose(a, b, atol=tol)


def test_tau_zero_is_identity():
    rng = np.random.default_rng(0)
    sm = Smoother(tau=0.0)
    for k in range(10):
        p = rng.dirichlet(np.ones(7), 3).astype(np.float32)
        out = sm.smooth(batch(p, [0, 1, 2]), k / 25)
        np.testing.assert_array_equal(out.probs, p)
        np.testing.assert_array_equal(out.probs_raw, p)


def test_tracks_do_not_mix():
    sm = Smoother(tau=0.3)
    for k in range(30):
        order = [0, 1] if k % 2 else [1, 0]             # order within the frame must not matter
        out = sm.smooth(batch(E[[o + 2 for o in order]], order), k / 25)
        for row, o in zip(out.probs, order):
            np.testing.assert_allclose(row, E[o + 2], atol=1e-6)


def test_rows_sum_to_one_and_untracked_pass_through():
    rng = np.random.default_rng(1)
    sm = Smoother(tau=0.2)
    for k in range(40):
        tracks = rng.choice([-1, 0, 1, 2, 3], size=4, replace=False)
        p = rng.dirichlet(np.ones(7), 4).astype(np.float32)
        out = sm.smooth(batch(p, tracks), k / 30)
        assert out.probs.dtype == np.float32 and out.probs.shape == (4, 7)
        np.testing.assert_allclose(out.probs.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(out.probs[tracks == -1], p[tracks == -1])


def test_gap_longer_than_max_gap_restarts():
    sm = Smoother(tau=0.3, max_gap=1.0)
    feed(sm, lambda t: E[6], np.arange(26) / 25)                  # neutral until t = 1.0
    out = sm.smooth(batch([E[3]], [0]), 1.5)                      # 0.5 s gap: still smoothing
    assert out.probs[0, 6] == pytest.approx(math.exp(-0.5 / 0.3), abs=1e-6)
    assert len(sm) == 1
    out = sm.smooth(batch([E[0]], [1]), 3.0)                      # track 0 unseen for 1.5 s
    assert len(sm) == 1                                            # ...and forgotten
    out = sm.smooth(batch([E[3]], [0]), 3.04)
    np.testing.assert_array_equal(out.probs[0], E[3])              # restarts from raw


def test_probs_raw_kept():
    sm = Smoother(tau=0.3)
    sm.smooth(batch([E[6]], [0]), 0.0)
    out = sm.smooth(batch([E[3]], [0]), 0.04)
    np.testing.assert_array_equal(out.probs_raw, E[[3]])           # set from the input probs
    assert out.probs[0, 3] < 0.5                                    # while probs are smoothed
    earlier = E[[1]]
    out = sm.smooth(batch([E[3]], [0], probs_raw=earlier), 0.08)
    np.testing.assert_array_equal(out.probs_raw, earlier)           # an existing one is kept


def test_stills_empty_and_errors():
    sm = Smoother()
    still = sm.smooth(batch([E[3]], [0]), None)
    np.testing.assert_array_equal(still.probs, E[[3]])
    np.testing.assert_array_equal(still.probs_raw, E[[3]])
    assert len(sm) == 0
    empty = sm.smooth(FaceBatch.empty(), 0.0)
    assert len(empty) == 0
    with pytest.raises(ValueError, match="track"):
        sm.smooth(batch([E[3]], [0]).with_(track=None), 0.0)
    with pytest.raises(ValueError, match="probs"):
        sm.smooth(batch([E[3]], [0]).with_(probs=None), 0.0)


def test_input_not_mutated_and_reset():
    sm = Smoother(tau=0.3)
    sm.smooth(batch([E[6]], [0]), 0.0)
    faces = batch([E[3]], [0])
    probs = faces.probs.copy()
    out = sm.smooth(faces, 0.04)
    np.testing.assert_array_equal(faces.probs, probs)
    assert faces.probs_raw is None and out is not faces
    sm.reset()
    assert len(sm) == 0
    np.testing.assert_array_equal(sm.smooth(faces, 0.08).probs, probs)
