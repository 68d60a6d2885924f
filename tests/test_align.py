import cv2
import numpy as np

from emobatch.faces.align import TEMPLATE_48, Aligner, align_face, similarity
from emobatch.types import FaceBatch


def test_similarity_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = 0.3, 2.5, np.array([10.0, -4.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ rot.T + t
    m = similarity(src, dst)
    np.testing.assert_allclose(m[:, :2], s * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_similarity_never_reflects():
    src = TEMPLATE_48.astype(np.float64)
    mirrored = src.copy()
    mirrored[:, 0] *= -1
    m = similarity(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_template_eyes_level_and_centred():
    assert TEMPLATE_48[0, 1] == TEMPLATE_48[1, 1]
    assert abs((TEMPLATE_48[0, 0] + TEMPLATE_48[1, 0]) / 2 - 24) < 1e-5


def _synthetic_face(angle_deg: float, scale: float, size: int = 400):
    """A gray image with bright dots at the template landmarks, rotated/scaled/shifted."""
    c = np.array([size / 2, size / 2])
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (TEMPLATE_48 - 24) * scale @ rot.T + c
    img = np.zeros((size, size), np.uint8)
    for x, y in pts:
        cv2.circle(img, (int(round(x)), int(round(y))), int(scale), 255, -1)
    return img, pts.astype(np.float32)


def test_align_face_puts_landmarks_on_template():
    for angle, scale in [(0, 4.0), (25, 6.0), (-40, 2.0), (10, 1.0)]:
        img, pts = _synthetic_face(angle, scale)
        crop = align_face(img, pts)
        assert crop.shape == (48, 48) and crop.dtype == np.uint8
        for x, y in TEMPLATE_48:  # each dot lands where the template says
            assert crop[int(round(y)), int(round(x))] > 60, (angle, scale)


def test_aligner_stage_shapes(astronaut_rgb):
    empty = Aligner().align(astronaut_rgb, FaceBatch.empty())
    assert empty.crops.shape == (0, 48, 48)
    lm = (TEMPLATE_48 * 4 + 100)[None]
    faces = FaceBatch(np.array([[90, 90, 300, 300]], np.float32), np.ones(1, np.float32), lm)
    out = Aligner().align(astronaut_rgb, faces)
    assert out.crops.shape == (1, 48, 48) and out.crops.dtype == np.uint8
    assert faces.crops is None  # the input batch is not mutated


def test_rgb_path_converts_only_what_it_samples_with_the_same_result():
    """Aligner converts to gray only the region each crop samples; crops must equal those
    from the whole gray frame, also for faces cut by or outside the frame edges."""
    import cv2

    from emobatch.faces.align import Aligner, align_face

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), np.uint8), (5, 5), 2)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    base = np.array([[-0.3, -0.3], [0.3, -0.3], [0, 0.1], [-0.25, 0.4], [0.25, 0.4]])
    al = Aligner()
    for _ in range(200):
        c = rng.uniform([-80, -80], [400, 320])
        a = rng.uniform(-0.8, 0.8)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        lm = (base * rng.uniform(5, 300) @ rot.T + c).astype(np.float32)
        diff = np.abs(align_face(gray, lm).astype(int) - al._align_rgb(img, lm))
        assert diff.max() <= 1
