"""Tests for emobatch.media.sources: discovery, image decoding, video streaming.

All inputs are generated tiny in tmp_path; the one test on the shared sample
video skips when ../shared/data/media is absent.
"""
from __future__ import annotations

import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from emobatch.media import images, sources, video
from emobatch.errors import InputError
from emobatch.media.sources import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoInfo, discover,
                              iter_frames, iter_video, kind_of, read_image, video_info)

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
NTSC = Fraction(30000, 1001)
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


# --------------------------------------------------------------------------- helpers

def write_video(path: Path, n: int = 10, size: tuple[int, int] = (64, 48), codec: str = "libx264",
                rate: Fraction = NTSC, pts: list[int] | None = None,
                time_base: Fraction | None = None, rotation: int | None = None,
                options: dict[str, str] | None = None) -> Path:
    """Tiny test video: frame i has a red 8x8 block top-left and a grey bar i*5 px wide.

    pts/time_base: explicit timestamps (variable frame rate); rotation: display
    matrix, counter-clockwise degrees; options: muxer options (movflags ...).
    """
    w, h = size
    container = av.open(str(path), "w", options=options or {})
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    if time_base is not None:
        stream.time_base = stream.codec_context.time_base = time_base
    if rotation is not None:
        stream.set_display_rotation(rotation)
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, : (i * 5) % w] = 128
        img[:8, :8] = RED
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        if pts is not None:
            frame.pts, frame.time_base = pts[i], time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    """Copy the first `fraction` of src's bytes to dst."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height but holds no pixel data (cheap 'bomb')."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def collect(frames) -> tuple[list, InputError | None]:
    """Drain an iterator of frames; return (frames got, the InputError raised or None)."""
    got = []
    try:
        for f in frames:
            got.append(f)
    except InputError as exc:
        return got, exc
    return got, None


def assert_rgb_u8(image: np.ndarray, shape: tuple[int, int]) -> None:
    assert image.dtype == np.uint8 and image.shape == (*shape, 3)


# --------------------------------------------------------------------------- discovery

def test_kind_of_is_case_insensitive():
    assert kind_of(Path("a/B.JPG")) == "image"
    assert kind_of(Path("x.tiff")) == "image"
    assert kind_of(Path("clip.MOV")) == "video"
    assert kind_of(Path("notes.txt")) is None
    assert kind_of(Path("noext")) is None
    assert ".webp" in IMAGE_SUFFIXES and ".webm" in VIDEO_SUFFIXES


def test_discover_walks_sorted_skips_hidden_and_non_media(tmp_path):
    root = tmp_path / "in"
    for rel in ["b.jpg", "a.PNG", "sub/z.mp4", "sub/deeper/c.mkv", "sub/notes.txt",
                ".hidden.jpg", ".cache/x.jpg", "sub/.git/y.png", "readme.md", "A_upper.webp"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    got = discover([root])
    assert [p.relative_to(root).as_posix() for p in got] == [
        "A_upper.webp", "a.PNG", "b.jpg", "sub/deeper/c.mkv", "sub/z.mp4"]


def test_discover_keeps_explicit_files_missing_paths_and_dedupes(tmp_path):
    (tmp_path / "d").mkdir()
    img = tmp_path / "d" / "x.jpg"
    img.write_bytes(b"x")
    txt = tmp_path / "notes.txt"
    txt.write_text("hi")
    missing = tmp_path / "nope.jpg"
    got = discover([txt, str(tmp_path / "d"), missing, img, tmp_path / "d" / ".." / "d" / "x.jpg", txt])
    assert got == [txt, img, missing]
    assert discover([]) == []


# --------------------------------------------------------------------------- images

def test_rgb_png_keeps_channel_order(tmp_path):
    frame = read_image(save(Image.new("RGB", (30, 20), RED), tmp_path / "red.png"))
    assert_rgb_u8(frame.image, (20, 30))
    assert tuple(frame.image[5, 5]) == RED
    assert frame.index == 0 and frame.t_sec is None and frame.source == tmp_path / "red.png"


@pytest.mark.parametrize("name, make, expected", [
    ("grey.png", lambda: Image.new("L", (30, 20), 77), (77, 77, 77)),
    ("grey.jpg", lambda: Image.new("L", (30, 20), 200), (200, 200, 200)),
    ("bw.png", lambda: Image.new("1", (30, 20), 1), WHITE),
    # transparent pixels are composited on white
    ("rgba.png", lambda: Image.new("RGBA", (30, 20), (255, 0, 0, 0)), WHITE),
    ("rgba_opaque.png", lambda: Image.new("RGBA", (30, 20), (255, 0, 0, 255)), RED),
    ("la.png", lambda: Image.new("LA", (30, 20), (0, 128)), (127, 127, 127)),
    ("rgba.webp", lambda: Image.new("RGBA", (30, 20), (0, 0, 255, 255)), BLUE),
])
def test_image_modes_to_rgb(tmp_path, name, make, expected):
    frame = read_image(save(make(), tmp_path / name))
    assert_rgb_u8(frame.image, (20, 30))
    assert np.abs(frame.image[10, 10].astype(int) - expected).max() <= 3


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (30, 20), 1)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(0, (0, 0, 10, 20))  # left third: palette index 0 = transparent
    path = save(img, tmp_path / "p.png", transparency=0)
    assert Image.open(path).mode == "P"
    rgb = read_image(path).image
    assert_rgb_u8(rgb, (20, 30))
    assert tuple(rgb[5, 5]) == WHITE and tuple(rgb[5, 25]) == BLUE


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    rgb = read_image(path).image
    assert_rgb_u8(rgb, (20, 30))
    assert np.abs(rgb[10, 10].astype(int) - RED).max() <= 3


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    grey = np.zeros((20, 30), np.uint16)
    grey[:, 10:20], grey[:, 20:] = 32768, 65535
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), grey)
    assert Image.open(path).mode.startswith("I;16")
    rgb = read_image(path).image
    assert_rgb_u8(rgb, (20, 30))
    assert [int(rgb[0, x, 0]) for x in (0, 15, 25)] == [0, 128, 255]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_32bit_int_and_float_tiff(tmp_path):
    big = np.full((20, 30), 2**31 - 1, np.int32)
    big[:, :10] = 0
    rgb = read_image(save(Image.fromarray(big), tmp_path / "i32.tif")).image
    assert_rgb_u8(rgb, (20, 30))
    assert int(rgb[0, 0, 0]) == 0 and int(rgb[0, 20, 0]) == 127  # (2**31 - 1) / (2**32 - 1) * 255
    ramp = np.tile(np.linspace(0, 1, 30, dtype=np.float32), (20, 1))
    rgb = read_image(save(Image.fromarray(ramp), tmp_path / "f.tif")).image
    assert int(rgb[0, 0, 0]) == 0 and int(rgb[0, -1, 0]) == 255


def test_multipage_tiff_uses_first_page(tmp_path):
    pages = [Image.new("RGB", (30, 20), RED), Image.new("RGB", (30, 20), BLUE)]
    path = save(pages[0], tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    assert getattr(Image.open(path), "n_frames", 1) == 2
    assert tuple(read_image(path).image[5, 5]) == RED


def test_exif_orientation_6_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 20, 20))  # stored: left half red, right half blue
    exif = img.getexif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = save(img, tmp_path / "rot6.jpg", exif=exif, quality=95)
    rgb = read_image(path).image
    assert_rgb_u8(rgb, (40, 20))  # W/H swapped
    assert np.abs(rgb[5, 10].astype(int) - RED).max() < 40  # left half -> top
    assert np.abs(rgb[35, 10].astype(int) - BLUE).max() < 40


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "zero-byte"),
    (lambda p: p.write_text("this is not an image"), "not a decodable image"),
    (lambda p: None, "file not found"),
    (lambda p: p.mkdir(), "directory"),
])
def test_bad_images_raise_input_error(tmp_path, make, message):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(InputError, match=message):
        read_image(path)
    with pytest.raises(InputError, match=message):
        list(iter_frames(path))


@pytest.mark.parametrize("suffix, kw", [(".jpg", {"quality": 90}), (".png", {})])
def test_truncated_image_raises_input_error(tmp_path, suffix, kw):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = save(Image.fromarray(noise), tmp_path / f"full{suffix}", **kw)
    cut = truncate(full, tmp_path / f"cut{suffix}", 0.5)
    with pytest.raises(InputError, match="truncated"):
        read_image(cut)


def test_too_many_pixels(tmp_path, monkeypatch):
    # as in a process emobatch owns (emobatch.batch.process_tuning.configure_process)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", sources.MAX_IMAGE_PIXELS)
    with pytest.raises(InputError, match="too large"):  # above our limit, below 2x Pillow's
        read_image(png_header_only(tmp_path / "big.png", 15_000, 15_000))
    with pytest.raises(InputError, match="too large"):  # Pillow's own bomb error
        read_image(png_header_only(tmp_path / "huge.png", 30_000, 30_000))
    small = save(Image.new("RGB", (30, 20)), tmp_path / "small.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 599)
    with pytest.raises(InputError, match="too large"):
        read_image(small)


def test_pillows_own_limit_is_a_clear_input_error(tmp_path, monkeypatch):
    """As a library emobatch leaves Pillow's limit as the application set it: an image over
    it (180 M pixels, under ours) is an InputError naming its pixels and the limit; where
    emobatch owns the process (raise_pillow_limit) only our limit counts."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's default
    big = png_header_only(tmp_path / "big.png", 15_000, 12_000)
    with pytest.raises(InputError, match="image too large: 180000000 pixels, over the limit "
                                         "of 178956970 "):
        read_image(big)
    images.raise_pillow_limit()
    assert Image.MAX_IMAGE_PIXELS == sources.MAX_IMAGE_PIXELS
    with pytest.raises(InputError, match="truncated or corrupt"):  # past both size guards
        read_image(big)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path):
    path = save(Image.new("RGB", (4, 4)), tmp_path / "locked.png")
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            list(iter_frames(path))
    finally:
        path.chmod(0o644)


