"""Tests for emobatch.media.annotate: drawing, MP4 writing, image writing and output naming."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from emobatch.media.annotate import VideoWriter, annotated_name, blur_box, draw, write_image
from emobatch.types import EMOTIONS, FaceBatch


def _faces(boxes: list[list[float]], probs: bool = True, track: list[int] | None = None) -> FaceBatch:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    offs = np.array([[-0.2, -0.1], [0.2, -0.1], [0, 0.05], [-0.15, 0.2], [0.15, 0.2]], np.float32)
    size = (xyxy[:, 2] - xyxy[:, 0])[:, None, None]
    landmarks = np.stack([cx, cy], -1)[:, None, :] + offs[None] * size
    p = None
    if probs:
        p = np.full((n, 7), 0.02, np.float32)
        p[:, EMOTIONS.index("happy")] = 0.88
    return FaceBatch(xyxy=xyxy, score=np.full(n, 0.97, np.float32), landmarks=landmarks.astype(np.float32),
                     probs=p, track=None if track is None else np.array(track, np.int64))


def _grey(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 90, np.uint8)


# --------------------------------------------------------------------------- draw


@pytest.mark.parametrize("h,w", [(64, 64), (240, 320), (1080, 1920)])
def test_draw_copy_and_changes_box(h: int, w: int) -> None:
    img = _grey(h, w)
    before = img.copy()
    box = [w * 0.3, h * 0.4, w * 0.6, h * 0.8]
    out = draw(img, _faces([box]))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out is not img and np.array_equal(img, before)
    x1, y1, x2, y2 = (int(v) for v in box)
    assert (out[y1 - 2:y2 + 3, x1 - 2:x2 + 3] != before[y1 - 2:y2 + 3, x1 - 2:x2 + 3]).any()
    assert (out[:y1, x1:x2] != before[:y1, x1:x2]).any()          # label tag above the box
    assert np.array_equal(out[y1 + 5:y2 - 5, x2 + 8:], before[y1 + 5:y2 - 5, x2 + 8:])  # right: untouched


def test_draw_empty_is_unchanged_copy() -> None:
    img = _grey(50, 70)
    out = draw(img, FaceBatch())
    assert out is not img and np.array_equal(out, img)


def test_draw_without_probs_and_with_tracks() -> None:
    img = _grey(200, 300)
    a = draw(img, _faces([[50, 60, 150, 180]], probs=False))
    b = draw(img, _faces([[50, 60, 150, 180]], probs=True))
    c = draw(img, _faces([[50, 60, 150, 180]], probs=True, track=[3]))
    d = draw(img, _faces([[50, 60, 150, 180]], probs=True, track=[-1]))
    assert (a != img).any() and (b != img).any()
    assert not np.array_equal(a, b)              # score-only tag differs from emotion tag
    assert not np.array_equal(b, c)              # '#3 ' prefix changes the tag
    assert np.array_equal(b, d)                  # -1 = untracked: no prefix


def test_draw_box_partially_outside_and_at_top() -> None:
    img = _grey(120, 160)
    faces = _faces([[-30, -20, 60, 50], [120, 80, 200, 150]], track=[0, 1])
    out = draw(img, faces)
    assert out.shape == img.shape
    assert (out[:20, :60] != img[:20, :60]).any()     # tag drawn inside the frame at the top
    assert (out[80:, 120:] != img[80:, 120:]).any()


def test_draw_nonfinite_box_skipped() -> None:
    img = _grey(64, 64)
    faces = _faces([[10, 10, 40, 40]])
    faces.xyxy[0, 0] = np.nan
    assert np.array_equal(draw(img, faces), img)


# --------------------------------------------------------------------------- video


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, w, 3), np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def _probe(path: Path) -> tuple[av.video.stream.VideoStream, list[float], av.container.InputContainer]:
    c = av.open(str(path))
    s = c.streams.video[0]
    times = [float(f.pts * f.time_base) for f in c.decode(s)]
    return s, times, c


@pytest.mark.parametrize("fps,w,h", [(29.97, 101, 75), (25.0, 64, 48)])
def test_video_cfr(tmp_path: Path, fps: float, w: int, h: int) -> None:
    path = tmp_path / "out" / "v.mp4"
    with VideoWriter(path, fps, w, h) as vw:
        for im in _frames(20, h, w):
            vw.write(im)
        assert not path.exists()
    assert path.exists() and sorted(p.name for p in path.parent.iterdir()) == ["v.mp4"]
    s, times, c = _probe(path)
    try:
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert s.width % 2 == 0 and s.height % 2 == 0
        assert (s.width, s.height) == (w + w % 2, h + h % 2)
        assert len(times) == 20
        assert float(s.average_rate) == pytest.approx(fps, rel=1e-3)
        assert times == pytest.approx([i / fps for i in range(20)], abs=1e-3)
    finally:
        c.close()


def test_video_faststart_moov_before_mdat(tmp_path: Path) -> None:
    path = tmp_path / "f.mp4"
    with VideoWriter(path, 30, 64, 48) as vw:
        for im in _frames(5, 48, 64):
            vw.write(im)
    head = path.read_bytes()
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_video_vfr_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    ts = [0.0, 0.1, 0.15, 0.5, 0.52, 1.0, 1.2334]
    with VideoWriter(path, 30, 64, 48) as vw:
        for im, t in zip(_frames(len(ts), 48, 64), ts):
            vw.write(im, t_sec=t)
    _, times, c = _probe(path)
    c.close()
    assert times == pytest.approx(ts, abs=1e-3)


def test_video_non_increasing_t_bumped(tmp_path: Path) -> None:
    path = tmp_path / "dup.mp4"
    with VideoWriter(path, 30, 64, 48) as vw:
        for im, t in zip(_frames(4, 48, 64), [0.0, 0.1, 0.1, 0.05]):
            vw.write(im, t_sec=t)
    _, times, c = _probe(path)
    c.close()
    assert len(times) == 4 and all(b > a for a, b in zip(times, times[1:]))


def test_video_exception_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 25, 64, 48) as vw:
            for im in _frames(3, 48, 64):
                vw.write(im)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_video_no_frames_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with VideoWriter(tmp_path / "empty.mp4", 25, 64, 48):
            pass
    assert list(tmp_path.iterdir()) == []


def test_video_wrong_size_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with VideoWriter(tmp_path / "x.mp4", 25, 64, 48) as vw:
            vw.write(_grey(48, 65))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- images & names


@pytest.mark.parametrize("suffix,tol", [(".png", 0), (".jpg", 12)])
def test_write_image_roundtrip(tmp_path: Path, suffix: str, tol: int) -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :20] = (255, 0, 0)          # red in RGB
    img[:, 20:40] = (0, 255, 0)
    img[:, 40:] = (0, 0, 255)
    path = tmp_path / "sub" / f"img{suffix}"
    write_image(path, img)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert back.shape == img.shape
    err = np.abs(back.astype(int) - img.astype(int))
    for x0 in (0, 20, 40):                     # block interiors (JPEG chroma bleeds at edges)
        assert err[4:-4, x0 + 4:x0 + 16].max() <= tol


def test_annotated_name(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    a1, a2 = annotated_name(root / "x" / "a.mp4", root, out), annotated_name(root / "y" / "a.mp4", root, out)
    assert a1 == out / "x" / "a.mp4" and a2 == out / "y" / "a.mp4"
    assert annotated_name(root / "x" / "a.avi", root, out) == out / "x" / "a.avi.mp4"
    assert annotated_name(root / "photo.tiff", root, out) == out / "photo.tiff.png"
    assert annotated_name(root / "p.JPG", root, out) == out / "p.JPG"
    assert annotated_name(root / "p.webp", root, out) == out / "p.webp.png"
    assert annotated_name(root / "m.MOV", None, out) == out / "m.MOV.mp4"
    assert annotated_name(tmp_path / "elsewhere" / "b.png", root, out) == out / "b.png"
    assert annotated_name(root / "c.mkv", root / "c.mkv", out) == out / "c.mkv.mp4"


# --------------------------------------------------------------------------- blur


def test_draw_blur_hides_the_face_and_keeps_the_rest(astronaut_rgb: np.ndarray) -> None:
    img = astronaut_rgb
    box = [170.0, 40.0, 330.0, 240.0]  # the astronaut's face
    faces = _faces([box])
    sharp, blurred = draw(img, faces), draw(img, faces, blur=True)
    inner = (slice(60, 220), slice(190, 310))  # inside the box, clear of its outline and tag

    def detail(a: np.ndarray) -> float:  # high-frequency energy: what makes a face recognisable
        g = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(np.abs(cv2.Laplacian(g, cv2.CV_32F)).mean())

    assert detail(sharp[inner]) > 0.9 * detail(img[inner]), "without blur: only dots drawn"
    assert detail(blurred[inner]) < 0.1 * detail(img[inner])
    # mean colour kept (a mosaic, not a black box), and nothing outside the box changed
    assert abs(float(blurred[inner].mean()) - float(img[inner].mean())) < 12
    outside = np.ones(img.shape[:2], bool)
    outside[:260, 150:350] = False  # box, outline and the tag above it
    assert np.array_equal(blurred[outside], sharp[outside])
    assert np.array_equal(img, astronaut_rgb), "input not modified"


def test_blur_box_clips_and_ignores_degenerate_boxes() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (50, 60, 3), np.uint8)
    out = img.copy()
    blur_box(out, [-20.0, -20.0, 30.0, 25.0])  # partly outside the image: clipped
    blur_box(out, [40.0, 40.0, 40.5, 40.5])    # under 2 px: left alone

    def roughness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(np.float32), axis=1)).mean())

    assert roughness(out[:25, :30]) < 0.3 * roughness(img[:25, :30])
    assert np.array_equal(out[25:], img[25:]) and np.array_equal(out[:, 30:], img[:, 30:])


# --------------------------------------------------------------------------- tag layout


def _crowd(n_rows: int = 3, n_cols: int = 6, size: int = 70) -> FaceBatch:
    """A crowd of adjacent and overlapping faces (the 1080p clip's worst case, denser)."""
    rng = np.random.default_rng(7)
    boxes = [[300 + c * (size * 0.8) + rng.uniform(-8, 8), 300 + r * (size * 1.05) + rng.uniform(-8, 8)]
             for r in range(n_rows) for c in range(n_cols)]
    boxes = [[x, y, x + size, y + size] for x, y in boxes]
    return _faces(boxes, track=list(range(len(boxes))))


def _intersect(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def test_tags_cover_no_tag_and_no_face_in_a_crowd() -> None:
    from emobatch.media.annotate import tag_rects

    faces = _crowd()
    h, w = 1080, 1920
    texts, rects, leader = tag_rects(faces, h, w)
    assert len(texts) == len(faces) and all(t.startswith(f"#{i} ") for i, t in enumerate(texts))
    assert ((rects[:, :2] >= 0) & (rects[:, 2:] <= [w, h])).all()
    for i in range(len(faces)):
        assert not any(_intersect(rects[i], box) for box in faces.xyxy), i
        assert not any(_intersect(rects[i], rects[j]) for j in range(len(faces)) if j != i), i
    assert leader.any() and not leader.all()   # inner faces' tags sit away, with a line
    assert np.array_equal(rects, tag_rects(faces, h, w)[1])   # deterministic
    out = draw(np.full((h, w, 3), 90, np.uint8), faces)
    for (x1, y1, x2, y2), text in zip(rects, texts):       # each tag is drawn where laid out
        colour = out[y1 + 1, x1 + 1]
        assert (np.abs(out[y1:y2, x1:x2].astype(int) - colour).sum(-1) == 0).mean() > 0.5, text


def test_photo_tags_carry_the_face_index() -> None:
    from emobatch.media.annotate import tag_rects

    faces = _faces([[40, 60, 120, 150], [200, 60, 280, 150]])
    texts, _, _ = tag_rects(faces, 300, 400, still=True)
    assert texts == ["#0 happy 0.88", "#1 happy 0.88"]
    assert tag_rects(faces, 300, 400)[0] == ["happy 0.88", "happy 0.88"]   # video, untracked
    img = _grey(300, 400)
    assert not np.array_equal(draw(img, faces, still=True), draw(img, faces))
