"""The batched detection path (several frames per network call, as on a GPU) against the
per-frame path: the same faces, boxes, scores, landmarks and checkpoints, bit for bit on a
CPU. The CPU itself runs frame by frame (emobatch.faces.device.frames_per_call), so these
tests ask for batches explicitly."""
import itertools
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

import emobatch.pipeline as pipeline_mod
from conftest import SAMPLE, shared_path
from emobatch.config import Settings
from emobatch.faces.detection.detector import Detector
from emobatch.faces.device import CPU, MAX_FRAMES_PER_CALL, frames_per_call
from emobatch.faces.detection.runtimes import NetRuntime, openvino_available
from emobatch.faces.detection.video import VideoDetector
from emobatch.media.sources import iter_frames
from emobatch.faces.identity.collect import Identities
from emobatch.pipeline import Checkpoint, FacePipeline
from emobatch.types import FaceBatch

CLIP = SAMPLE / "astronaut_clip.mp4"
RUNTIMES = [NetRuntime("torch")] + ([NetRuntime("openvino"), NetRuntime("openvino", "bf16")]
                                    if openvino_available() else [])


# Frames share network calls only where a detect budget allows it, a GPU, and there torch
# runs the networks; the pipeline tests below emulate that path on the CPU with torch.
# OpenVINO is never batched across frames: in f32 on some CPUs (AVX-512 without bf16) its
# O-Net rounds a crop's outputs differently (1e-7) with the number of crops in the call.
BATCHED_CPU = dict(device="cpu", detector_backend="torch")


def frames(path: Path, n: int, step: int = 1) -> list[np.ndarray]:
    return [f.image for f in itertools.islice(iter_frames(path, step), n)]


def assert_same_faces(a: FaceBatch, b: FaceBatch) -> None:
    for name in ("xyxy", "score", "landmarks", "probs", "probs_raw", "track", "classified"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.name)
def test_detect_batch_equals_detect_frame_by_frame(runtime):
    images = frames(shared_path("media", "videos", "face_recognition_short_hamilton_clip.mp4"),
                    6, step=7)
    det = Detector(device=CPU, runtime=runtime)
    for scale in (1.0, 0.6):  # 0.6: a downscaled pass, every face re-measured by refine_batch
        alone = [det.detect(i, scale) for i in images]
        together = det.detect_batch(images, scale)
        assert sum(map(len, alone)) >= 6
        for a, b in zip(alone, together, strict=True):
            assert_same_faces(a, b)


def test_refine_batch_equals_refine_with_images_without_boxes():
    images = frames(CLIP, 3, step=9)
    det = Detector(device=CPU, runtime=NetRuntime("torch"))
    boxes = [det.detect(images[0]).xyxy, np.zeros((0, 4), np.float32), det.detect(images[2]).xyxy]
    together = det.refine_batch(images, boxes, min_score=0.5)
    for image, b, (faces, idx) in zip(images, boxes, together, strict=True):
        alone, alone_idx = det.refine(image, b, min_score=0.5)
        assert_same_faces(alone, faces)
        np.testing.assert_array_equal(alone_idx, idx)
    assert len(together[1][0]) == 0 and len(together[0][0]) == 1


def _stream(settings: Settings, path: Path, per_call: int, monkeypatch) -> list:
    monkeypatch.setattr(pipeline_mod, "frames_per_call", lambda *a, **k: per_call)
    return list(FacePipeline(settings).stream(path))