# --------------------------------------------------------------------------- dispatch

def test_iter_frames_image_yields_one_frame(tmp_path):
    path = save(Image.new("RGB", (30, 20), RED), tmp_path / "one.jpg")
    frames = list(iter_frames(path, every=5))
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].t_sec is None


def test_unsupported_suffix(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(InputError, match=r'unsupported file type "\.txt": neither an image'):
        list(iter_frames(txt))
    with pytest.raises(InputError, match="file not found"):  # missing wins over the suffix
        list(iter_frames(tmp_path / "gone.txt"))


# --------------------------------------------------------------------------- videos

@pytest.fixture(scope="module")
def ntsc_mp4(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "ntsc.mp4")


def test_video_ntsc_timestamps_and_info(ntsc_mp4):
    info = video_info(ntsc_mp4)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.n_frames) == (64, 48, 10)
    assert info.fps == pytest.approx(29.97, abs=0.001)
    assert info.duration == pytest.approx(10 * 1001 / 30000, abs=1e-3)
    frames = list(iter_video(ntsc_mp4))
    assert [f.index for f in frames] == list(range(10))
    assert [f.t_sec for f in frames] == pytest.approx([i * 1001 / 30000 for i in range(10)], abs=1e-6)
    for f in frames:
        assert_rgb_u8(f.image, (48, 64))
        assert f.source == ntsc_mp4
    assert np.abs(frames[0].image[3, 3].astype(int) - RED).max() < 40  # RGB, not BGR


