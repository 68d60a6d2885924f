"""Render annotations: draw faces on frames, write browser-playable MP4s and images.

All images here are (H, W, 3) uint8 RGB. Outputs are written atomically: to a hidden
temporary file next to the target, then ``os.replace``-d onto the final name, so a
half-written file never sits under the final name.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Sequence

import av
import cv2
import numpy as np

from .filetypes import BROWSER_IMAGE_SUFFIXES, resolved
from .discover import kind_of
from .tag_layout import layout_tags
from ..atomic import atomic_write, publish, temp_path
from ..types import EMOTIONS, FaceBatch

PALETTE: dict[str, tuple[int, int, int]] = {
    "angry": (230, 40, 40),
    "disgust": (60, 170, 60),
    "fear": (160, 80, 210),
    "happy": (255, 205, 0),
    "sad": (40, 110, 240),
    "surprise": (255, 130, 0),
    "neutral": (175, 175, 175),
}
"""RGB colour per emotion label."""

SCORE_ONLY_COLOUR: tuple[int, int, int] = (0, 200, 220)
"""RGB colour of faces without emotion probabilities."""

_FALLBACK = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
             (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (128, 128, 128))
BLUR_CELLS = 8
"""Mosaic cells across the longer side of a blurred face (draw(..., blur=True))."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX
Persons = Sequence[str | None] | None
"""Each face's person id (the timeline's `person`), None where it has none; None: no ids."""
_TIME_BASE = Fraction(1, 90000)
X264_PARAMS = "mbtree=0"
"""libx264's MB-tree pass (x264 core 165) reads an uninitialised stack value for some frame
sizes (an odd number of macroblocks across, e.g. 322x242 or 336x240; valgrind shows it):
the quantisers it derives then follow whatever that stack held, so two identical runs wrote
different pixels. Without MB-tree the encoder reads only what it was given: identical
frames give byte-identical MP4s, somewhat larger at the same CRF (docs/experiments.md)."""


# --------------------------------------------------------------------------- drawing


