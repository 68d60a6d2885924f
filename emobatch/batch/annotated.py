"""The annotated outputs, drawn once a run's inputs are done and its person ids made, so each
face's tag names the person the timeline gives it (its `person`; where it has none, and with
`--people off`, its track or a photo's face index, `#3`).

An output is drawn from its input's rows in the store (boxes, landmarks, probabilities,
tracks: `sinks.part_schema`) over a second decode of the input, frames matched by index, one
part's rows in memory at a time, and written atomically. The runners call `annotate_input`
(here, in worker processes, on Dask workers); the driver records each output drawn in its
input's store (`ItemStore.record_annotated`), so a run killed while drawing is resumed
with the outputs it finished kept. This module loads no model: a worker process that only
draws starts in a fraction of the time.
"""
from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence

import numpy as np
import pyarrow as pa

from ..atomic import writing
from ..config import Settings
from ..errors import InputError, OutputError
from ..media.annotate import VideoWriter, draw, letterbox, write_image
from ..media.prefetch import prefetch
from ..media.sources import iter_frames, kind_of, video_info
from ..types import FaceBatch, Frame
from .process_tuning import configure_process, exit_if_orphaned
from .store import RunStore, WorkItem, read_part

if TYPE_CHECKING:  # one_input loads the models: a worker that only draws never imports it
    from .one_input import ProgressFn, SourceResult

FALLBACK_FPS = 25.0
"""The annotated MP4's frame rate where the input's header has none."""


@dataclass
class AnnotateJob:
    """One input's annotated output to draw (at `item.annotate`).

    parts: the input's finished rows (`sinks.part_schema`) in order: files of its store, or
    the tables themselves (a Dask worker sees no store); persons: (r,) object, the person
    (str or None) of each of those rows, as the timeline has them; None with people off.
    """

    item: WorkItem
    parts: list[Path | pa.Table]
    persons: np.ndarray | None
    labels: tuple[str, ...]
    settings: Settings


FrameFaces = tuple[int, FaceBatch, "np.ndarray | None"]
"""A frame's index, its faces, and their persons (n,) object (None with people off)."""


def faces_of(rows: pa.Table, labels: Sequence[str]) -> FaceBatch:
    """The faces of rows that each hold one (a null `face` holds none): xyxy (n, 4), score
    (n,), landmarks (n, 5, 2), probs (n, C) in `labels`' order (None where no row has any:
    the tag then shows the detection score), track (n,) (-1 where null), as drawn."""
    def col(name: str) -> np.ndarray:
        return rows[name].to_numpy(zero_copy_only=False)

    n = rows.num_rows
    probs = np.stack([col(c) for c in labels], 1).astype(np.float32).reshape(n, len(labels))
    landmarks = np.asarray(rows["landmarks"].combine_chunks().flatten(), np.float32)
    return FaceBatch(
        np.stack([col(c) for c in ("x1", "y1", "x2", "y2")], 1).astype(np.float32).reshape(n, 4),
        col("det_score").astype(np.float32), landmarks.reshape(n, 5, 2),
        probs=None if n and np.isnan(probs).all() else probs,
        track=rows["track"].fill_null(-1).to_numpy().astype(np.int64))


def _read(part: Path | pa.Table, labels: Sequence[str]) -> pa.Table:
    """The columns drawn from, of a part file or table."""
    cols = ["frame", "face", "track", "x1", "y1", "x2", "y2", "det_score", *labels, "landmarks"]
    return read_part(part, cols) if isinstance(part, Path) else part.select(cols)


def frame_faces(parts: Sequence[Path | pa.Table], persons: np.ndarray | None,
                labels: Sequence[str]) -> Iterator[FrameFaces]:
    """Every frame of an input's rows, in order (a frame without faces has none): one part
    in memory at a time; persons (r,) as in AnnotateJob."""
    start = 0
    for part in parts:
        table = _read(part, labels)
        who = None if persons is None else persons[start:start + table.num_rows]
        start += table.num_rows
        frame = table["frame"].to_numpy()
        if not len(frame):  # a chunk that ended on the video's last frame
            continue
        has_face = table["face"].is_valid().to_numpy(zero_copy_only=False)
        faces, face_frame = faces_of(table.filter(has_face), labels), frame[has_face]
        who = None if who is None else who[has_face]
        for f in frame[np.flatnonzero(np.r_[True, frame[1:] != frame[:-1]])]:
            lo, hi = np.searchsorted(face_frame, [f, f + 1])
            yield int(f), faces[lo:hi], None if who is None else who[lo:hi]


def _matched(rows: Iterator[FrameFaces], frames: Iterator[Frame]
             ) -> Iterator[tuple[Frame, FaceBatch, np.ndarray | None]]:
    """Each row frame with its decoded frame; InputError where the input no longer
    decodes as it did (a frame missing or out of place)."""
    for index, faces, persons in rows:
        frame = next(frames, None)
        if frame is None or frame.index != index:
            raise InputError(f"frame {index} did not decode again as before (the input "
                             f"changed during the run?)")
        yield frame, faces, persons


