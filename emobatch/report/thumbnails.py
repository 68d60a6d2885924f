"""Face thumbnails for the HTML report: crops of the inputs' frames as JPEG data URIs."""
from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .data import MAX_PHOTO_FACES, ReportData, plotted_tracks, thumb_key

THUMB_PX = 64            # thumbnail height
SEEK_GAP = 5.0           # s: thumbnails further apart than this are reached by seeking


def _read_video_frames(path: Path, times: list[float]) -> dict[float, np.ndarray]:
    """Upright RGB frames at the given t_sec (as in the timeline): one forward decoding pass
    that seeks over gaps longer than SEEK_GAP s, so a thumbnail per track costs about a
    keyframe interval of decoding, not the whole video."""
    import av

    from ..media.video import upright

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
    import cv2

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(row[c]) for c in ("x1", "y1", "x2", "y2"))
    mx, my = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    x1, y1 = max(int(x1 - mx), 0), max(int(y1 - my), 0)
    x2, y2 = min(int(math.ceil(x2 + mx)), w), min(int(math.ceil(y2 + my)), h)
    face = image[y1:y2, x1:x2]
    size = (max(1, round(THUMB_PX * face.shape[1] / max(face.shape[0], 1))), THUMB_PX)
    face = cv2.resize(face, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def make_thumbnails(data: ReportData) -> dict[tuple[str, str], str]:
    """Thumbnails (data URIs) of the plotted tracks of each video and of the photos' faces
    (up to MAX_PHOTO_FACES), keyed by thumb_key; inputs that can't be read are skipped."""
    from ..media.sources import read_image
    from ..errors import InputError

    plotted = {thumb_key(r) for _, r in plotted_tracks(data.tracks).iterrows()}
    video = data.faces[data.faces["kind"] == "video"]
    faces = pd.concat([video[[thumb_key(r) in plotted for _, r in video.iterrows()]],
                       data.faces[data.faces["kind"] == "image"].head(MAX_PHOTO_FACES)])
    thumbs = {}
    for source, rows in faces.groupby("source", sort=False):
        try:
            if rows["kind"].iloc[0] == "video":
                images = _read_video_frames(Path(source), rows["t_sec"].tolist())
                pics = [images.get(t) for t in rows["t_sec"]]
            else:
                pics = [read_image(Path(source)).image] * len(rows)
        except (InputError, OSError, ValueError, IndexError):
            continue
        for (_, row), pic in zip(rows.iterrows(), pics):
            if pic is not None:
                thumbs[thumb_key(row)] = _crop(pic, row)
    return thumbs
