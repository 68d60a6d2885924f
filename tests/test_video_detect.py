import numpy as np
import pytest

from conftest import SAMPLE
from emobatch.config import QUALITY_PRESETS, Settings
from emobatch.media.sources import iter_video
from emobatch.faces.boxes import iou_matrix
from emobatch.faces.detection.video import VideoDetector


@pytest.fixture(scope="module")
def clip_frames():
    return [f.image for f in iter_video(SAMPLE / "astronaut_clip.mp4", every=3)]


def test_refine_follows_the_face(detector, clip_frames):
    full = detector.detect(clip_frames[0])
    faces, idx = detector.refine(clip_frames[1], full.xyxy, min_score=0.5)
    assert list(idx) == [0]
    again = detector.detect(clip_frames[1])
    assert iou_matrix(faces.xyxy, again.xyxy)[0, 0] > 0.6
    # landmarks agree with the full detector's to a few pixels
    assert np.abs(faces.landmarks[0] - again.landmarks[0]).max() < 0.15 * (again.xyxy[0, 2] - again.xyxy[0, 0])


def test_refine_empty_and_no_face(detector, clip_frames):
    faces, idx = detector.refine(clip_frames[0], np.zeros((0, 4), np.float32))
    assert len(faces) == 0 and idx.shape == (0,)
    blank = np.full_like(clip_frames[0], 128)
    faces, idx = detector.refine(blank, np.array([[10, 10, 100, 100]], np.float32))
    assert len(faces) == 0


def test_schedule_runs_full_detection_every_n(detector, clip_frames):
    vd = VideoDetector(detector, detect_every=4)
    found = [len(vd.detect(img)) for img in clip_frames]
    assert all(n == 1 for n in found)
    assert vd.full_runs == (len(clip_frames) + 3) // 4


def test_scene_cut_and_lost_face_force_full_detection(detector, clip_frames):
    vd = VideoDetector(detector, detect_every=100)
    vd.detect(clip_frames[0])
    vd.detect(clip_frames[1])
    assert vd.full_runs == 1
    blank = np.zeros_like(clip_frames[0])
    assert len(vd.detect(blank)) == 0  # scene cut -> full detection, finds nothing
    assert vd.full_runs == 2


def test_detection_plan_presets():
    assert Settings(quality="exhaustive").detection_plan(1920, 1080) == (1, 1.0, 0)
    every, scale, full_res = Settings().detection_plan(1920, 1080)
    assert every == QUALITY_PRESETS["balanced"][0] and scale == pytest.approx(0.5)
    assert full_res == QUALITY_PRESETS["balanced"][2]
    assert Settings().detection_plan(320, 320)[1] == 1.0
    assert Settings(detect_every=2, detect_scale=0.7, full_res_every=0).detection_plan(
        1920, 1080) == (2, 0.7, 0)


def test_bad_args(detector):
    with pytest.raises(ValueError):
        VideoDetector(detector, detect_every=0)
    with pytest.raises(ValueError):
        VideoDetector(detector, detect_scale=1.5)


def test_full_pass_keeps_followed_faces_it_missed(detector, clip_frames, monkeypatch):
    vd = VideoDetector(detector, detect_every=2)
    assert len(vd.detect(clip_frames[0])) == 1
    assert len(vd.detect(clip_frames[1])) == 1  # followed by O-Net
    # the full detector now "misses" the face: O-Net still confirms it, so it is kept
    monkeypatch.setattr(detector, "detect", lambda image, scale=1.0: type(vd._prev).empty())
    faces = vd.detect(clip_frames[2])
    assert vd.full_runs == 2 and len(faces) == 1


def test_every_nth_full_detection_runs_at_full_resolution(detector, clip_frames, monkeypatch):
    scales = []
    real = detector.detect
    monkeypatch.setattr(detector, "detect", lambda image, scale=1.0: scales.append(scale) or real(image, scale))
    vd = VideoDetector(detector, detect_every=2, detect_scale=0.5, full_res_every=3)
    for img in clip_frames:
        vd.detect(img)
    assert len(scales) >= 4
    assert scales == [1.0 if i % 3 == 0 else 0.5 for i in range(len(scales))]


def test_face_lost_by_onet_is_searched_for_without_a_full_pass(detector, clip_frames, monkeypatch):
    vd = VideoDetector(detector, detect_every=100)
    assert len(vd.detect(clip_frames[0])) == 1
    empty = (type(vd._prev).empty(), np.zeros(0, np.int64))
    monkeypatch.setattr(detector, "refine", lambda *a, **k: empty)  # O-Net "loses" the face
    faces = vd.detect(clip_frames[1])
    assert len(faces) == 1 and vd.full_runs == 1 and not vd._force
    assert iou_matrix(faces.xyxy, detector.detect(clip_frames[1]).xyxy)[0, 0] > 0.7


def test_velocity_carried_across_a_full_pass(detector, clip_frames):
    vd = VideoDetector(detector, detect_every=2)
    vd.detect(clip_frames[0])
    vd.detect(clip_frames[1])
    vd.detect(clip_frames[2])  # full pass: the face matches the followed one
    assert vd._vel.shape == (1, 4)
    assert np.abs(vd._vel).sum() > 0 or np.allclose(clip_frames[1], clip_frames[2])


def test_video_tta_off_unless_given():
    assert Settings().video_tta() == "none"
    assert Settings(quality="exhaustive").video_tta() == "none"
    assert Settings(tta="flip").video_tta() == "flip"
