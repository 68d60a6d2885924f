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


def test_face_batch_refuses_arrays_that_are_not_parallel():
    import numpy as np
    import pytest

    from emobatch.types import FaceBatch

    xyxy, score, lm = np.zeros((2, 4), np.float32), np.zeros(2, np.float32), np.zeros((2, 5, 2))
    ok = FaceBatch(xyxy, score, lm, crops=np.zeros((2, 48, 48), np.uint8),
                   probs=np.zeros((2, 7), np.float32), track=np.arange(2))
    assert len(ok[np.array([True, False])]) == 1 and len(FaceBatch.empty()) == 0
    bad = {"score": np.zeros(3), "landmarks": np.zeros((2, 5)), "crops": np.zeros((2, 48)),
           "probs": np.zeros((1, 7)), "track": np.zeros((2, 1)), "classified": np.ones(3, bool)}
    for name, array in bad.items():
        fields = {"xyxy": xyxy, "score": score, "landmarks": lm, name: array}
        with pytest.raises(ValueError, match=f"FaceBatch.{name} has shape"):
            FaceBatch(**fields)
    with pytest.raises(ValueError, match="probs_raw"):
        ok.with_(probs_raw=np.zeros((3, 7), np.float32))
