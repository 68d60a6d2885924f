"""Crops cut on the networks' device (emobatch.faces.detection.crops) against OpenCV's own."""
import cv2
import numpy as np
import pytest
import torch

from emobatch.faces.device import CPU
from emobatch.faces.detection.crops import crop_windows, resize_crops
from emobatch.faces.detection.cascade import _crops


def _frame(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h))
    noisy = smooth.astype(np.int16) + rng.integers(-40, 40, (h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _boxes(h: int, w: int, n: int, seed: int = 1) -> np.ndarray:
    """Boxes from 1 to 200 px, some past the frame's edges, fractional corners."""
    rng = np.random.default_rng(seed)
    side = np.exp(rng.uniform(0, np.log(200), n))
    x1, y1 = rng.uniform(-30, w, n), rng.uniform(-30, h, n)
    aspect = rng.uniform(0.7, 1.4, n)
    return np.stack([x1, y1, x1 + side, y1 + side * aspect], 1).astype(np.float32)


@pytest.mark.parametrize("size", [24, 48])
def test_device_crops_equal_opencvs_to_float_rounding(size):
    img = _frame()
    boxes = _boxes(*img.shape[:2], 400)
    want, kept_boxes = _crops(img, boxes, size)
    win, keep = crop_windows(boxes, *img.shape[:2])
    np.testing.assert_array_equal(boxes[keep], kept_boxes)
    sides = np.minimum(win[:, 2], win[:, 3])
    assert (sides < size).any() and (sides >= size).any()  # both of OpenCV's modes
    assert (win[:, 2] != win[:, 3]).any()                   # clipped, unequal sides
    got = resize_crops(torch.from_numpy(img).float(), win, size).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=5e-4, rtol=0)


def test_integer_and_exact_ratios():
    """Windows exactly 1x, 2x and 3x the output, and 1 px: OpenCV's special cases."""
    img = _frame(seed=3)
    boxes = np.array([[11, 11, 35, 35], [11, 11, 59, 59], [1, 1, 73, 73],
                      [101, 51, 102, 52], [50, 50, 75, 74]], np.float32)
    want, _ = _crops(img, boxes, 24)
    win, _ = crop_windows(boxes, *img.shape[:2])
    got = resize_crops(torch.from_numpy(img).float(), win, 24).numpy()
    np.testing.assert_allclose(got, want, atol=5e-4, rtol=0)


def test_no_windows_give_no_crops():
    got = resize_crops(torch.zeros((10, 10, 3)), np.zeros((0, 4), np.int64), 24)
    assert got.shape == (0, 24, 24, 3)


def test_detection_with_device_crops_finds_the_host_crops_faces():
    """The whole cascade with its crops cut by torch (as on a GPU; here on the CPU) against
    OpenCV's crops: the same faces, boxes and landmarks to a hundredth of a pixel."""
    import itertools

    from conftest import shared_path
    from emobatch.faces.detection.detector import Detector
    from emobatch.faces.detection.runtimes import NetRuntime
    from emobatch.media.sources import iter_frames

    clip = shared_path("media", "videos", "face_recognition_short_hamilton_clip.mp4")
    images = [f.image for f in itertools.islice(iter_frames(clip, 9), 6)]
    host = Detector(device=torch.device("cpu"), runtime=NetRuntime("torch"), crops="host")
    device = Detector(device=torch.device("cpu"), runtime=NetRuntime("torch"), crops="device")
    assert host.cascade.crop_device is None and device.cascade.crop_device is not None
    for scale in (1.0, 0.6):
        a, b = host.detect_batch(images, scale), device.detect_batch(images, scale)
        assert sum(map(len, a)) >= 6
        for x, y in zip(a, b, strict=True):
            assert len(x) == len(y)
            np.testing.assert_allclose(x.xyxy, y.xyxy, atol=0.01)
            np.testing.assert_allclose(x.landmarks, y.landmarks, atol=0.01)
            np.testing.assert_allclose(x.score, y.score, atol=1e-4)


def test_crops_are_cut_on_a_gpu_by_default_only_where_torch_runs_the_networks():
    from emobatch.faces.detection.detector import _crop_device
    from emobatch.faces.detection.runtimes import NetRuntime

    assert _crop_device("auto", CPU, NetRuntime("torch")) is None
    assert _crop_device("auto", torch.device("cuda"), NetRuntime("torch")) == torch.device("cuda")
    assert _crop_device("device", CPU, NetRuntime("openvino")) is None
    assert _crop_device("host", torch.device("cuda"), NetRuntime("torch")) is None
    with pytest.raises(ValueError):
        _crop_device("gpu", CPU, NetRuntime("torch"))


def test_pyramid_levels_on_the_device_equal_opencvs():
    """Each level from the one before, as the cascade builds them: OpenCV's weights summed in
    its order give its very levels (an einsum's order was a grey level off on ~1e-4 of the
    pixels, and moved a face by 2 px)."""
    from emobatch.faces.detection.crops import resize_level

    host = _frame(360, 640, seed=4)
    dev = torch.from_numpy(host).float()
    h, w = host.shape[:2]
    for scale in (0.6, 0.6 * 0.709, 0.6 * 0.709 ** 2, 0.6 * 0.709 ** 5):
        size = (int(w * scale + 1), int(h * scale + 1))
        host = cv2.resize(host, size, interpolation=cv2.INTER_AREA)
        dev = resize_level(dev, size[1], size[0])
        np.testing.assert_array_equal(dev.numpy(), host)