def test_video_every_n(ntsc_mp4):
    frames = list(iter_frames(ntsc_mp4, every=3))
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert frames[1].t_sec == pytest.approx(3 * 1001 / 30000, abs=1e-6)
    with pytest.raises(ValueError):
        next(iter_video(ntsc_mp4, every=0))


def test_video_generator_close_closes_container(ntsc_mp4, monkeypatch):
    opened = []

    class Spy:
        def __init__(self, container):
            self.container, self.closed = container, False

        def __getattr__(self, name):
            return getattr(self.container, name)

        def close(self):
            self.closed = True
            self.container.close()

    real_open = video._open_video
    monkeypatch.setattr(video, "_open_video", lambda p: opened.append(Spy(real_open(p))) or opened[-1])
    gen = iter_video(ntsc_mp4)
    next(gen)
    gen.close()  # consumer stops early
    assert opened[-1].closed
    list(iter_video(ntsc_mp4))
    assert opened[-1].closed


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate_exact_timestamps(tmp_path, suffix):
    pts_ms = [0, 40, 70, 200, 210, 500, 1000, 1033, 1066, 1500]
    path = write_video(tmp_path / f"vfr{suffix}", pts=pts_ms, time_base=Fraction(1, 1000))
    frames = list(iter_video(path))
    assert [f.t_sec for f in frames] == pytest.approx([p / 1000 for p in pts_ms], abs=1e-9)