def assert_same_state(a, b) -> None:
    """Two checkpoint states (nested dicts, lists, arrays, numbers) equal, arrays bit for bit."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_state(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_state(x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def assert_same_stream(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert type(x) is type(y)
        if isinstance(x, Identities):
            for name in ("track", "frame", "face", "frames", "embedding"):
                np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
            continue
        if isinstance(x, Checkpoint):
            assert (x.next_index, x.processed) == (y.next_index, y.processed)
            # the same schedule; only the frames per call it was given differ
            assert_same_state({**x.state, "detector": {**x.state["detector"], "max_batch": 0}},
                              {**y.state, "detector": {**y.state["detector"], "max_batch": 0}})
            continue
        assert (x[0].index, x[0].t_sec) == (y[0].index, y[0].t_sec)
        assert_same_faces(x[1], y[1])


@pytest.mark.parametrize("clip", ["sample", "face_recognition_short_hamilton_clip.mp4",
                                  "pyfeat_noface_face.mov"])
def test_exhaustive_video_batched_equals_frame_by_frame(clip, monkeypatch):
    """Every frame a full detection: 5 frames per call give the per-frame path's stream,
    checkpoints (every 0.4 s, cutting chunks short) included."""
    path = CLIP if clip == "sample" else shared_path("media", "videos", clip)
    s = Settings(**BATCHED_CPU, quality="exhaustive", checkpoint_every=0.4,
                 every=1 if clip == "sample" else 4)
    one, five = _stream(s, path, 1, monkeypatch), _stream(s, path, 5, monkeypatch)
    assert sum(isinstance(x, Checkpoint) for x in one) >= 2
    # the stream also carries the ended tracks' embeddings (Identities) since person ids
    assert sum(len(x[1]) for x in one if isinstance(x, tuple)) >= 10 or clip != "sample"
    assert_same_stream(one, five)


def test_downscaled_full_detections_batched_equal_frame_by_frame(monkeypatch):
    """detect_every 1 at half size, every 2nd full detection at full size: the frames of a
    chunk go to the detector in two groups, by scale."""
    s = Settings(**BATCHED_CPU, detect_every=1, detect_scale=0.5, full_res_every=2)
    assert_same_stream(_stream(s, CLIP, 1, monkeypatch), _stream(s, CLIP, 6, monkeypatch))


def test_a_following_schedule_is_not_batched(monkeypatch):
    s = Settings(device="cpu", quality="balanced")
    seen = []
    orig = Detector.detect_batch

    def spy(self, images, scale=1.0):
        seen.append(len(images))
        return orig(self, images, scale)

    monkeypatch.setattr(Detector, "detect_batch", spy)
    assert_same_stream(_stream(s, CLIP, 1, monkeypatch), _stream(s, CLIP, 8, monkeypatch))
    assert seen and set(seen) == {1}


class _SmallCard(Detector):
    """A detector whose calls of more than `fits` frames run out of GPU memory, after
    taking some (a tensor whose life each later call checks)."""

    fits = 2
    calls: list[int] = []
    taken: list[weakref.ref] = []

    def detect_batch(self, images, scale=1.0):
        # what a failed call held must be freed before the next call, not kept by a
        # traceback still being handled
        assert all(t() is None for t in self.taken)
        self.calls.append(len(images))
        if len(images) > self.fits:
            held = torch.empty(len(images), 1000)
            self.taken.append(weakref.ref(held))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (a test's small card)")
        return super().detect_batch(images, scale)


def test_a_call_that_runs_out_of_gpu_memory_is_split_not_fatal():
    images = frames(CLIP, 8)
    plain = VideoDetector(Detector(device=CPU, runtime=NetRuntime("torch")), 1)
    small = VideoDetector(_SmallCard(device=CPU, runtime=NetRuntime("torch")), 1, max_batch=8)
    expected = [plain.detect(i) for i in images]
    got = small.detect_many(images[:5]) + small.detect_many(images[5:])
    for a, b in zip(expected, got, strict=True):
        assert_same_faces(a, b)
    assert small.max_batch == 2
    assert _SmallCard.calls[:4] == [5, 2, 2, 1] and max(_SmallCard.calls[4:]) <= 2


def test_frames_per_call_follows_the_plans_budget():
    from emobatch.plan import resolve_plan

    plan = resolve_plan(Settings(device="cpu"))
    assert plan.detect_budget == 0 and plan.metadata()["detect_budget"] == 0
    assert frames_per_call(plan.detect_budget, 1920, 1080, 20) == 1  # a CPU: frame by frame
    assert frames_per_call(35 << 30, 1920, 1080, 20) == MAX_FRAMES_PER_CALL  # an H200's quarter
    small = frames_per_call(1 << 30, 1920, 1080, 20)  # a 4 GB card's quarter
    assert 2 <= small < MAX_FRAMES_PER_CALL
    assert frames_per_call(1 << 30, 3840, 2160, 20) < small  # bigger frames, fewer a call
    assert frames_per_call(1 << 30, 1920, 1080, 20, scale=0.5) > small  # a downscaled pass
    assert frames_per_call(1 << 20, 3840, 2160, 12) == 1  # never none


def test_a_halved_batch_is_kept_in_the_checkpoint_state():
    vdet = VideoDetector(Detector(device=CPU, runtime=NetRuntime("torch")), 1, max_batch=8)
    vdet.max_batch = 2  # as after an out-of-memory call
    resumed = VideoDetector(Detector(device=CPU, runtime=NetRuntime("torch")), 1, max_batch=8)
    resumed.load_state_dict(vdet.state_dict())
    assert resumed.max_batch == 2
