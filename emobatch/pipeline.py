"""Wiring: sources -> detect -> align -> classify -> sinks, one source at a time.

`FacePipeline.frames(path)` is a generator of (Frame, FaceBatch), so memory stays flat on
long videos; `run()` drives it over many inputs and writes the timeline and annotations.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import __version__
from .align import Aligner
from .annotate import VideoWriter, annotated_name, draw, write_image
from .classify import Classifier
from .config import Settings
from .detect import Detector
from .memory import limit_heap_growth, release_free_memory
from .sinks import TimelineSink
from .prefetch import prefetch
from .smooth import Smoother
from .sources import InputError, discover, iter_frames, kind_of, video_info
from .track import Tracker
from .video_detect import VideoDetector
from .types import FaceBatch, Frame


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


@dataclass
class RunSummary:
    results: list[SourceResult] = field(default_factory=list)
    seconds: float = 0.0
    out: Path | None = None

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
        limit_heap_growth()
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
        """(frame, faces) for every processed frame of one source; raises InputError.

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
        vdet = VideoDetector(self.detector, *s.detection_plan(info.width, info.height))
        tracker = Tracker() if s.track else None
        smoother = Smoother(s.smooth_tau) if s.track and s.smooth_tau > 0 else None
        buf: list[tuple[Frame, FaceBatch]] = []
        since_trim = 0
        try:
            for frame, faces in prefetch(self._detected(path, vdet), depth=2 * FRAME_BATCH):
                buf.append((frame, faces))
                # a few faces per frame make a small, inefficient classifier batch: classify
                # the crops of up to FRAME_BATCH frames together
                if len(buf) >= FRAME_BATCH or sum(len(f) for _, f in buf) >= s.batch_size:
                    yield from self._finish(buf, tracker, smoother)
                    since_trim, buf = since_trim + len(buf), []
                    if since_trim >= TRIM_EVERY:
                        release_free_memory()
                        since_trim = 0
        except InputError:
            yield from self._finish(buf, tracker, smoother)  # frames before the break count
            raise
        yield from self._finish(buf, tracker, smoother)

    def _detected(self, path: Path, vdet: VideoDetector) -> Iterator[tuple[Frame, FaceBatch]]:
        for frame in prefetch(iter_frames(path, self.settings.every)):
            yield frame, self.aligner.align(frame.image, vdet.detect(frame.image))

    def _finish(self, buf: list[tuple[Frame, FaceBatch]], tracker: Tracker | None,
                smoother: Smoother | None) -> Iterator[tuple[Frame, FaceBatch]]:
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
            if tracker is not None:
                faces = tracker.track(faces, frame.t_sec)
            if smoother is not None:
                faces = smoother.smooth(faces, frame.t_sec)
            yield frame, faces

    def metadata(self) -> dict[str, Any]:
        c = self.classifier
        return {"emobatch_version": __version__, "weights": str(c.path), "weights_sha256": c.sha256,
                "arch": c.config.get("arch"), "model_metrics": c.config.get("metrics"),
                "tta": c.tta, "tta_video": self.settings.video_tta() or c.tta,
                "device": str(c.device), "settings": self.settings.as_metadata()}


def annotation_root(inputs: Sequence[str | Path]) -> Path:
    """The common folder of the inputs, so annotated names mirror them below --annotate."""
    dirs = [Path(p).resolve() if Path(p).is_dir() else Path(p).resolve().parent for p in inputs]
    return Path(os.path.commonpath(dirs)) if dirs else Path.cwd()


class _Annotation:
    """Per-source annotated output: an H.264 MP4 for videos, an image for stills."""

    def __init__(self, source: Path, root: Path, out_dir: Path | None, every: int) -> None:
        self.path = annotated_name(source, root, out_dir) if out_dir else None
        self.every = every
        self.writer: VideoWriter | None = None

    def write(self, frame: Frame, faces: FaceBatch) -> None:
        if self.path is None:
            return
        img = draw(frame.image, faces)
        if frame.t_sec is None:
            write_image(self.path, img)
            return
        if self.writer is None:
            fps = video_info(frame.source).fps or 25.0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = VideoWriter(self.path, fps / self.every, img.shape[1], img.shape[0])
            self.writer.__enter__()
        self.writer.write(img, frame.t_sec)

    def close(self, exc: BaseException | None = None) -> None:
        if self.writer is not None:
            self.writer.__exit__(type(exc) if exc else None, exc, None)