def test_mpeg4_avi(tmp_path):
    path = write_video(tmp_path / "a.avi", codec="mpeg4")
    frames = list(iter_frames(path))
    assert len(frames) == 10
    assert frames[-1].t_sec == pytest.approx(9 * 1001 / 30000, abs=1e-6)
    assert video_info(path).n_frames == 10


def test_display_rotation_is_applied(tmp_path):
    path = write_video(tmp_path / "rot.mp4", rotation=90)  # 90 degrees counter-clockwise
    assert (video_info(path).width, video_info(path).height) == (64, 48)  # coded size
    frame = next(iter(iter_video(path)))
    assert_rgb_u8(frame.image, (64, 48))
    # the red top-left block ends up bottom-left after a counter-clockwise turn
    assert np.abs(frame.image[-4, 3].astype(int) - RED).max() < 40


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory) -> dict[str, Path]:
    """60-frame 160x120 videos: mp4 (index at the end), fast-start mp4, mkv, avi."""
    d = tmp_path_factory.mktemp("long")
    kw = {"n": 60, "size": (160, 120)}
    return {"mp4": write_video(d / "long.mp4", **kw),
            "faststart": write_video(d / "fs.mp4", options={"movflags": "+faststart"}, **kw),
            "mkv": write_video(d / "long.mkv", **kw),
            "avi": write_video(d / "long.avi", codec="mpeg4", **kw)}


def test_complete_long_videos_decode_fully(long_videos):
    for path in long_videos.values():
        got, err = collect(iter_video(path, every=10))
        assert err is None and [f.index for f in got] == [0, 10, 20, 30, 40, 50]


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.97])
def test_truncated_mp4_with_index_at_end_fails_at_open(tmp_path, long_videos, fraction):
    cut = truncate(long_videos["mp4"], tmp_path / "cut.mp4", fraction)
    got, err = collect(iter_frames(cut))
    assert got == [] and err is not None
    assert "not a decodable video" in str(err) and "truncated" in str(err)
    with pytest.raises(InputError):
        video_info(cut)


@pytest.mark.parametrize("kind", ["faststart", "mkv", "avi"])
def test_truncated_mid_stream_yields_then_raises(tmp_path, long_videos, kind):
    src = long_videos[kind]
    cut = truncate(src, tmp_path / f"cut{src.suffix}", 0.6)
    got, err = collect(iter_frames(cut))
    assert err is not None and "truncated" in str(err)
    assert 0 < len(got) < 60
    assert [f.index for f in got] == list(range(len(got)))


