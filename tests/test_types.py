import numpy as np

from emobatch.types import EMOTIONS, FaceBatch


def _batch(n: int, offset: float = 0.0) -> FaceBatch:
    xy = np.arange(n * 4, dtype=np.float32).reshape(n, 4) + offset
    return FaceBatch(xy, np.linspace(0.9, 1, n, dtype=np.float32), np.zeros((n, 5, 2), np.float32))


def test_empty_batch_shapes():
    e = FaceBatch.empty()
    assert len(e) == 0 and e.xyxy.shape == (0, 4) and e.landmarks.shape == (0, 5, 2)
    assert e.probs is None and e.track is None


def test_select_keeps_arrays_parallel():
    b = _batch(3).with_(probs=np.eye(3, 7, dtype=np.float32), track=np.array([5, 6, 7]))
    s = b[np.array([2, 0])]
    assert s.track.tolist() == [7, 5] and s.xyxy[0].tolist() == b.xyxy[2].tolist()
    assert s.probs.shape == (2, 7)
    assert len(b[np.zeros(3, bool)]) == 0


def test_concat_and_with_do_not_mutate():
    a, b = _batch(2), _batch(1, 100)
    c = FaceBatch.concat([a, FaceBatch.empty(), b])
    assert len(c) == 3 and c.xyxy[2, 0] == 100
    assert len(FaceBatch.concat([])) == 0
    d = a.with_(score=np.zeros(2, np.float32))
    assert a.score.max() > 0 and d.score.max() == 0


def test_label_order_is_fer2013s():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
