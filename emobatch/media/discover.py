"""Which files a run processes: folders walked (hidden entries skipped, other suffixes
counted), and what a file is, by its suffix or, for other names, by its content."""
from __future__ import annotations

import functools
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import av
from PIL import Image

from .filetypes import Kind, kind_by_suffix, resolved, suffix_of

NO_SUFFIX = "(none)"
"""Key of Discovery.skipped for files whose name has no suffix."""


def kind_of(path: Path) -> Kind | None:
    """'image' / 'video' for an input, None if neither.

    By the suffix (case-insensitive, `emobatch.media.filetypes`) when it is a video one; an
    existing file with any other suffix is probed by content (`probe_kind`), so a video FFmpeg
    decodes is a video whatever it is called. An image suffix is trusted when Pillow
    identifies the file's header; a file it does not (a video named `.jpg`) is probed too.
    """
    kind = kind_by_suffix(path)
    if kind == "video":
        return kind
    try:
        st = os.stat(path)
    except OSError:
        return kind
    if not os.path.isfile(path) or st.st_size == 0:
        return kind  # reading it says what is wrong (iter_frames)
    key = (str(resolved(path)), st.st_mtime_ns, st.st_size)
    return _image_or_video(*key) if kind == "image" else _probe_cached(*key)


# keyed by mtime and size too, so a file replaced under the same name is looked at again
@functools.lru_cache(maxsize=256)
def _probe_cached(path: str, mtime_ns: int, size: int) -> Kind | None:
    return probe_kind(Path(path))


@functools.lru_cache(maxsize=1024)
def _image_or_video(path: str, mtime_ns: int, size: int) -> Kind:
    """A file with an image suffix: a video if Pillow does not identify its header and FFmpeg
    opens it as a real container with a video stream (FFmpeg reads any file named .jpg as a
    still image, image2, and a text as a picture of it, tty), else an image, whose reading
    then says what is wrong with it."""
    p = Path(path)
    return "video" if not _pillow_image(p, decode=False) and _ffmpeg_video(p, real=True) else "image"


def probe_kind(path: Path) -> Kind | None:
    """What a file is by its content: 'image' if Pillow decodes it, else 'video' if PyAV
    opens it with a video stream, else None (also for unreadable files). Reads the file."""
    if _pillow_image(path, decode=True):
        return "image"
    return "video" if _ffmpeg_video(path, real=False) else None


def _pillow_image(path: Path, decode: bool) -> bool:
    """Whether Pillow takes the file for an image: its header (decode=False) or all of it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format == "MPEG":  # Pillow names MPEG video headers, decodes none
                    return False
                if decode:
                    img.load()
                return True
    except Exception:  # not an image Pillow knows (or too big for it: reading says so)
        return False


def _ffmpeg_video(path: Path, real: bool) -> bool:
    """Whether FFmpeg opens the file with a video stream; real: in a container, not as a
    still image (image2) or a picture of text (tty, *_pipe)."""
    try:
        with av.open(str(path), mode="r") as container:
            fmt = container.format.name
            if real and (fmt in ("image2", "tty") or fmt.endswith("_pipe")):
                return False
            return bool(container.streams.video)
    except Exception:  # not a container FFmpeg opens
        return False


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
            key = resolved(candidate)
            if key not in seen:
                seen.add(key)
                found.files.append(candidate)
    found.skipped = dict(sorted(skipped.items()))
    return found


def discover(inputs: Sequence[str | Path]) -> list[Path]:
    """The files to process (`discover_inputs(inputs).files`)."""
    return discover_inputs(inputs).files