def test_video_without_video_stream(tmp_path):
    path = tmp_path / "audio_only.mkv"
    container = av.open(str(path), "w")
    stream = container.add_stream("pcm_s16le", rate=8000)
    for i in range(3):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, i * 800
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    with pytest.raises(InputError, match="no video stream"):
        list(iter_frames(path))
    with pytest.raises(InputError, match="no video stream"):
        video_info(path)


def test_garbage_and_empty_video_files(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(InputError, match="not a decodable video"):
        list(iter_frames(junk))
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="zero-byte"):
        list(iter_frames(empty))
    with pytest.raises(InputError, match="file not found"):
        video_info(tmp_path / "missing.mov")


# --------------------------------------------------------------------------- shared media

def test_shared_facenet_video():
    path = SHARED_MEDIA / "videos" / "facenet_pytorch_video.mp4"
    if not path.is_file():
        pytest.skip(f"shared media not present: {path}")
    info = video_info(path)
    assert (info.width, info.height, info.fps, info.n_frames) == (1920, 1080, 25.0, 105)
    last = None
    count = 0
    for frame in iter_video(path):  # streamed: only the last frame is kept
        count, last = count + 1, frame
    assert count == 105
    assert last.index == 104 and last.t_sec == pytest.approx(4.16, abs=1e-9)
    assert_rgb_u8(last.image, (1080, 1920))


def test_yuv420p_frames_match_swscale_rgb():
    from conftest import SAMPLE
    from emobatch.media.video import _rgb

    with av.open(str(SAMPLE / "astronaut_clip.mp4")) as c:
        frame = next(c.decode(video=0))
        assert frame.format.name == "yuv420p"
        fast, ref = _rgb(frame).astype(int), frame.to_ndarray(format="rgb24").astype(int)
    assert fast.shape == ref.shape and np.abs(fast - ref).mean() < 2 and np.abs(fast - ref).max() <= 12


def test_too_many_video_pixels(ntsc_mp4, monkeypatch):
    """Item 7: videos have a pixel limit as photos do (a 750 KB MKV of 16000x16000 frames
    took 8.7 GB): its header is refused, and so is a frame grown past it mid-stream."""
    info = video.video_info(ntsc_mp4)
    assert info.width * info.height <= video.MAX_VIDEO_PIXELS
    assert 16000 * 16000 > video.MAX_VIDEO_PIXELS >= 7680 * 4320
    monkeypatch.setattr(video, "MAX_VIDEO_PIXELS", info.width * info.height - 1)
    with pytest.raises(InputError, match="video frames too large"):
        video.video_info(ntsc_mp4)
    with pytest.raises(InputError, match="video frames too large"):
        next(iter_frames(ntsc_mp4))
    monkeypatch.setattr(video, "_video_stream", lambda c: c.streams.video[0])  # header passes
    with pytest.raises(InputError, match="video frames too large"):
        next(iter_frames(ntsc_mp4))


def test_image_conversion_errors_say_what_happened(tmp_path, monkeypatch):
    """Item 17: every exception converting a photo was 'unsupported image mode', even a
    MemoryError; now only Pillow's refusals are, memory is named, and a bug propagates."""
    path = save(Image.new("L", (30, 20)), tmp_path / "grey.png")

    def fail(exc):
        def _to_rgb(img):
            raise exc
        return _to_rgb

    monkeypatch.setattr(images, "_to_rgb", fail(MemoryError()))
    with pytest.raises(InputError, match="not enough memory to convert this 30x20 L image"):
        read_image(path)
    monkeypatch.setattr(images, "_to_rgb", fail(ValueError("conversion not supported")))
    with pytest.raises(InputError, match="unsupported image mode 'L'"):
        read_image(path)
    monkeypatch.setattr(images, "_to_rgb", fail(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        read_image(path)
