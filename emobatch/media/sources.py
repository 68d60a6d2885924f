"""Input discovery and decoding: folders of photos/videos -> a stream of `Frame`s.

Every image comes out as (H, W, 3) uint8 RGB, upright (EXIF orientation / video
display rotation applied). Problems with a single input raise `InputError`
with a short, user-facing reason, so a batch run can report the item and go on.
"""
from __future__ import annotations

import functools
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import cv2
import numpy as np
from PIL import Image, ImageOps

from .filetypes import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Kind, kind_by_suffix, suffix_of
from ..types import Frame
from ..errors import InputError

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "Discovery", "InputError", "VideoInfo", "discover",
           "discover_inputs", "iter_frames", "iter_video", "kind_of", "probe_kind", "read_image",
           "video_info"]

NO_SUFFIX = "(none)"
"""Key of Discovery.skipped for files whose name has no suffix."""

MAX_IMAGE_PIXELS = 200_000_000
"""Images with more pixels than this raise InputError (decompression-bomb guard)."""


def raise_pillow_limit() -> None:
    """Make Pillow's own guard no stricter than MAX_IMAGE_PIXELS, process-wide.

    Pillow warns above Image.MAX_IMAGE_PIXELS and refuses twice that (default ~89 M / ~179
    M pixels). read_image checks MAX_IMAGE_PIXELS itself, so in a process emobatch owns
    (`emobatch.memory.configure_process`) ours is the one that counts; as a library it
    leaves Pillow's setting to the application, whose stricter limit then applies.
    """
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


_BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited onto white (how most viewers show them)."""


# --------------------------------------------------------------------------- discovery

def kind_of(path: Path) -> Kind | None:
    """'image' / 'video' for an input, None if neither.

    By the suffix (case-insensitive, `emobatch.media.filetypes`) when it is a known one; an existing
    file with any other suffix is probed by content (`probe_kind`), so a video FFmpeg decodes
    is a video whatever it is called.
    """
    kind = kind_by_suffix(path)
    if kind is not None:
        return kind
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path) or st.st_size == 0:
        return None
    return _probe_cached(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=256)
def _probe_cached(path: str, mtime_ns: int, size: int) -> Kind | None:
    # keyed by mtime and size too, so a file replaced under the same name is probed again
    return probe_kind(Path(path))


def probe_kind(path: Path) -> Kind | None:
    """What a file is by its content: 'image' if Pillow decodes it, else 'video' if PyAV
    opens it with a video stream, else None (also for unreadable files). Reads the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # Pillow identifies some video headers (MPEG) it cannot decode
        return "image"
    except Exception:  # not an image Pillow decodes
        pass
    try:
        with av.open(str(path), mode="r") as container:
            return "video" if container.streams.video else None
    except Exception:  # not a container FFmpeg opens
        return None


@dataclass
class Discovery:
    """What `discover_inputs` found.

    files: the inputs to process, in input order (see `discover`);
    skipped: files a folder walk left out because their suffix is neither a known image nor
        video suffix, counted by lower-case suffix ('.txt': 3; NO_SUFFIX for names without
        one), sorted by suffix; hidden files are not counted;
    unreadable: folders (given or met on the walk) that could not be listed, with the reason.
    """

    files: list[Path] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def _walk_media(folder: Path, skipped: Counter[str],
                unreadable: list[tuple[Path, str]]) -> list[Path]:
    """Media files under `folder`, recursively, sorted; hidden entries skipped.

    Non-media files are counted into `skipped` by suffix and folders that cannot be listed
    are appended to `unreadable`. Symlinked folders are not followed (no cycles); symlinked
    files are kept.
    """
    def failed(exc: OSError) -> None:
        unreadable.append((Path(exc.filename or folder), exc.strerror or str(exc)))

    found: list[Path] = []
    for root, dirs, files in os.walk(folder, onerror=failed):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith("."):
                continue
            if kind_by_suffix(f) is None:
                skipped[suffix_of(f) or NO_SUFFIX] += 1
            else:
                found.append(Path(root, f))
    return sorted(found)


