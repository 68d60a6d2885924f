import numpy as np
import pytest
import torch

from conftest import shared_path
from emobatch.detect import Detector
from emobatch.track import iou_matrix


@pytest.fixture(scope="module")
def exact():
    return Detector(exact=True)


def _same_faces(fast, ref, min_iou: float) -> None:
    """Every face of the reference is found by the fast cascade, at nearly the same place."""
    assert len(fast) == len(ref)
    iou = iou_matrix(ref.xyxy, fast.xyxy)
    j = iou.argmax(1)
    assert (iou.max(1) >= min_iou).all()
    assert np.abs(ref.score - fast.score[j]).max() < 0.02


def test_cascade_matches_facenet_pytorch(detector, exact, astronaut_rgb):
    assert not detector.exact and exact.exact
    # the reference's own nets are untouched by the cascade's channels-last conversion
    assert not exact.reference.pnet.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    fast, ref = detector.detect(astronaut_rgb), exact.detect(astronaut_rgb)
    _same_faces(fast, ref, 0.9)
    face = ref.xyxy[0, 2] - ref.xyxy[0, 0]
    assert np.abs(fast.landmarks - ref.landmarks).max() < 0.05 * face


def test_cascade_matches_facenet_pytorch_on_a_group():
    import cv2

    p = shared_path("media", "groups", "facenet_pytorch_multiface.jpg")
    img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    fast, ref = Detector().detect(img), Detector(exact=True).detect(img)
    _same_faces(fast, ref, 0.75)


def test_cascade_blank_and_tiny_images(detector):
    assert len(detector.detect(np.full((200, 300, 3), 90, np.uint8))) == 0
    assert len(detector.detect(np.full((10, 10, 3), 90, np.uint8))) == 0


def test_cascade_nets_run_channels_last(detector):
    w = detector.cascade.pnet.conv1.weight
    assert w.is_contiguous(memory_format=torch.channels_last)


def test_search_finds_a_face_that_moved(detector, astronaut_rgb):
    ref = detector.detect(astronaut_rgb)
    size = ref.xyxy[0, 2] - ref.xyxy[0, 0]
    moved = ref.xyxy[:1] + [0.45 * size, 0.3 * size, 0.45 * size, 0.3 * size]
    faces, idx = detector.search(astronaut_rgb, moved)
    assert list(idx) == [0]
    assert iou_matrix(faces.xyxy, ref.xyxy[:1])[0, 0] > 0.8
    assert faces.landmarks.shape == (1, 5, 2)


def test_search_finds_nothing_where_there_is_no_face(detector, astronaut_rgb):
    faces, idx = detector.search(astronaut_rgb, np.array([[380, 380, 450, 450]], np.float32))
    assert len(faces) == 0 and idx.shape == (0,)
