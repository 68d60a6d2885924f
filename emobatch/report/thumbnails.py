"""Pictures for the HTML report as JPEG data URIs: face thumbnails (crops of the inputs'
frames) and each video's poster (a frame of its annotated MP4)."""
from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .data import (MAX_PEOPLE, MAX_PHOTO_FACES, ReportData, person_faces, plotted_tracks,
                   thumb_key, video_tracks)

THUMB_PX = 64            # thumbnail height
POSTER_PX = 360          # poster height: sharp enough in the 405 px box, ~20 KB
SEEK_GAP = 5.0           # s: thumbnails further apart than this are reached by seeking


def _read_video_frames(path: Path, times: list[float]) -> dict[float, np.ndarray]:
    """Upright RGB frames at the given t_sec (as in the timeline): one forward decoding pass
    that seeks over gaps longer than SEEK_GAP s, so a thumbnail per track costs about a
    keyframe interval of decoding, not the whole video."""
    import av

    from ..media.filetypes import check_file
    from ..media.video import upright

    check_file(path)  # InputError for a FIFO, which av.open would wait on for ever
    frames: dict[float, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin, tb = stream.start_time or 0, stream.time_base
        decoded, at = None, -math.inf
        for t in sorted(set(times)):
            if decoded is None or t - at > SEEK_GAP:
                container.seek(origin + int(t / tb), stream=stream, backward=True)
                decoded = container.decode(stream)
            for frame in decoded:
                if frame.pts is None:
                    continue
                at = float((frame.pts - origin) * tb)
                if at >= t - 1e-3:
                    frames[t] = upright(frame)
                    break
    return frames


def _crop(image: np.ndarray, row: pd.Series) -> str:
    """The face box of row (15% margin), THUMB_PX high, as a JPEG data URI."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(row[c]) for c in ("x1", "y1", "x2", "y2"))
    mx, my = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    x1, y1 = max(int(x1 - mx), 0), max(int(y1 - my), 0)
    x2, y2 = min(int(math.ceil(x2 + mx)), w), min(int(math.ceil(y2 + my)), h)
    return _jpeg_uri(image[y1:y2, x1:x2], THUMB_PX)


def _jpeg_uri(image: np.ndarray, height: int, quality: int = 80) -> str:
    """image (H, W, 3) uint8 RGB scaled to `height` px high, as a JPEG data URI."""
    import cv2

    size = (max(1, round(height * image.shape[1] / max(image.shape[0], 1))), height)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def make_thumbnails(data: ReportData) -> dict[tuple[str, str], str]:
    """Thumbnails (data URIs) of the plotted tracks of each video, of the photos' faces (up
    to MAX_PHOTO_FACES), keyed by thumb_key, and one of each person (up to MAX_PEOPLE),
    keyed ('person', its id); inputs that can't be read are skipped."""
    plotted = {thumb_key(r) for _, r in plotted_tracks(data.tracks).iterrows()}
    video = data.faces[data.faces["kind"] == "video"]
    faces = pd.concat([video[[thumb_key(r) in plotted for _, r in video.iterrows()]],
                       data.faces[data.faces["kind"] == "image"].head(MAX_PHOTO_FACES)])
    people = person_faces(data.faces).head(MAX_PEOPLE)
    keys = ([thumb_key(r) for _, r in faces.iterrows()]
            + [("person", p) for p in people["person"]])
    rows = pd.concat([faces, people], ignore_index=True)
    return {k: uri for k, uri in zip(keys, _crops(rows)) if uri is not None}


def _crops(rows: pd.DataFrame) -> list[str | None]:
    """The face of each row (index 0..n-1) as a thumbnail data URI, each source read once;
    None where its input can't be read."""
    from ..media.sources import read_image

    out: list[str | None] = [None] * len(rows)
    for source, group in rows.groupby("source", sort=False):
        try:
            if group["kind"].iloc[0] == "video":
                images = _read_video_frames(Path(source), group["t_sec"].tolist())
                pics = [images.get(t) for t in group["t_sec"]]
            else:
                pics = [read_image(Path(source)).image] * len(group)
        except (InputError, OSError, ValueError, IndexError):
            continue
        for (i, row), pic in zip(group.iterrows(), pics):
            if pic is not None:
                out[i] = _crop(pic, row)
    return out


def _poster_time(data: ReportData, source: str) -> float:
    """When the video shows its longest track's best face (its middle without tracks)."""
    tracks = video_tracks(data.tracks[data.tracks["source"] == source])
    faces = data.faces[data.faces["source"] == source]
    if len(tracks):
        longest = tracks.loc[tracks["time_s"].idxmax(), "track"]
        best = faces[faces["track"] == longest]
        if len(best):
            return float(best["t_sec"].iloc[0])
    dur = data.sources.loc[data.sources["source"] == source, "duration_s"]
    return float(dur.iloc[0]) / 2 if len(dur) and dur.iloc[0] > 0 else 0.0


def make_posters(data: ReportData, videos: dict[str, Path]) -> dict[str, str]:
    """source -> a frame of its annotated MP4 (videos: source -> path), POSTER_PX high, as a
    JPEG data URI: what the page's video box shows before it plays, not a black box. MP4s
    that can't be read get none."""
    posters = {}
    for source, path in videos.items():
        t = _poster_time(data, source)
        try:
            frames = _read_video_frames(path, [t]) or _read_video_frames(path, [0.0])
        except (InputError, OSError, ValueError, IndexError):
            continue
        if frames:
            posters[source] = _jpeg_uri(next(iter(frames.values())), POSTER_PX, 75)
    return posters
