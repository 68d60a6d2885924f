"""One input into its store (emobatch.batch.store): the pipeline's rows, checkpoints and
annotated output, continuing from the last checkpoint; the unit of work every runner runs."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from traceback import format_exc
from typing import Any, Callable, Sequence

from ..atomic import writing

from ..errors import OutputError
from ..config import Settings
from ..media.annotate import VideoWriter, draw, letterbox, write_image
from ..media.segments import concat_mp4, video_size
from ..media.encode_thread import EncodeThread
from ..media.sources import VideoInfo, kind_of, video_info
from ..errors import InputError
from ..pipeline import Checkpoint, FacePipeline
from ..types import FaceBatch, Frame
from ..memory import release_free_memory
from ..faces.identity.collect import Identities
from .people import identities_table
from .sinks import RowBuffer
from .store import ItemStore, Resume, WorkItem, input_identity


@dataclass
class SourceResult:
    """What happened to one input file."""

    source: Path
    kind: str | None
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None
    annotated: Path | None = None
    resumed_from: int | None = None  # frame index a resumed video continued from
    traceback: str | None = None  # an unexpected failure's formatted traceback (a bug, not
    #                               a bad input: InputErrors have none)
    changed: bool = False  # redone: the input changed since the run that was resumed
    reused: bool = False  # finished by the run that was resumed, kept as it was
    restarted: bool = False  # started by the run that was resumed, redone from its start
    #                          (stopped before its first checkpoint)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["source"], d["annotated"] = str(self.source), self.annotated and str(self.annotated)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourceResult":
        # stores of runs before `traceback` existed hold dicts without it: the default
        return cls(**{**d, "source": Path(d["source"]),
                      "annotated": d["annotated"] and Path(d["annotated"])})


class _Annotation:
    """Annotated output of one input: an image for a still; for a video, one H.264 segment
    per chunk in the input's store, joined into the final MP4 when the video ends. A
    video's frames are drawn and encoded on a thread of their own (one per segment), so
    the pipeline goes on with the next frames meanwhile."""

    def __init__(self, item: WorkItem, store: ItemStore, settings: Settings,
                 labels: Sequence[str], info: VideoInfo | None = None) -> None:
        self.path, self.store, self.labels = item.annotate, store, labels
        self.every, self.blur = settings.every, settings.blur_faces
        self.writer: VideoWriter | None = None  # the encode thread's while it runs
        self.thread: EncodeThread | None = None
        self.fps = (info.fps if info else None) or 25.0
        self.size: tuple[int, int] | None = None  # (width, height) of the MP4's frames

    def write(self, frame: Frame, faces: FaceBatch, chunk: int) -> None:
        """Queue a video frame (raises the error of one that failed before it); a still
        is written at once."""
        if self.path is None:
            return
        if frame.t_sec is not None:
            if self.thread is None:
                self.thread = EncodeThread(f"emobatch-annotate-{chunk}")
            self.thread.submit(self._encode, frame, faces, chunk)
            return
        img = draw(frame.image, faces, self.labels, blur=self.blur, still=True)
        with writing(f"the annotated output of {frame.source}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_image(self.path, img)

    def _encode(self, frame: Frame, faces: FaceBatch, chunk: int) -> None:
        """Draw a video frame and add it to the chunk's segment (on the encode thread)."""
        img = draw(frame.image, faces, self.labels, blur=self.blur)
        with writing(f"the annotated output of {frame.source}"):
            if self.size is None:  # the first segment's, also after a resume
                done = self.store.segments(chunk - 1)
                self.size = video_size(done[0]) if done else (img.shape[1], img.shape[0])
            if (img.shape[1], img.shape[0]) != self.size:  # the stream's resolution changed
                img = letterbox(img, *self.size)
            if self.writer is None:
                self.store.dir.mkdir(exist_ok=True)  # never re-creates a removed run folder
                self.writer = VideoWriter(self.store.segment(chunk), self.fps / self.every,
                                          *self.size)
            self.writer.write(img, frame.t_sec)

    def end_chunk(self) -> None:
        """Publish the current segment (a checkpoint, or the end of the video) once its
        frames are all encoded. A frame that failed raises its error as write() would have:
        after an OutputError nothing is left of the segment, after another error the frames
        before it are published."""
        try:
            if self.thread is not None:
                self.thread.close()  # kept until closed: an interrupt here still finds it
        except OutputError:
            self.abort()
            raise
        except Exception:
            self.thread = None
            self._publish()
            raise
        self.thread = None
        self._publish()

    def _publish(self) -> None:
        """Close the segment being written onto its final name."""
        writer, self.writer = self.writer, None
        if writer is not None:
            with writing(writer.path):
                writer.close()

    def abort(self) -> None:
        """Stop encoding and delete the unpublished segment (Ctrl-C, SIGTERM, an output
        error)."""
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.abort()
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.__exit__(KeyboardInterrupt, None, None)

    def finish(self, last_chunk: int, still_written: bool) -> Path | None:
        """Join the segments into the final MP4; the path written, if any."""
        if self.path is None:
            return None
        if still_written:
            return self.path
        segments = self.store.segments(last_chunk)
        if not segments:
            return None
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            concat_mp4(segments, self.path)
        return self.path