def discover_inputs(inputs: Sequence[str | Path]) -> Discovery:
    """Expand files and folders into the files to process, and say what a walk left out.

    Folders are walked recursively (sorted by path parts, hidden files/dirs skipped) and only
    known image/video suffixes are kept; the others are counted in `.skipped` by suffix, and
    folders that cannot be listed go to `.unreadable`. Files named explicitly are kept
    whatever their suffix (processing probes their content), and paths that don't exist are
    kept too, so the run reports them as failed items. Duplicates (same resolved path) are
    dropped, keeping the first occurrence.
    """
    skipped: Counter[str] = Counter()
    found = Discovery()
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        walked = _walk_media(path, skipped, found.unreadable) if path.is_dir() else [path]
        for candidate in walked:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.files.append(candidate)
    found.skipped = dict(sorted(skipped.items()))
    return found


def discover(inputs: Sequence[str | Path]) -> list[Path]:
    """The files to process (`discover_inputs(inputs).files`)."""
    return discover_inputs(inputs).files


def _check_file(path: Path) -> None:
    """Raise InputError unless `path` is an existing, readable, non-empty file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError("file not found") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot access file: {exc.strerror or exc}") from None
    if path.is_dir():
        raise InputError("is a directory, not a file")
    if st.st_size == 0:
        raise InputError("zero-byte file")
    if not os.access(path, os.R_OK):
        raise InputError("permission denied")


def _unsupported(path: Path) -> InputError:
    suffix = path.suffix or NO_SUFFIX
    return InputError(f'unsupported file type "{suffix}": neither an image Pillow decodes '
                      f'nor a video FFmpeg opens')


# --------------------------------------------------------------------------- images

def _bit_depth(img: Image.Image, arr: np.ndarray) -> int:
    """Bits per sample of an integer grey image ('I;16*' or 'I'), for scaling to 8 bit.

    Uses the declared depth (mode, TIFF BitsPerSample, PNG's 16-bit max) when
    known, otherwise the smallest of 8/16/32 that holds the values.
    """
    if img.mode.startswith("I;16"):
        return 16
    tag = getattr(img, "tag_v2", None)  # TIFF
    if tag is not None and 258 in tag:
        bits = tag[258]
        return int(bits[0] if isinstance(bits, tuple) else bits)
    if img.format == "PNG":
        return 16
    peak = int(arr.max(initial=0))
    return 8 if peak < 2**8 else 16 if peak < 2**16 else 32


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB.

    Alpha / palette transparency is composited on white. 16/32-bit integer
    grey is scaled by its bit depth (65535 -> 255), not clipped. Float ('F')
    in [0, 1] is scaled by 255, any other range is min-max normalised.
    """
    mode = img.mode
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)
    if mode.startswith("I"):  # I, I;16, I;16B, I;16L, I;16N ...
        arr = np.asarray(img).astype(np.float64)
        scale = 255.0 / (2 ** _bit_depth(img, arr) - 1)
        grey = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        grey = np.rint(arr * 255.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if "A" in mode or "a" in mode or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return np.array(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.array(img.convert("RGB"), dtype=np.uint8)  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _open_image(path: Path) -> Image.Image:
    """Open + fully decode (so truncation shows up now) + size guard; first frame only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except FileNotFoundError:
        raise InputError("file not found") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except Image.DecompressionBombError as exc:
        raise _over_pillow_limit(exc) from None
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error, ...
        raise InputError(f"not a decodable image: {exc}") from exc
    n_pixels = img.width * img.height
    if n_pixels > MAX_IMAGE_PIXELS:
        img.close()
        raise InputError(f"image too large: {img.width}x{img.height} = {n_pixels} pixels "
                         f"(limit {MAX_IMAGE_PIXELS})")
    try:
        img.load()  # first frame of multi-frame files (GIF/TIFF pages)
    except Exception as exc:  # OSError('image file is truncated ...'), ValueError, ...
        img.close()
        raise InputError(f"truncated or corrupt image: {exc}") from exc
    return img


def _over_pillow_limit(exc: Image.DecompressionBombError) -> InputError:
    """Pillow's refusal as our InputError, with the pixel count Pillow's message gives."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{found.group(1)} pixels" if found else "too many pixels"
    return InputError(f"image too large: {size}, over the limit of {2 * Image.MAX_IMAGE_PIXELS} "
                      f"(twice Pillow's Image.MAX_IMAGE_PIXELS; the emobatch command allows "
                      f"{MAX_IMAGE_PIXELS})")


def read_image(path: Path) -> Frame:
    """Decode a still image into Frame(image=(H, W, 3) uint8 RGB, index=0, t_sec=None).

    EXIF orientation is applied; every Pillow mode is converted to RGB (see
    `_to_rgb`); the first frame of multi-frame files is used. Missing,
    unreadable, zero-byte, undecodable, truncated or too large -> InputError.
    """
    path = Path(path)
    _check_file(path)
    img = _open_image(path)
    try:
        try:
            upright = ImageOps.exif_transpose(img)
        except Exception:  # broken EXIF block: keep the pixels as stored
            upright = img
        rgb = _to_rgb(upright)
    except Exception as exc:
        raise InputError(f"unsupported image mode {img.mode!r}: {exc}") from exc
    finally:
        img.close()
    return Frame(image=rgb, source=path, index=0, t_sec=None)


# --------------------------------------------------------------------------- videos

@dataclass
class VideoInfo:
    """Container-level facts about the first video stream.

    width/height: coded size in pixels (before any display rotation);
    fps: average frame rate, may be fractional (29.97) or None;
    n_frames: frame count declared by the container, None if unknown (e.g. mkv);
    duration: seconds, None if unknown.
    """

    width: int
    height: int
    fps: float | None
    n_frames: int | None
    duration: float | None


def _open_video(path: Path) -> av.container.InputContainer:
    """av.open with file problems mapped to InputError."""
    try:
        return av.open(str(path), mode="r")
    except FileNotFoundError:
        raise InputError("file not found") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except av.InvalidDataError as exc:  # e.g. an mp4 cut short before its index (moov)
        raise InputError(f"not a decodable video (truncated or corrupt?): {_reason(exc)}") from exc
    except Exception as exc:  # other av.FFmpegError, OSError, ...
        raise InputError(f"not a decodable video: {_reason(exc)}") from exc


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InputError("no video stream in file")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # e.g. an mp4 whose index (moov) is cut short
        raise InputError("not a decodable video: no codec for the video stream "
                         "(truncated or corrupt file?)")
    return stream


def _reason(exc: BaseException) -> str:
    """Short text of an exception; FFmpeg errors without the errno/file clutter."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def _fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _declared_duration(stream: av.video.stream.VideoStream) -> float | None:
    """Length of the video stream in seconds as declared by the container, if any.

    mp4/mov/avi: the stream duration; mkv/webm: the per-track DURATION tag
    ('HH:MM:SS.nnnnnnnnn') that FFmpeg and mkvmerge write.
    """
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
    return None


def video_info(path: Path) -> VideoInfo:
    """Read the header of a video (no decoding). Raises InputError."""
    path = Path(path)
    _check_file(path)
    container = _open_video(path)
    try:
        stream = _video_stream(container)
        duration = _declared_duration(stream)
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base
        return VideoInfo(width=int(stream.codec_context.width),
                         height=int(stream.codec_context.height),
                         fps=_fps(stream),
                         n_frames=int(stream.frames) if stream.frames else None,
                         duration=duration)
    finally:
        container.close()


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 RGB. The common yuv420p goes through OpenCV's conversion (the same
    BT.601 limited-range matrix as swscale's default, within ~1 grey level): ~1 ms a 1080p
    frame against ~4 ms for swscale's rgb24 (~7% of the 1080p pipeline's work per frame)."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> (H, W, 3) uint8 RGB, display rotation (phone videos) applied."""
    rgb = _rgb(frame)
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


class _Clock:
    """Frame -> t_sec: pts * time_base relative to the stream start (first frame ~0.0)."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self.time_base: Fraction | None = stream.time_base
        self.origin: int | None = stream.start_time
        self.fps = _fps(stream)

    def __call__(self, frame: av.VideoFrame, index: int) -> float | None:
        pts = frame.pts
        if pts is not None and self.time_base is not None:
            if self.origin is None:
                self.origin = pts  # no declared start: the first timestamp is 0
            return float((pts - self.origin) * self.time_base)
        if self.fps:
            return index / self.fps
        return None


def _check_complete(stream: av.video.stream.VideoStream, n_decoded: int,
                    end_t: float | None) -> None:
    """Raise InputError if decoding stopped well before the declared stream end.

    FFmpeg reports a file cut short mid-stream (mkv, avi, fast-start mp4) as a
    plain end of file, so this compares where the frames ended (end_t: last
    t_sec + one frame period) with the declared duration; tolerance: 2 frame
    periods or 2 %, whichever is larger (valid files with edit lists or an
    encoder's trailing frames dropped stay within it).
    """
    declared = _declared_duration(stream)
    if declared is None or end_t is None:
        return
    fps = _fps(stream)
    tolerance = max(2.0 / fps if fps else 0.0, 0.02 * declared)
    if end_t < declared - tolerance:
        raise InputError(f"truncated video: decoded {n_decoded} frames, ending at "
                         f"{end_t:.2f} s of {declared:.2f} s declared")


def iter_video(path: Path, every: int = 1, start: int = 0) -> Iterator[Frame]:
    """Stream the frames of a video as Frame(image=(H, W, 3) uint8 RGB, index, t_sec).

    Every frame is decoded; only those with index % every == 0 are yielded
    (index counts all decoded frames). Frames are never buffered. Open failure,
    no video stream or no frames -> InputError; a decode error after K good
    frames -> those frames are yielded, then InputError('truncated/corrupt
    video: decoded K frames, then: ...'). The container is closed in all cases,
    also when the consumer stops early. `start`: frames before this index are decoded
    (indices and timestamps stay exact) but not converted or yielded, to resume a video.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    path = Path(path)
    _check_file(path)
    container = _open_video(path)
    try:
        stream = _video_stream(container)
        stream.codec_context.thread_type = "AUTO"
        clock = _Clock(stream)
        period = 1.0 / clock.fps if clock.fps else 0.0
        decoded = container.decode(stream)
        index, t_sec = 0, None
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except Exception as exc:  # av.InvalidDataError, OSError, ...
                raise InputError(f"truncated/corrupt video: decoded {index} frames, "
                                 f"then: {_reason(exc)}") from exc
            t_sec = clock(frame, index)
            if index % every == 0 and index >= start:
                yield Frame(image=_upright(frame), source=path, index=index, t_sec=t_sec)
            index += 1
        if index == 0:
            raise InputError("no decodable video frames")
        _check_complete(stream, index, None if t_sec is None else t_sec + period)
    finally:
        container.close()


# --------------------------------------------------------------------------- dispatch

def iter_frames(path: Path, every: int = 1, start: int = 0) -> Iterator[Frame]:
    """All frames of one input: a single Frame for an image, a stream for a video.

    Checked up front: exists ('file not found'), non-empty ('zero-byte file'), readable
    ('permission denied'), an image or a video by suffix or, for other suffixes, by
    content ('unsupported file type ...', see `kind_of`).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    path = Path(path)
    if not path.exists():  # also a dangling symlink
        raise InputError("file not found")
    _check_file(path)  # before probing: 'zero-byte' or 'permission denied' say more
    kind = kind_of(path)
    if kind is None:
        raise _unsupported(path)
    if kind == "image":
        yield read_image(path)
    else:
        yield from iter_video(path, every, start)