def _drawn(job: AnnotateJob, tick: Callable[[], None] | None
           ) -> Iterator[tuple[Frame, np.ndarray]]:
    """(frame, its annotated image (H, W, 3) uint8 RGB) for each frame of the job's rows."""
    rows = frame_faces(job.parts, job.persons, job.labels)
    with closing(prefetch(iter_frames(job.item.source, job.settings.every))) as decoded:
        for frame, faces, persons in _matched(rows, decoded):
            yield frame, draw(frame.image, faces, job.labels, blur=job.settings.blur_faces,
                              still=frame.t_sec is None, persons=persons)
            if tick is not None:
                tick()


def _write_video(job: AnnotateJob, drawn: Iterator[tuple[Frame, np.ndarray]]) -> Path:
    """The frames as the job's H.264 MP4, at the first frame's size (later frames of
    another size letterboxed into it), published whole or not at all."""
    path = job.item.annotate
    first, img = next(drawn)
    fps = (video_info(job.item.source).fps or FALLBACK_FPS) / job.settings.every
    with writing(path), VideoWriter(path, fps, img.shape[1], img.shape[0]) as writer:
        writer.write(img, first.t_sec)
        for frame, img in drawn:
            if img.shape[:2] != (writer.height, writer.width):  # the stream's size changed
                img = letterbox(img, writer.width, writer.height)
            writer.write(img, frame.t_sec)
    return path


def _write_still(job: AnnotateJob, drawn: Iterator[tuple[Frame, np.ndarray]]) -> Path:
    path = job.item.annotate
    (_, img), = drawn
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, img)
    return path


def annotate_input(job: AnnotateJob, tick: Callable[[], None] | None = None
                   ) -> tuple[Path | None, str | None]:
    """Draw one input's annotated output: (its path, None), or (None, why not) where the
    input no longer decodes as it did; OutputError where the output cannot be written.
    tick: called after each frame drawn."""
    write = _write_video if kind_of(job.item.source) == "video" else _write_still
    try:
        return write(job, _drawn(job, tick)), None
    except OutputError:
        raise
    except InputError as e:
        return None, f"its annotated output: {e}"
    except Exception as e:  # an unexpected failure on one output must not end the run
        return None, f"its annotated output: {type(e).__name__}: {e}"


Annotated = tuple[AnnotateJob, "Path | None", "str | None"]
"""A job with its output's path, or why it has none (`annotate_input`)."""


class Annotator(Protocol):
    """What draws a run's outputs: its runner (emobatch.batch.runners)."""

    def annotate(self, jobs: Sequence[AnnotateJob], store: RunStore) -> Iterator[Annotated]:
        """Draw the jobs' outputs; yield each as it is written."""
        ...


class OutputDrawer:
    """Draws a run's annotated outputs through its runner, once the person ids exist."""

    def __init__(self, runner: Annotator, store: RunStore, labels: Sequence[str],
                 settings: Settings, progress: ProgressFn | None = None) -> None:
        self.runner, self.store, self.progress = runner, store, progress
        self.labels, self.settings = tuple(labels), settings

    def draw(self, items: Sequence[WorkItem], parts: Sequence[list[Path]],
             persons: Sequence[np.ndarray | None], results: dict[int, SourceResult]) -> None:
        """Draw the outputs of `items` not drawn yet (a resumed run keeps those it finds
        drawn) from each one's finished `parts` and their rows' `persons`; each result gets
        its output's path, or why it has none, and the store records each one drawn."""
        jobs = [AnnotateJob(item, list(p), who, self.labels, self.settings)
                for item, p, who in zip(items, parts, persons)
                if _to_draw(item, results[item.index])]
        if self.progress and jobs:
            self.progress("annotate", {"files": len(jobs)})
        for job, path, error in self.runner.annotate(jobs, self.store):
            res = results[job.item.index]
            results[job.item.index] = replace(res, annotated=path, error=res.error or error)
            if path is not None:
                self.store.item(job.item).record_annotated(path)
            if self.progress:
                self.progress("annotated", {"source": job.item.source})


def _to_draw(item: WorkItem, res: SourceResult) -> bool:
    """Whether the input has an output to draw: rows to draw from, none drawn yet."""
    return (item.annotate is not None and res.frames > 0
            and not (res.annotated is not None and res.annotated.is_file()))


# ------------------------------------------------------------------ worker processes

_parent: list[int] = []


def init_annotate_worker(threads: int, parent: int) -> None:
    """A worker process that only draws (`--workers N`): no model is loaded."""
    import cv2

    configure_process()
    cv2.setNumThreads(threads)
    _parent[:] = [parent]


def annotate_in_worker(job: AnnotateJob) -> tuple[Path | None, str | None]:
    # a worker whose run died (SIGKILL) stops drawing: the resumed run draws it again
    return annotate_input(job, lambda: exit_if_orphaned(_parent[0]))
