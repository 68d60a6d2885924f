"""Wiring: sources -> detect -> align -> classify -> sinks, one input at a time.

`FacePipeline.stream(path)` is a generator of (Frame, FaceBatch), with a `Checkpoint`
between chunks of a video, so memory stays flat on long videos and a video can resume
mid-file. `process_item` runs one input into its on-disk store (emobatch.store); the
runners (emobatch.runners) drive it over many inputs, here or in other processes/machines,
and `run()` publishes the timeline from the stores, in input order.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import __version__
from .align import Aligner
from .annotate import VideoWriter, concat_mp4, draw, write_image
from .atomic import OutputError
from .classify import Classifier
from .config import Settings
from .detect import Detector
from .memory import release_free_memory
from .prefetch import prefetch
from .sinks import RowBuffer
from .smooth import Smoother
from .sources import InputError, iter_frames, kind_of, video_info
from .store import ItemStore, Resume, WorkItem
from .track import Tracker
from .types import FaceBatch, Frame
from .video_detect import VideoDetector

MAX_STILL_SIDE = 4096
FRAME_BATCH = 8  # video frames whose faces are classified together
# free heap pages go back to the system every this many video frames: with the malloc
# settings of emobatch.memory, blocks are reused rather than page-faulted anew (~30% faster),
# and this keeps the heap's fragmentation from holding memory (~0.2 GB at 1080p, for ~3% speed)
TRIM_EVERY = 32


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["source"], d["annotated"] = str(self.source), self.annotated and str(self.annotated)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourceResult":
        return cls(**{**d, "source": Path(d["source"]),
                      "annotated": d["annotated"] and Path(d["annotated"])})


@dataclass
class Checkpoint:
    """Between two chunks of a video: the state after frame `next_index - 1`."""

    next_index: int      # the first frame index the video continues with
    processed: int       # frames processed so far (they set the checkpoint schedule)
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    results: list[SourceResult] = field(default_factory=list)
    seconds: float = 0.0
    out: Path | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.results)

    @property
    def faces(self) -> int:
        return sum(r.faces for r in self.results)

    @property
    def errors(self) -> list[SourceResult]:
        return [r for r in self.results if r.error]


class FacePipeline:
    """The stages, built once and shared by all sources of a run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.classifier = Classifier(settings.weights, settings.device, settings.batch_size,
                                     settings.tta, settings.amp)
        self.detector = Detector(settings.min_face_size, settings.thresholds, settings.min_score,
                                 device=self.classifier.device)
        self.aligner = Aligner()

    def process(self, frame: Frame, scale: float = 1.0) -> FaceBatch:
        """One still through detect (on a copy scaled by `scale`) -> align -> classify."""
        faces = self.detector.detect(frame.image, scale)
        faces = self.aligner.align(frame.image, faces)
        return self.classifier.classify(faces)

    def frames(self, path: Path) -> Iterator[tuple[Frame, FaceBatch]]:
        """(frame, faces) for every processed frame of one source; raises InputError."""
        for x in self.stream(path):
            if not isinstance(x, Checkpoint):
                yield x

    def stream(self, path: Path, resume: Checkpoint | None = None
               ) -> Iterator[tuple[Frame, FaceBatch] | Checkpoint]:
        """(frame, faces) for every processed frame, and a Checkpoint every
        `settings.checkpoint_every` seconds of video; `resume` continues after one.

        Videos get their own detection schedule, tracker and smoother (state per video);
        frames are decoded in a background thread.
        """
        s = self.settings
        if kind_of(path) != "video":
            for frame in iter_frames(path, s.every):
                h, w = frame.image.shape[:2]
                # huge photos: detect on a copy with a long side of MAX_STILL_SIDE, landmarks
                # re-measured at full resolution, so time and memory stay bounded
                scale = min(1.0, MAX_STILL_SIDE / max(h, w))
                yield frame, self.process(frame, scale)
            return
        info = video_info(path)
        video = _VideoState(VideoDetector(self.detector, *s.detection_plan(info.width, info.height)),
                            Tracker() if s.track else None,
                            Smoother(s.smooth_tau) if s.track and s.smooth_tau > 0 else None)
        if resume is not None:
            video.load(resume.state)
        # checkpoints fall on fixed processed-frame counts, so an interrupted and an
        # uninterrupted run cut the video (and its classifier batches) at the same frames
        period = max(1, round(s.checkpoint_every * (info.fps or 25.0) / s.every))
        start = resume.next_index if resume else 0
        processed = resume.processed if resume else 0
        buf: list[tuple[Frame, FaceBatch]] = []
        since_trim = 0
        detected = self._detected(path, video.detector, start, processed, period)
        try:
            for frame, faces, snap in prefetch(detected, depth=2 * FRAME_BATCH):
                buf.append((frame, faces))
                # a few faces per frame make a small, inefficient classifier batch: classify
                # the crops of up to FRAME_BATCH frames together
                if (snap is not None or len(buf) >= FRAME_BATCH
                        or sum(len(f) for _, f in buf) >= s.batch_size):
                    processed += len(buf)
                    yield from self._finish(buf, video)
                    since_trim, buf = since_trim + len(buf), []
                    if snap is not None:
                        yield Checkpoint(frame.index + 1, processed, video.state(snap))
                    if since_trim >= TRIM_EVERY:
                        release_free_memory()
                        since_trim = 0
        except InputError:
            yield from self._finish(buf, video)  # frames before the break count
            raise
        yield from self._finish(buf, video)

    def _detected(self, path: Path, vdet: VideoDetector, start: int, processed: int,
                  period: int) -> Iterator[tuple[Frame, FaceBatch, dict | None]]:
        """(frame, aligned faces, the schedule's state at a checkpoint frame else None)."""
        for frame in prefetch(iter_frames(path, self.settings.every, start)):
            faces = self.aligner.align(frame.image, vdet.detect(frame.image))
            processed += 1
            yield frame, faces, vdet.state_dict() if processed % period == 0 else None

    def _finish(self, buf: list[tuple[Frame, FaceBatch]], video: "_VideoState"
                ) -> Iterator[tuple[Frame, FaceBatch]]:
        """Classify the crops of buffered frames in one batch, then track and smooth in order."""
        if not buf:
            return
        crops = [f.crops for _, f in buf]
        probs = (self.classifier.predict(np.concatenate(crops), self.settings.video_tta())
                 if sum(map(len, crops)) else None)
        start = 0
        for frame, faces in buf:
            p = (probs[start:start + len(faces)] if probs is not None
                 else np.zeros((0, len(self.classifier.labels)), np.float32))
            start += len(faces)
            faces = faces.with_(probs=p, probs_raw=p)
            if video.tracker is not None:
                faces = video.tracker.track(faces, frame.t_sec)
            if video.smoother is not None:
                faces = video.smoother.smooth(faces, frame.t_sec)
            yield frame, faces

    def metadata(self) -> dict[str, Any]:
        c = self.classifier
        return {"emobatch_version": __version__, "weights": str(c.path), "weights_sha256": c.sha256,
                "arch": c.config.get("arch"), "model_metrics": c.config.get("metrics"),
                "tta": c.tta, "tta_video": self.settings.video_tta() or c.tta,
                "device": str(c.device), "settings": self.settings.as_metadata()}