def _end_after_error(ann: _Annotation) -> None:
    """Publish the annotated frames of an input that failed, up to its failure. Their own
    encoding error, if one was still to be raised, is dropped: the input's error is already
    recorded, and only an output error (disk full) may end the run."""
    try:
        ann.end_chunk()
    except OutputError:
        raise
    except Exception:
        pass


ProgressFn = Callable[[str, dict[str, Any]], None]


def _header(path: Path, kind: str | None) -> VideoInfo | None:
    """A video's header, read once for the whole input (the stream, its annotation and the
    progress display); None for a photo, or where it cannot be read (then the stream raises
    the InputError that becomes this input's error)."""
    try:
        return video_info(path) if kind == "video" else None
    except InputError:
        return None


def _claim(store: ItemStore, path: Path) -> tuple[SourceResult, SourceResult | None]:
    """Make the store this input's as it is now: a fresh result to fill (`changed` if the
    store held another version of it, `started` if it held this one's unfinished work),
    and the stored result if the input is done already."""
    identity = input_identity(path)
    started = store.holds(identity)  # the run being resumed began this very input
    res = SourceResult(path, None, changed=store.claim(identity), restarted=started)
    done = store.done()
    if done is not None:
        return res, SourceResult.from_dict(done[0])
    res.kind = kind_of(path)
    return res, None


def _continue(store: ItemStore, res: SourceResult) -> tuple[int, Checkpoint | None]:
    """The chunk to write next and where the stream continues (None: from the start); a
    resumed video's counts so far go into `res` (and `restarted` stays only where the
    input's earlier work had no checkpoint). Chunks after the last checkpoint go."""
    resume = store.resume_point()
    if resume is None:
        store.drop_after(-1)
        return 0, None
    res.restarted = False
    res.frames, res.faces, res.resumed_from = resume.frames, resume.faces, resume.next_index
    store.drop_after(resume.chunk)
    return resume.chunk + 1, Checkpoint(resume.next_index, resume.processed, resume.state)


def process_item(pipe: FacePipeline, item: WorkItem, store: ItemStore,
                 progress: ProgressFn | None = None) -> SourceResult:
    """Run one input into its store, continuing from its last checkpoint if it has one.

    A bad input becomes an error result, never an exception; an output that cannot be
    written raises OutputError; Ctrl-C (and SIGTERM, see the CLI) keeps the rows processed
    so far in the store's tail, for the `.partial` timeline, and re-raises.
    """
    res, done = _claim(store, item.source)
    if done is not None:
        return done
    path = item.source
    chunk, start = _continue(store, res)
    t0, rows = time.perf_counter(), RowBuffer(pipe.classifier.labels)
    info = _header(path, res.kind)
    if progress:
        progress("source", {"source": path, "info": info})
    ann = _Annotation(item, store, pipe.settings, pipe.classifier.labels, info)
    still, ids = False, []
    try:
        for x in pipe.stream(path, start, info):
            if isinstance(x, Identities):  # written with its chunk
                ids.append(x)
                continue
            if isinstance(x, Checkpoint):
                ann.end_chunk()
                store.write_chunk(chunk, rows.take(), Resume(
                    chunk, x.next_index, x.processed, res.frames, res.faces, x.state),
                    identities_table(ids))
                chunk, ids = chunk + 1, []
                continue
            frame, faces = x
            rows.add(frame, faces)
            ann.write(frame, faces, chunk)
            still = still or frame.t_sec is None
            res.frames += 1
            res.faces += len(faces)
            if progress:
                progress("frame", {"source": path, "frames": res.frames, "faces": res.faces})
        ann.end_chunk()  # an error encoding the last frames is handled as any frame's
    except InputError as e:
        res.error = str(e)
        _end_after_error(ann)
    except OutputError:
        ann.abort()
        raise
    except (KeyboardInterrupt, SystemExit):
        ann.abort()
        store.write_tail(rows.take())
        raise
    except Exception as e:  # an unexpected failure on one file must not end the run
        res.error = f"{type(e).__name__}: {e}"
        res.traceback = format_exc()
        _end_after_error(ann)
    store.write_chunk(chunk, rows.take(), None, identities_table(ids))
    res.annotated = ann.finish(chunk, still)
    res.seconds = time.perf_counter() - t0
    store.finish(res.to_dict(), chunk + 1)
    release_free_memory()
    return res
