"""Tracker on synthetic moving boxes (no models, no video: fast)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from emobatch.faces.boxes import iou_matrix
from emobatch.faces.tracking.tracker import Tracker, assign, match_cost
from emobatch.types import FaceBatch

FPS = 25.0


def box(cx: float, cy: float, w: float, h: float | None = None) -> list[float]:
    """xyxy of a box from its centre and size."""
    h = w if h is None else h
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def batch(boxes, scores=None) -> FaceBatch:
    """A FaceBatch of the given xyxy boxes (default score 0.99)."""
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    score = np.full(n, 0.99, np.float32) if scores is None else np.asarray(scores, np.float32)
    return FaceBatch(xyxy=xyxy, score=score, landmarks=np.zeros((n, 5, 2), np.float32))


def run(tracker: Tracker, frames, times, rng=None) -> list[np.ndarray]:
    """Track frames (lists of boxes) at the given times; with rng the detection order is shuffled
    per frame (ids are mapped back to the original order, so they must not depend on it)."""
    out = []
    for boxes, t in zip(frames, times):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        perm = rng.permutation(len(boxes)) if rng is not None else np.arange(len(boxes))
        ids = tracker.track(batch(boxes[perm]), t).track
        back = np.empty_like(ids)
        back[perm] = ids
        out.append(back)
    return out


# ------------------------------------------------------------------------------- helpers

def test_iou_matrix_values_and_shapes():
    a = np.array([box(0, 0, 10), box(100, 100, 10)])
    b = np.array([box(0, 0, 10), box(5, 0, 10), box(50, 50, 10), [3, 3, 3, 3]])
    m = iou_matrix(a, b)
    assert m.shape == (2, 4)
    np.testing.assert_allclose(m[0], [1.0, 50 / 150, 0.0, 0.0])
    np.testing.assert_allclose(m[1], 0.0)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def test_assign_leaves_forbidden_pairs_unmatched():
    cost = np.array([[0.1, np.inf], [np.inf, np.inf]])
    r, c = assign(cost)
    assert r.tolist() == [0] and c.tolist() == [0]
    # one IoU match beats two distance-fallback matches (costs >= 1)
    r, c = assign(np.array([[0.2, 1.5], [1.5, np.inf]]))
    assert list(zip(r.tolist(), c.tolist())) == [(0, 0)]


def test_match_cost_fallback_ranks_above_iou():
    pred = np.array([box(0, 0, 10)])
    dets = np.array([box(2, 0, 10), box(6, 0, 10), box(20, 0, 10)])
    cost = match_cost(pred, dets, 0.3)[0]
    assert cost[0] < 1.0 <= cost[1] < 2.0       # IoU match, then distance fallback
    assert np.isinf(cost[2])                     # too far: forbidden


# ------------------------------------------------------------------------------ scenarios

def test_crossing_faces_keep_ids():
    # A moves right, B left, 10 px apart vertically: their boxes overlap around frames 5-6.
    ks = np.arange(13)
    a = [box(90 + 30 * k, 100, 60) for k in ks]
    b = [box(410 - 30 * k, 110, 60) for k in ks]
    # The scenario is hard: matching frame 6 to the *last* boxes (no prediction) swaps them.
    last, now = np.array([a[5], b[5]]), np.array([a[6], b[6]])
    r, c = linear_sum_assignment(-iou_matrix(last, now))
    assert c[r.argsort()].tolist() == [1, 0]
    assert iou_matrix(last, now)[0, 1] > 0.3     # the swapped pair passes the IoU threshold

    ids = run(Tracker(), [[p, q] for p, q in zip(a, b)], ks / FPS, np.random.default_rng(0))
    assert all(x.tolist() == [0, 1] for x in ids)


def test_occlusion_gap_keeps_id_but_long_gap_gets_new_id():
    tr = Tracker(max_age=1.0)
    t = np.arange(200) / FPS
    path = [box(100 + 100 * ti, 200 + 20 * ti, 60) for ti in t]  # 100 px/s right, 20 px/s down
    visible = np.zeros(200, bool)
    visible[0:10] = True        # t 0.00 .. 0.36
    visible[20:30] = True       # reappears at 0.80 after 0.44 s hidden -> same id
    visible[80:90] = True       # reappears at 3.20 after 2.04 s hidden -> new id
    seen = {}
    for k in range(200):
        faces = batch([path[k]] if visible[k] else [])
        seen[k] = tr.track(faces, t[k]).track.tolist()
        if k == 70:
            assert len(tr) == 0          # lost for > max_age: the track is deleted
    assert all(seen[k] == [0] for k in range(0, 30) if visible[k])
    assert all(seen[k] == [1] for k in range(80, 90))


def test_faces_appear_and_leave_ids_new_and_never_reused():
    tr = Tracker(max_age=1.0)
    a, b, c = box(100, 100, 60), box(300, 100, 60), box(500, 100, 60)
    first_seen: dict[int, int] = {}
    for k in range(60):
        boxes = []
        if k < 10:
            boxes.append(a)             # A: frames 0-9
        if 5 <= k < 15:
            boxes.append(b)             # B: frames 5-14
        if 12 <= k < 20:
            boxes.append(c)             # C: frames 12-19
        if k >= 40:
            boxes.append(a)             # someone at A's place 1.24 s after A left
        for i in tr.track(batch(boxes), k / FPS).track.tolist():
            first_seen.setdefault(i, k)
    assert sorted(first_seen) == [0, 1, 2, 3]
    assert [first_seen[i] for i in range(4)] == [0, 5, 12, 40]
    assert len(tr) == 1


def test_empty_frames():
    tr = Tracker()
    out = tr.track(FaceBatch.empty(), 0.0)
    assert out.track.shape == (0,) and out.track.dtype == np.int64
    assert tr.track(FaceBatch.empty(), None).track.shape == (0,)
    f = batch([box(100, 100, 50)])
    got = []
    for k in range(1, 20):
        faces = f if k % 3 else FaceBatch.empty()   # every third frame empty
        got += tr.track(faces, k / FPS).track.tolist()
    assert set(got) == {0}


def test_fast_small_face_matched_by_distance_fallback():
    # 10 px face accelerating: x_k = 3k(k+1) moves 6, 12, 18, ... px per frame, i.e. more than
    # its width from frame 2 on; the constant-velocity prediction is off by 6 px every frame.
    ks = np.arange(12)
    xs = 3.0 * ks * (ks + 1)
    boxes = np.array([box(50 + x, 80, 10) for x in xs])
    consecutive = [iou_matrix(boxes[k - 1:k], boxes[k:k + 1])[0, 0] for k in range(2, 12)]
    assert max(consecutive) == 0.0
    predicted = [box(50 + 2 * xs[k - 1] - xs[k - 2], 80, 10) for k in range(2, 12)]
    assert all(iou_matrix([p], boxes[k:k + 1])[0, 0] < 0.3 for p, k in zip(predicted, range(2, 12)))

    ids = run(Tracker(), boxes[:, None], ks / FPS)
    assert all(x.tolist() == [0] for x in ids)

    # beyond the gate (centre distance > half the diagonal) a detection is somebody new
    tr = Tracker()
    assert tr.track(batch([box(50, 80, 10)]), 0.0).track.tolist() == [0]
    assert tr.track(batch([box(62, 80, 10)]), 1 / FPS).track.tolist() == [1]


def test_skipped_frames_and_variable_dt():
    # every 3rd frame of a face moving 250 px/s: 30 px per processed frame
    t = np.arange(0, 60, 3) / FPS
    ids = run(Tracker(), [[box(100 + 250 * ti, 100, 60)] for ti in t], t)
    assert all(x.tolist() == [0] for x in ids)

    # dt alternating 0.04 / 0.20 s at 500 px/s: 20 px then 100 px jumps. A per-frame (not
    # per-second) velocity would predict 20 px where the face moved 100 px and lose it.
    t = np.cumsum([0.0] + [0.04, 0.2] * 10)
    ids = run(Tracker(), [[box(100 + 500 * ti, 300, 60)] for ti in t], t)
    assert all(x.tolist() == [0] for x in ids)

    # random dt, two faces moving in different directions
    rng = np.random.default_rng(1)
    t = np.cumsum(np.r_[0.0, rng.uniform(0.02, 0.15, 40)])
    frames = [[box(100 + 200 * ti, 100 + 50 * ti, 60), box(900 - 150 * ti, 400, 80)] for ti in t]
    ids = run(Tracker(), frames, t, rng)
    assert all(x.tolist() == [0, 1] for x in ids)


def test_low_score_detection_continues_but_never_starts_a_track():
    tr = Tracker(high_score=0.95)
    a, b, c = box(100, 100, 60), box(400, 100, 60), box(700, 100, 60)
    k = 0

    def step(boxes, scores):
        nonlocal k
        k += 1
        return tr.track(batch(boxes, scores), k / FPS).track.tolist()

    for _ in range(5):
        assert step([a], [0.99]) == [0]
    for _ in range(5):                                  # a dips below high_score: still 0
        assert step([a], [0.92]) == [0]
    assert step([a, b], [0.99, 0.92]) == [0, -1]        # a new low-score face: no track
    assert step([a, b], [0.99, 0.92]) == [0, -1]
    assert step([a, c], [0.99, 0.99]) == [0, 1]         # the next id was not consumed
    # a high-score and a low-score detection on the same track: the high one wins
    shifted = box(102, 100, 60)
    assert step([a, shifted], [0.92, 0.99]) == [-1, 0]


def test_jittery_static_faces_give_exactly_six_ids():
    rng = np.random.default_rng(2)
    centres = [(100 + 150 * (i % 3), 100 + 150 * (i // 3)) for i in range(6)]
    frames = [[np.array(box(x, y, 60)) + rng.uniform(-3, 3, 4) for x, y in centres]
              for _ in range(100)]
    ids = np.array(run(Tracker(), frames, np.arange(100) / FPS, rng))   # (100, 6)
    assert sorted(np.unique(ids).tolist()) == list(range(6))
    assert (ids == ids[0]).all()


def test_many_faces():
    rng = np.random.default_rng(3)
    centres = [(40 + 80 * (i % 10), 40 + 80 * (i // 10)) for i in range(50)]
    frames = [[np.array(box(x + 40 * k / FPS, y, 50)) + rng.uniform(-2, 2, 4)
               for x, y in centres] for k in range(30)]
    ids = np.array(run(Tracker(), frames, np.arange(30) / FPS, rng))
    assert (ids == ids[0]).all() and sorted(ids[0].tolist()) == list(range(50))


def test_input_not_mutated():
    faces = batch([box(100, 100, 60), box(300, 100, 60)], [0.99, 0.5])
    before = {k: getattr(faces, k).copy() for k in ("xyxy", "score", "landmarks")}
    tr = Tracker()
    out = tr.track(faces, 0.0)
    out = tr.track(faces, 0.04)
    assert out is not faces and faces.track is None
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(faces, k), v)
    assert out.track.dtype == np.int64 and out.track.shape == (2,)


def test_stills_are_independent_of_video_state():
    tr = Tracker()
    assert tr.track(batch([box(100, 100, 60)]), 0.0).track.tolist() == [0]
    still = tr.track(batch([box(500, 500, 60), box(100, 100, 60)]), None)
    assert still.track.tolist() == [0, 1]
    assert tr.track(batch([box(100, 100, 60), box(800, 100, 60)]), 0.04).track.tolist() == [0, 1]


def test_min_hits_delays_ids_and_drops_one_frame_blips():
    tr = Tracker(min_hits=3)
    a, blip = box(100, 100, 60), box(500, 100, 60)
    got = [tr.track(batch([a] + ([blip] if k == 1 else [])), k / FPS).track.tolist()
           for k in range(5)]
    assert got == [[-1], [-1, -1], [0], [0], [0]]
    assert len(tr) == 1


def test_reset_and_time_going_backwards():
    tr = Tracker()
    a = batch([box(100, 100, 60)])
    assert tr.track(a, 1.0).track.tolist() == [0]
    assert tr.track(a, 0.0).track.tolist() == [1]       # seek back: old tracks dropped
    tr.reset()
    assert len(tr) == 0
    assert tr.track(a, 0.0).track.tolist() == [0]       # new video: ids restart


@pytest.mark.parametrize("kw", [{"iou_threshold": 0.0}, {"max_age": -1}, {"min_hits": 0}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        Tracker(**kw)