def _colour(labels: Sequence[str], k: int) -> tuple[int, int, int]:
    """RGB colour of class k: PALETTE by name, else a fixed fallback cycle by index."""
    return PALETTE.get(labels[k], _FALLBACK[k % len(_FALLBACK)])


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on the RGB background bg."""
    luma = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _style(height: int, width: int) -> tuple[int, float, int]:
    """(box thickness, font scale, text thickness) for an image of this size."""
    short = min(height, width)
    box_t = max(1, round(short / 400))          # 1080p -> 3, 320px -> 1
    font_scale = max(0.4, short / 1000)        # 1080p -> 1.08, <=400px -> 0.4
    text_t = max(1, round(font_scale * 1.6))   # 1080p -> 2, small -> 1
    return box_t, font_scale, text_t


def _label(faces: FaceBatch, i: int, labels: Sequence[str], still: bool = False,
           persons: Persons = None) -> tuple[str, tuple[int, int, int]]:
    """Tag text and RGB colour of face i: '[id ]emotion p' or '[id ]score'; the id is the
    face's person when it has one (the timeline's `person`), else '#' and the face's index
    in a still (the timeline's `face`) or its track when >= 0."""
    if faces.probs is not None:
        k = int(np.argmax(faces.probs[i]))
        text, colour = f"{labels[k]} {float(faces.probs[i, k]):.2f}", _colour(labels, k)
    else:
        text, colour = f"{float(faces.score[i]):.2f}", SCORE_ONLY_COLOUR
    if persons is not None and persons[i] is not None:
        text = f"{persons[i]} {text}"
    elif still:
        text = f"#{i} {text}"
    elif faces.track is not None and int(faces.track[i]) >= 0:
        text = f"#{int(faces.track[i])} {text}"
    return text, colour


def tag_rects(faces: FaceBatch, height: int, width: int, labels: Sequence[str] = EMOTIONS,
              still: bool = False, persons: Persons = None
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """What draw() writes on a height x width image: (texts, rects (n, 4) int x1, y1, x2, y2
    with exclusive ends, -1 for a face with a non-finite box; leader (n,) bool) from
    labels.layout_tags: no tag covers another tag or a face box where the image has room."""
    _, font_scale, text_t = _style(height, width)
    texts, sizes = [], np.zeros((len(faces), 2), np.int64)
    for i in range(len(faces)):
        texts.append(_label(faces, i, labels, still, persons)[0])
        (tw, th), base = cv2.getTextSize(texts[-1], _FONT, font_scale, text_t)
        sizes[i] = tw + 2 * max(1, text_t), th + base + 2 * max(1, text_t)
    rects, leader = layout_tags(faces.xyxy, sizes, height, width, gap=_style(height, width)[0])
    return texts, rects, leader


def _draw_tag(img: np.ndarray, text: str, colour: tuple[int, int, int], rect: np.ndarray,
              font_scale: float, text_t: int) -> None:
    """Filled tag rect (x1, y1, x2, y2; ends exclusive) with text; in place."""
    (_, th), _ = cv2.getTextSize(text, _FONT, font_scale, text_t)
    x, y, x2, y2 = (int(v) for v in rect)
    pad = max(1, text_t)
    cv2.rectangle(img, (x, y), (x2 - 1, y2 - 1), colour, cv2.FILLED)
    cv2.putText(img, text, (x + pad, y + pad + th), _FONT, font_scale, _text_colour(colour),
                text_t, cv2.LINE_AA)


def _leader(img: np.ndarray, rect: np.ndarray, box: np.ndarray, colour: tuple[int, int, int],
            thickness: int) -> None:
    """A line from a tag placed away from its face to the nearest point of the face's box."""
    cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
    px, py = float(np.clip(cx, box[0], box[2])), float(np.clip(cy, box[1], box[3]))
    tx, ty = float(np.clip(px, rect[0], rect[2] - 1)), float(np.clip(py, rect[1], rect[3] - 1))
    cv2.line(img, (round(tx), round(ty)), (round(px), round(py)), colour, thickness, cv2.LINE_AA)


def _draw_landmarks(img: np.ndarray, pts: np.ndarray, colour: tuple[int, int, int],
                    radius: int) -> None:
    """Small filled dots at the (5, 2) landmarks; skips non-finite and all-zero sets; in place."""
    if not np.isfinite(pts).any() or not np.any(pts):
        return
    for x, y in pts:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(img, (int(round(x)), int(round(y))), radius, colour, cv2.FILLED, cv2.LINE_AA)


def blur_box(image: np.ndarray, box: Sequence[float]) -> None:
    """Make the face inside box (x1, y1, x2, y2; clipped to the image) unrecognisable, in place.

    A coarse mosaic (about BLUR_CELLS cells across the face) smoothed back up: unlike a
    Gaussian of any practical size it keeps no fine detail that deblurring could recover.
    """
    h, w = image.shape[:2]
    x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    bw, bh = x2 - x1, y2 - y1
    cells = (max(2, BLUR_CELLS * bw // max(bw, bh)), max(2, BLUR_CELLS * bh // max(bw, bh)))
    small = cv2.resize(image[y1:y2, x1:x2], cells, interpolation=cv2.INTER_AREA)
    image[y1:y2, x1:x2] = cv2.resize(small, (bw, bh), interpolation=cv2.INTER_LINEAR)


def draw(image: np.ndarray, faces: FaceBatch, labels: Sequence[str] = EMOTIONS,
         blur: bool = False, still: bool = False, persons: Persons = None) -> np.ndarray:
    """Return an annotated copy of image (H, W, 3) uint8 RGB; the input is not modified.

    Per face: the box in its emotion's colour (PALETTE), a filled tag reading 'happy 0.87',
    'p2 happy 0.87' when persons (n,) gives the face a person (str; None: none), else
    '#3 happy 0.87' when faces.track is set and >= 0, '#0 happy 0.87' (the face's index,
    the timeline's `face`) when still; the emotion part is just the detection score '0.98'
    when faces.probs is None; and the 5 landmarks as small dots. Tags go where tag_rects
    puts them: beside the box, over no other tag and no face, with a line to the box when
    placed further away. Sizes scale with the image's short side. labels must have
    faces.probs.shape[1] entries. blur=True first blurs every face box (blur_box) and leaves
    out the landmarks, for outputs shared with people who must not recognise the faces.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if faces.probs is not None and len(faces) and faces.probs.shape[1] != len(labels):
        raise ValueError(f"probs has {faces.probs.shape[1]} classes, labels {len(labels)}")
    out = np.ascontiguousarray(image).copy()
    box_t, font_scale, text_t = _style(*out.shape[:2])
    if blur:  # all faces before any drawing, so no face's blur smears another one's tag
        for box in faces.xyxy:
            if np.all(np.isfinite(box)):
                blur_box(out, box)
    texts, rects, leader = tag_rects(faces, *out.shape[:2], labels, still, persons)
    shown = [i for i in range(len(faces)) if np.all(np.isfinite(faces.xyxy[i]))]
    for i in shown:
        x1, y1, x2, y2 = (int(round(float(v))) for v in faces.xyxy[i])
        colour = _label(faces, i, labels)[1]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, box_t, cv2.LINE_AA)
        if not blur:  # landmarks outline the eyes and mouth
            _draw_landmarks(out, faces.landmarks[i], colour, max(1, box_t))
    for i in shown:  # tags last: no box or landmark is drawn over one
        colour = _label(faces, i, labels)[1]
        if leader[i]:
            _leader(out, rects[i], faces.xyxy[i], colour, max(1, box_t - 1))
        _draw_tag(out, texts[i], colour, rects[i], font_scale, text_t)
    return out


# --------------------------------------------------------------------------- video


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) image scaled to fit (height, width, 3), its aspect kept, centred on black."""
    scale = min(width / image.shape[1], height / image.shape[0])
    w = min(max(round(image.shape[1] * scale), 1), width)
    h = min(max(round(image.shape[0] * scale), 1), height)
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - h) // 2, (width - w) // 2
    out[y:y + h, x:x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return out


def _pad_even(image: np.ndarray) -> np.ndarray:
    """Pad an (H, W, 3) image by 1 px (edge replicated) on the bottom/right where H/W is odd."""
    ph, pw = image.shape[0] % 2, image.shape[1] % 2
    if not (ph or pw):
        return image
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


class VideoWriter:
    """Browser-playable H.264 MP4 writer (PyAV, libx264, yuv420p, +faststart); context manager.

    Frames go to a hidden temp file '.<name>.partial' in the target directory; close()
    (or a clean ``with`` exit) flushes the encoder and os.replace-s it onto path. If the
    with-block raises, the container is closed and the temp file deleted: nothing appears
    under path (and a previous file at path is left untouched). Odd width/height are padded
    by 1 px (edge pixels repeated) since yuv420p needs even sizes. Timestamps use a
    1/90000 time base, so variable frame rates survive.
    """

    def __init__(self, path: Path, fps: float, width: int, height: int, crf: int = 23) -> None:
        """path: final .mp4; fps: nominal rate (fractional ok); width/height of written images."""
        if fps <= 0 or width <= 0 or height <= 0:
            raise ValueError(f"bad video parameters fps={fps} size={width}x{height}")
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.frames = 0
        self._tmp = temp_path(self.path)
        self._last_pts: int | None = None
        self._last_t = Fraction(0)
        self._shift = Fraction(0)  # added to t_sec after a jump back
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                  options={"movflags": "+faststart"})
        try:
            self._stream = self._add_stream(crf)
        except BaseException:
            self._abort()
            raise

    def _add_stream(self, crf: int) -> av.VideoStream:
        """The libx264 stream: even size, yuv420p, CRF, preset veryfast, no MB-tree, 1/90000
        time base."""
        stream = self._container.add_stream("libx264", rate=self.rate)
        stream.width, stream.height = self.width + self.width % 2, self.height + self.height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": X264_PARAMS}
        stream.codec_context.time_base = _TIME_BASE
        stream.time_base = _TIME_BASE
        return stream

    def _next_pts(self, t_sec: float | None) -> int:
        """pts in 1/90000 ticks: from t_sec, else previous time + 1/fps; strictly increasing.
        Where t_sec jumps back (MPEG-TS recordings joined with `cat`), the frames go on one
        period after the last one, their own spacing kept."""
        if t_sec is None:
            t = self._last_t + 1 / self.rate if self._last_pts is not None else Fraction(0)
        else:
            t = Fraction(t_sec) + self._shift
            if self._last_pts is not None and t <= self._last_t:
                self._shift += self._last_t + 1 / self.rate - t
                t = self._last_t + 1 / self.rate
        pts = round(t / _TIME_BASE)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts, self._last_t = pts, t
        return pts

    def write(self, image: np.ndarray, t_sec: float | None = None) -> None:
        """Encode one (height, width, 3) uint8 RGB image at time t_sec (None: next at fps)."""
        if self._container is None:
            raise ValueError("VideoWriter is closed")
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"expected ({self.height}, {self.width}, 3) uint8, "
                             f"got {image.shape} {image.dtype}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_pad_even(image)), format="rgb24")
        frame.pts, frame.time_base = self._next_pts(t_sec), _TIME_BASE
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, finish the file (moov moved to the front) and rename it to path.

        Raises ValueError (leaving no file) if no frame was written. Idempotent.
        """
        if self._container is None:
            return
        if self.frames == 0:  # PyAV writes nothing before the first packet: there is no file
            self._abort()
            raise ValueError(f"no frames written to {self.path}")
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except BaseException:
            self._abort()
            raise
        self._container = None
        publish(self._tmp, self.path)

    def _abort(self) -> None:
        """Close the container ignoring errors and delete the temp file."""
        container, self._container = self._container, None
        try:
            if container is not None:
                container.close()
        except Exception:
            pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


# --------------------------------------------------------------------------- images & names


def _encode_params(suffix: str) -> list[int]:
    """cv2.imencode parameters for a suffix: JPEG/WebP quality 92, PNG compression 3."""
    if suffix in (".jpg", ".jpeg"):
        return [cv2.IMWRITE_JPEG_QUALITY, 92]
    if suffix == ".webp":
        return [cv2.IMWRITE_WEBP_QUALITY, 92]
    if suffix == ".png":
        return [cv2.IMWRITE_PNG_COMPRESSION, 3]
    return []


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image atomically; format from the suffix (jpg, png, webp,
    bmp, tif(f), ...). Creates parent directories."""
    path = Path(path)
    suffix = path.suffix.lower()
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(suffix, bgr, _encode_params(suffix))
    if not ok:
        raise ValueError(f"OpenCV cannot encode {suffix!r} images ({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(buf.tobytes())


def _relative(source: Path, root: Path | None) -> Path:
    """source relative to root if root is given and contains it, else just its name."""
    if root is not None:
        for s, r in ((source, root), (resolved(source), resolved(root))):
            if s != r and s.is_relative_to(r):
                return s.relative_to(r)
    return Path(source.name)


def annotated_name(source: Path, root: Path | None, out_dir: Path) -> Path:
    """Output path of the annotated version of source, mirroring its place under root.

    out_dir / source.relative_to(root) (or out_dir / source.name when root is None or not a
    parent). Videos: '.mp4' (any case) kept, else the suffix is kept and '.mp4' appended
    ('a.avi' -> 'a.avi.mp4', so it cannot collide with a sibling 'a.mp4'). Images:
    .jpg/.jpeg/.png kept, else '.png' appended ('photo.tiff' -> 'photo.tiff.png').
    """
    rel = _relative(Path(source), None if root is None else Path(root))
    suffix = rel.suffix.lower()
    if kind_of(Path(source)) == "video":
        keep = suffix == ".mp4"
        return Path(out_dir) / (rel if keep else rel.with_name(rel.name + ".mp4"))
    keep = suffix in BROWSER_IMAGE_SUFFIXES
    return Path(out_dir) / (rel if keep else rel.with_name(rel.name + ".png"))
