"""The one place that knows which file suffixes are images and which are videos, and what
makes a file readable at all (`check_file`).

Suffixes are lower case with the dot. These sets decide what a walked folder picks up; a file
named explicitly with another suffix is still probed by content (`emobatch.media.discover.kind_of`).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal, Sequence

from ..errors import InputError, UsageError

Kind = Literal["image", "video"]

IMAGE_SUFFIXES: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
"""Still images Pillow decodes (multi-frame files: the first frame)."""

VIDEO_SUFFIXES: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm",
    ".flv", ".f4v",                            # Flash video (e.g. CREMA-D)
    ".mpg", ".mpeg", ".m2v", ".vob",           # MPEG-1/2 program streams, DVD
    ".ts", ".mts", ".m2ts",                    # MPEG transport streams, AVCHD
    ".3gp", ".3g2",                            # phones
    ".wmv", ".asf",                            # Windows Media
    ".ogv", ".dv", ".mxf", ".y4m",
})
"""Video containers FFmpeg (PyAV) decodes that a folder walk picks up."""

BROWSER_IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})
"""Image suffixes an annotated copy keeps as is (others get '.png' appended)."""


def suffix_of(path: str | Path) -> str:
    """The lower-case suffix with its dot ('.flv'), or '' when the name has none."""
    return Path(path).suffix.lower()


def kind_by_suffix(path: str | Path) -> Kind | None:
    """'image' / 'video' from the suffix alone (case-insensitive), None if not a known one."""
    suffix = suffix_of(path)
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_regular(st: os.stat_result) -> str | None:
    """What a file that is neither a regular file nor a folder is ('a named pipe (FIFO)',
    'a character device', ...), None for those two. Such a file is never opened: a FIFO's
    open() blocks until something writes to it, a device reads forever."""
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    return next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "not a regular file")


def resolved(path: str | Path) -> Path:
    """The absolute path with every symlink followed: what identifies an input. A symlink
    loop (`ln -s l.mp4 l.mp4`), on which Path.resolve() raises, stays as it is, so reading
    it reports the loop as that input's error."""
    return Path(os.path.realpath(path))


def path_text(path: str | Path) -> str:
    """A path as the timeline, its sidecars and metadata write it (UTF-8 text): as given,
    with each byte of the name that is not UTF-8 written `\\xNN` (Linux names are bytes;
    Python holds such a byte as a lone surrogate, which UTF-8 cannot encode)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_file(path: Path) -> None:
    """Raise InputError unless `path` is an existing, readable, non-empty regular file (a
    symlink to one included)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError("file not found") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot access file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory, not a file")
    kind = not_regular(st)
    if kind is not None:
        raise InputError(f"not a regular file: {kind}")
    if st.st_size == 0:
        raise InputError("zero-byte file")
    if not os.access(path, os.R_OK):
        raise InputError("permission denied")


def check_inputs_exist(inputs: Sequence[str | Path]) -> None:
    """UsageError naming the first input (file or folder, as given) that does not exist: a
    misspelled path is a mistake in the command, not a bad input to report and go on."""
    for item in inputs:
        if not os.path.lexists(item):
            raise UsageError(f"no such file or folder: {item}")