@dataclass
class _VideoState:
    """The per-video stages whose state a checkpoint saves."""

    detector: VideoDetector
    tracker: Tracker | None
    smoother: Smoother | None

    def state(self, detector_state: dict) -> dict[str, Any]:
        return {"detector": detector_state,
                "tracker": self.tracker.state_dict() if self.tracker else None,
                "smoother": self.smoother.state_dict() if self.smoother else None}

    def load(self, state: dict[str, Any]) -> None:
        self.detector.load_state_dict(state["detector"])
        if self.tracker is not None:
            self.tracker.load_state_dict(state["tracker"])
        if self.smoother is not None:
            self.smoother.load_state_dict(state["smoother"])


class _Annotation:
    """Annotated output of one input: an image for a still; for a video, one H.264 segment
    per chunk in the input's store, joined into the final MP4 when the video ends."""

    def __init__(self, item: WorkItem, store: ItemStore, settings: Settings,
                 labels: Sequence[str]) -> None:
        self.path, self.store, self.labels = item.annotate, store, labels
        self.every, self.blur = settings.every, settings.blur_faces
        self.writer: VideoWriter | None = None
        self.fps: float | None = None

    def write(self, frame: Frame, faces: FaceBatch, chunk: int) -> None:
        if self.path is None:
            return
        img = draw(frame.image, faces, self.labels, blur=self.blur)
        try:
            if frame.t_sec is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_image(self.path, img)
                return
            if self.writer is None:
                self.store.dir.mkdir(exist_ok=True)  # never re-creates a removed run folder
                self.fps = self.fps or video_info(frame.source).fps or 25.0
                self.writer = VideoWriter(self.store.segment(chunk), self.fps / self.every,
                                          img.shape[1], img.shape[0])
            self.writer.write(img, frame.t_sec)
        except OSError as e:
            raise OutputError(f"cannot write the annotated output of {frame.source}: "
                              f"{e.strerror or e}") from e

    def end_chunk(self) -> None:
        """Publish the current segment (a checkpoint, or the end of the video)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as e:
                raise OutputError(f"cannot write {writer.path}: {e.strerror or e}") from e

    def abort(self) -> None:
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            concat_mp4(segments, self.path)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from e
        return self.path


ProgressFn = Callable[[str, dict[str, Any]], None]


def process_item(pipe: FacePipeline, item: WorkItem, store: ItemStore,
                 progress: ProgressFn | None = None) -> SourceResult:
    """Run one input into its store, continuing from its last checkpoint if it has one.

    A bad input becomes an error result, never an exception; an output that cannot be
    written raises OutputError; Ctrl-C (and SIGTERM, see the CLI) keeps the rows processed
    so far in the store's tail, for the `.partial` timeline, and re-raises.
    """
    done = store.done()
    if done is not None:
        return SourceResult.from_dict(done[0])
    path = item.source
    res = SourceResult(path, kind_of(path))
    resume = store.resume_point()
    chunk = 0
    start: Checkpoint | None = None
    if resume is not None:
        chunk, res.frames, res.faces = resume.chunk + 1, resume.frames, resume.faces
        start = Checkpoint(resume.next_index, resume.processed, resume.state)
        res.resumed_from = resume.next_index
    store.drop_after(chunk - 1)
    t0 = time.perf_counter()
    rows = RowBuffer(pipe.classifier.labels)
    ann = _Annotation(item, store, pipe.settings, pipe.classifier.labels)
    still = False
    try:
        for x in pipe.stream(path, start):
            if isinstance(x, Checkpoint):
                ann.end_chunk()
                store.write_chunk(chunk, rows.take(), Resume(
                    chunk, x.next_index, x.processed, res.frames, res.faces, x.state))
                chunk += 1
                continue
            frame, faces = x
            rows.add(frame, faces)
            ann.write(frame, faces, chunk)
            still = still or frame.t_sec is None
            res.frames += 1
            res.faces += len(faces)
            if progress:
                progress("frame", {"source": path, "frames": res.frames, "faces": res.faces})
    except InputError as e:
        res.error = str(e)
    except OutputError:
        ann.abort()
        raise
    except (KeyboardInterrupt, SystemExit):
        ann.abort()
        store.write_tail(rows.take())
        raise
    except Exception as e:  # an unexpected failure on one file must not end the run
        res.error = f"{type(e).__name__}: {e}"
    ann.end_chunk()
    store.write_chunk(chunk, rows.take(), None)
    res.annotated = ann.finish(chunk, still)
    res.seconds = time.perf_counter() - t0
    store.finish(res.to_dict(), chunk + 1)
    release_free_memory()
    return res


# ------------------------------------------------------------------------------------ runs


def run(inputs: str | Path | Sequence[str | Path], out: str | Path | None = None,
        annotate: str | Path | None = None, settings: Settings | None = None,
        progress: ProgressFn | None = None, *, resume: bool = False, workers: int | str = 1,
        scheduler: Any = None, report: str | Path | None = None, **kwargs: Any):
    """Process images and videos into an emotion timeline.

    out: a .parquet or .csv path -> returns that Path (written atomically); None -> returns
    a pandas DataFrame (errors in df.attrs['errors']). Keyword arguments set Settings fields
    (validated: a bad value raises ValueError before any work). resume: continue the
    unfinished run at `out`; workers: processes (int or "auto"); scheduler: a Dask
    scheduler address or distributed.Client; report: also write the HTML report there.
    """
    settings = settings or Settings(**kwargs)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    summary = run_files(inputs, out, annotate, settings, progress, resume=resume,
                        workers=workers, scheduler=scheduler, report=report)
    return summary.out if out is not None else _as_dataframe(summary)


def run_files(inputs: Sequence[str | Path], out: str | Path | None, annotate: str | Path | None,
              settings: Settings, progress: ProgressFn | None = None, *, resume: bool = False,
              workers: int | str = 1, scheduler: Any = None,
              report: str | Path | None = None) -> RunSummary:
    """The run behind the CLI and run(): returns the per-source results.

    Raises UsageError (a ValueError) before any work for unusable outputs, a live run on the
    same `out`, or an unfinished one without `resume`; OutputError when an output cannot be
    written mid-run (finished work stays in the run's folder for `resume`).
    """
    import datetime
    import tempfile

    import torch

    from .atomic import remove_stale_temps
    from .outputs import check_outputs, plan_items
    from .runners import make_runner
    from .sinks import errors_path, meta_path, partial_path
    from .sources import discover_inputs
    from .store import RunStore
    from .device import amp_dtype, select_device
    from .weights import default_weights_path, sha256_of

    if workers != "auto" and not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be an integer >= 1 or 'auto', not {workers!r}")
    inputs = list(inputs)
    tmpdir = tempfile.TemporaryDirectory() if out is None else None
    out = Path(tmpdir.name) / "timeline.parquet" if tmpdir else Path(out)
    ann_dir = Path(annotate) if annotate is not None else None
    found = discover_inputs(inputs)
    report = Path(report) if report is not None else None
    check_outputs(out, ann_dir, inputs, found.files, report)
    items, renamed = plan_items(found.files, inputs, ann_dir)
    summary = RunSummary(out=out, skipped=dict(found.skipped), renamed=renamed,
                         unreadable=[(str(f), r) for f, r in found.unreadable])
    store = RunStore(out)
    weights = settings.weights or default_weights_path()
    device = select_device(settings.device)
    fingerprint = settings.fingerprint(
        sha256_of(weights), device=str(device), precision=str(amp_dtype(device, settings.amp)),
        annotate=str(ann_dir.resolve()) if ann_dir else None, emobatch=__version__,
        torch=torch.__version__)
    # locked before the model loads: a second run on the same `out` is refused at once
    resumed = store.open(fingerprint, resume,
                         {"started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                          "settings": settings.as_metadata(), "inputs": [str(p) for p in inputs]})
    try:
        for name in (out, errors_path(out), meta_path(out), partial_path(out)):
            remove_stale_temps(out.parent, name.name)
        if ann_dir is not None:
            remove_stale_temps(ann_dir, recursive=True)
        pipe = FacePipeline(settings)
        runner = make_runner(pipe, workers, scheduler)
    except BaseException:
        store.remove() if not resumed else store.release()
        raise
    meta = pipe.metadata() | {"inputs": [str(p) for p in inputs], "runner": runner.name,
                              "labels": list(pipe.classifier.labels),
                              "skipped": summary.skipped, "annotated_renamed": renamed,
                              "annotate": str(ann_dir) if ann_dir else None}
    results: dict[int, SourceResult] = {}
    t0 = time.perf_counter()
    try:
        if progress:
            progress("start", {"files": found.files})
        for item in items:  # finished by an earlier, interrupted run
            done = store.item(item).done()
            if done is not None:
                results[item.index] = SourceResult.from_dict(done[0])
                if progress:
                    progress("done", {"result": results[item.index], "resumed": True})
        pending = [it for it in items if it.index not in results]
        for item, res in runner.run(pending, store, progress):
            results[item.index] = res
            if progress:
                progress("done", {"result": res, "streamed": runner.name == "serial"})
    except (KeyboardInterrupt, SystemExit):
        _publish(out, items, store, meta, results, summary, time.perf_counter() - t0, partial=True)
        store.release()
        raise
    except BaseException:
        store.release()
        raise
    summary.results = [results[it.index] for it in items]
    summary.seconds = time.perf_counter() - t0
    _publish(out, items, store, meta, results, summary, summary.seconds)
    store.remove()
    if report is not None:
        from .report import write_report

        summary.report = write_report(out, report, annotate_dir=ann_dir,
                                      thumbnails=not settings.blur_faces)
    summary.tmpdir = tmpdir  # keeps an API run's temporary file alive until it is read
    return summary


def _publish(out: Path, items: Sequence[WorkItem], store, meta: dict[str, Any],
             results: dict[int, SourceResult], summary: RunSummary, seconds: float,
             partial: bool = False) -> Path:
    """Write the timeline (or `.partial` timeline) from the stores, in input order."""
    import pyarrow.parquet as pq

    from .sinks import TimelineSink, partial_path

    final = partial_path(out) if partial else out
    done = [results[it.index] for it in items if it.index in results]
    meta = meta | {"files": len(items), "frames": sum(r.frames for r in done),
                   "faces": sum(r.faces for r in done), "seconds": round(seconds, 3),
                   "resumed_inputs": sum(r.resumed_from is not None for r in done),
                   "results": [r.to_dict() for r in done],
                   "annotated": {str(r.source): str(r.annotated) for r in done if r.annotated}}
    if partial:
        meta["interrupted"] = "the run was stopped; finished rows only (use --resume)"
    lost = [it.source for it in items if not partial and not store.item(it).complete()]
    if lost:
        raise OutputError(f"the run's folder {store.dir} lost the results of {lost[0]} "
                          f"(removed during the run?); run again")
    try:
        with TimelineSink(final, meta, labels=meta["labels"]) as sink:
            for item in items:
                istore = store.item(item)
                for part in (istore.partial_parts() if partial else istore.finished_parts()):
                    sink.write_table(_with_source(pq.read_table(part), item.source))
                res = results.get(item.index)
                if res is not None and res.error:
                    sink.add_error(res.source, res.error, res.frames)
            for folder, reason in summary.unreadable:
                sink.add_error(folder, f"folder not read: {reason}", 0)
    except OSError as e:
        raise OutputError(f"cannot write {final}: {e.strerror or e}; the finished work is kept "
                          f"in {store.dir}: fix this and rerun with --resume") from e
    if not partial:
        for stale in (partial_path(out),):
            _remove_timeline(stale)
    return final


def _with_source(table, source: Path):
    """Rows as this run names their input (a resumed run may spell the path differently)."""
    import pyarrow as pa

    i = table.schema.get_field_index("source")
    return table.set_column(i, "source", pa.array([str(source)] * table.num_rows, pa.string()))


def _remove_timeline(path: Path) -> None:
    """A superseded `.partial` timeline and its sidecars (the complete one now holds them)."""
    from .sinks import errors_path, meta_path

    for p in (path, errors_path(path), meta_path(path)):
        p.unlink(missing_ok=True)


def _as_dataframe(summary: RunSummary):
    import pandas as pd

    df = pd.read_parquet(summary.out)
    df.attrs["errors"] = [{"source": str(r.source), "error": r.error} for r in summary.errors]
    summary.tmpdir.cleanup()
    return df