ProgressFn = Callable[[str, dict[str, Any]], None]


def process_source(pipe: FacePipeline, path: Path, sink: TimelineSink, root: Path,
                   annotate: Path | None, progress: ProgressFn | None = None) -> SourceResult:
    """Run one input end to end; a bad input becomes an error result, never an exception."""
    res = SourceResult(path, kind_of(path))
    t0 = time.perf_counter()
    ann = _Annotation(path, root, annotate, pipe.settings.every)
    try:
        for frame, faces in pipe.frames(path):
            sink.write(frame, faces)
            ann.write(frame, faces)
            res.frames += 1
            res.faces += len(faces)
            if progress:
                progress("frame", {"source": path, "frames": res.frames, "faces": res.faces})
    except InputError as e:
        res.error = str(e)
    except (KeyboardInterrupt, SystemExit) as e:
        ann.close(e)
        raise
    except Exception as e:  # an unexpected failure on one file must not end the run
        res.error = f"{type(e).__name__}: {e}"
    try:
        ann.close()
        res.annotated = ann.path if ann.path and (ann.writer or res.frames) else None
    except Exception as e:
        res.error = res.error or f"annotation failed: {type(e).__name__}: {e}"
    if res.error:
        sink.add_error(path, res.error, res.frames)
    release_free_memory()
    res.seconds = time.perf_counter() - t0
    return res


def run(inputs: str | Path | Sequence[str | Path], out: str | Path | None = None,
        annotate: str | Path | None = None, settings: Settings | None = None,
        progress: ProgressFn | None = None, **kwargs: Any):
    """Process images and videos into an emotion timeline.

    out: a .parquet or .csv path -> returns that Path (written atomically); None -> returns
    a pandas DataFrame (errors in df.attrs['errors']). Keyword arguments set Settings fields.
    """
    settings = settings or Settings(**kwargs)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    summary = run_files(inputs, out, annotate, settings, progress)
    return summary.out if out is not None else _as_dataframe(summary)


def run_files(inputs: Sequence[str | Path], out: str | Path | None, annotate: str | Path | None,
              settings: Settings, progress: ProgressFn | None = None) -> RunSummary:
    """The run behind the CLI and run(): returns the per-source results."""
    files = discover(inputs)
    pipe = FacePipeline(settings)
    root = annotation_root(inputs)
    ann_dir = Path(annotate) if annotate is not None else None
    tmpdir = None
    if out is None:
        tmpdir = tempfile.TemporaryDirectory()
        out = Path(tmpdir.name) / "timeline.parquet"
    summary = RunSummary()
    meta = pipe.metadata() | {"inputs": [str(p) for p in inputs]}
    t0 = time.perf_counter()
    if progress:
        progress("start", {"files": files})
    with TimelineSink(out, meta, labels=pipe.classifier.labels) as sink:
        for path in files:
            if progress:
                progress("source", {"source": path})
            res = process_source(pipe, path, sink, root, ann_dir, progress)
            summary.results.append(res)
            if progress:
                progress("done", {"result": res})
        summary.seconds = time.perf_counter() - t0
        sink.metadata |= {"files": len(files), "frames": summary.frames, "faces": summary.faces,
                          "seconds": round(summary.seconds, 3)}
    summary.out = Path(out)
    summary.tmpdir = tmpdir  # keeps an API run's temporary file alive until it is read
    return summary


def _as_dataframe(summary: RunSummary):
    import pandas as pd

    df = pd.read_parquet(summary.out)
    df.attrs["errors"] = [{"source": str(r.source), "error": r.error} for r in summary.errors]
    summary.tmpdir.cleanup()
    return df
