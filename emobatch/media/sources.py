"""Input discovery and decoding: folders of photos/videos -> a stream of `Frame`s.

Every image comes out as (H, W, 3) uint8 RGB, upright (EXIF orientation / video
display rotation applied). Problems with a single input raise `InputError`
with a short, user-facing reason, so a batch run can report the item and go on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import InputError
from ..types import Frame
from .discover import NO_SUFFIX, Discovery, discover, discover_inputs, kind_of, probe_kind
from .filetypes import IMAGE_SUFFIXES, VIDEO_SUFFIXES, check_file
from .images import MAX_IMAGE_PIXELS, read_image
from .video import VideoInfo, iter_video, video_info

__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "NO_SUFFIX", "VIDEO_SUFFIXES", "Discovery",
           "VideoInfo", "discover", "discover_inputs", "iter_frames", "iter_video", "kind_of",
           "probe_kind", "read_image", "video_info"]


def _unsupported(path: Path) -> InputError:
    suffix = path.suffix or NO_SUFFIX
    return InputError(f'unsupported file type "{suffix}": neither an image Pillow decodes '
                      f'nor a video FFmpeg opens')


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
    check_file(path)  # before probing: 'zero-byte' or 'permission denied' say more
    kind = kind_of(path)
    if kind is None:
        raise _unsupported(path)
    if kind == "image":
        yield read_image(path)
    else:
        yield from iter_video(path, every, start)
