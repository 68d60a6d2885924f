"""Videos: a container's header (VideoInfo) and its frames as a stream of Frames of (H, W, 3)
uint8 RGB, upright (display rotation applied), with exact indices and timestamps; a file cut
short or corrupt mid-stream yields its good frames, then an InputError."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from ..errors import InputError
from ..types import Frame
from .filetypes import check_file


MAX_VIDEO_PIXELS = 8192 * 8192
"""Video frames with more pixels than this raise InputError: decoded, converted and queued,
a few frames of 16000x16000 take gigabytes (a 750 KB file can hold them). 8K is 7680x4320."""


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_VIDEO_PIXELS:
        raise InputError(f"video frames too large: {width}x{height} = {width * height} pixels "
                         f"(limit {MAX_VIDEO_PIXELS})")


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
    _check_size(stream.codec_context.width, stream.codec_context.height)
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
    check_file(path)
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
    BT.601 limited-range matrix as swscale's default, within ~1 grey level), several times
    faster than swscale's rgb24 (docs/experiments.md, "Figures behind the code")."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def upright(frame: av.VideoFrame) -> np.ndarray:
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
    check_file(path)
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
            _check_size(frame.width, frame.height)  # the size may change mid-stream
            if index % every == 0 and index >= start:
                yield Frame(image=upright(frame), source=path, index=index, t_sec=t_sec)
            index += 1
        if index == 0:
            raise InputError("no decodable video frames")
        _check_complete(stream, index, None if t_sec is None else t_sec + period)
    finally:
        container.close()
