import numpy as np
import pytest
import torch

from conftest import at_thread_counts, shared_path
from emobatch.faces.detection.detector import Detector
from emobatch.faces.boxes import iou_matrix


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


def test_cascade_nets_run_channels_last():
    w = Detector(backend="torch").cascade.pnet.net.conv1.weight
    assert w.is_contiguous(memory_format=torch.channels_last)


def test_torch_nets_do_not_depend_on_the_thread_count(astronaut_rgb):
    """Workers and Dask tasks run with fewer threads than one process; their faces must be
    bit-identical. torch's own 1x1 convolutions, small matrix products and softmax round
    differently with 1 and 2 threads on some CPUs (an AMD EPYC)."""
    import cv2

    from emobatch.faces.detection.nets import load_nets
    from emobatch.faces.detection.runtimes import NetSpec, TorchNet

    nets = [TorchNet(NetSpec(n)) for n in load_nets()]
    rng = np.random.default_rng(0)
    cases = [(0, cv2.resize(astronaut_rgb, (s, s), interpolation=cv2.INTER_AREA)[None])
             for s in (12, 17, 61, 308)]
    cases += [(1, rng.uniform(0, 255, (b, 24, 24, 3)).astype(np.float32)) for b in (1, 3, 17, 300)]
    cases += [(2, rng.uniform(0, 255, (b, 48, 48, 3)).astype(np.float32)) for b in (1, 5, 8, 33)]
    for i, x in cases:
        outs = at_thread_counts(lambda: nets[i](x))
        for other in outs[1:]:
            for a, b in zip(outs[0], other):
                np.testing.assert_array_equal(a, b, err_msg=f"net {i}, input {x.shape}")


@pytest.fixture(scope="module")
def both():
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    return Detector(backend="torch"), Detector(backend="openvino", amp="off")


def test_openvino_nets_match_torch(both, astronaut_rgb):
    """Each network's outputs through OpenVINO equal torch's to float rounding, on uint8 and
    float inputs, for any batch size and input size; and do not depend on the thread count."""
    t, o = (d.cascade for d in both)
    assert (t.pnet.name, o.pnet.name) == ("torch", "openvino")
    assert both[1].backend == "openvino-f32"
    rng = np.random.default_rng(0)
    level = np.ascontiguousarray(astronaut_rgb[::3, ::3])
    cases = [(t.pnet, o.pnet, level[None]), (t.pnet, o.pnet, level[None, :77, :61]),
             (t.rnet, o.rnet, rng.uniform(0, 255, (37, 24, 24, 3)).astype(np.float32)),
             (t.onet, o.onet, rng.integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)),
             (t.onet, o.onet, rng.uniform(0, 255, (1, 48, 48, 3)).astype(np.float32))]
    for tn, on, x in cases:
        for a, b in zip(tn(x), on(x)):
            assert a.shape == b.shape
            np.testing.assert_allclose(b, a, atol=1e-4)
    from emobatch.faces.detection.nets import load_nets
    from emobatch.faces.detection.runtimes import NetSpec, OpenVINONet

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = OpenVINONet(NetSpec(load_nets()[1], 24))
    finally:
        torch.set_num_threads(threads)
    x = cases[2][2]
    for a, b in zip(one(x), o.rnet(x)):
        np.testing.assert_array_equal(a, b)


def test_openvino_cascade_finds_the_same_faces(both):
    import cv2

    p = shared_path("media", "groups", "facenet_pytorch_multiface.jpg")
    img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    t, o = (d.detect(img) for d in both)
    assert len(t) == len(o) > 3
    np.testing.assert_allclose(o.xyxy, t.xyxy, atol=0.01)
    np.testing.assert_allclose(o.landmarks, t.landmarks, atol=0.01)


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


def test_openvino_bf16_where_native_finds_the_same_faces(both):
    """With amp auto, a CPU with native bf16 runs OpenVINO's nets in bf16 (a CPU without it
    in fp32); the faces are the same ones, a little displaced."""
    import cv2

    from emobatch.faces.device import cpu_bf16_supported

    auto = Detector(backend="openvino")
    assert auto.backend == ("openvino-bf16" if cpu_bf16_supported() else "openvino-f32")
    bf16 = Detector(backend="openvino", amp="on")
    assert bf16.backend == "openvino-bf16"
    img = cv2.cvtColor(cv2.imread(str(shared_path("media", "groups", "facenet_pytorch_multiface.jpg"))),
                       cv2.COLOR_BGR2RGB)
    ref, got = both[0].detect(img), bf16.detect(img)
    _same_faces(got, ref, 0.85)
