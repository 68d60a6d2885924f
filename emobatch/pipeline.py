"""Wiring: sources -> detect -> align -> classify -> sinks, one input at a time.

`FacePipeline.stream(path)` is a generator of (Frame, FaceBatch), with a `Checkpoint`
between chunks of a video, so memory stays flat on long videos and a video can resume
mid-file. `process_item` runs one input into its on-disk store (emobatch.batch.store); the
runners (emobatch.batch.runners) drive it over many inputs, here or in other processes/machines,
and emobatch.batch.driver publishes the timeline from the stores, in input order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .config import Settings
from .faces.align import Aligner
from .faces.emotion.classifier import Classifier
from .faces.emotion.weights import load_weights
from .faces.detection.detector import Detector
from .faces.device import frames_per_call
from .faces.detection.runtimes import NetRuntime
from .faces.tracking.classify_schedule import ClassifySchedule
from .faces.tracking.smoother import Smoother
from .faces.tracking.cuts import CutDetector
from .faces.tracking.tracker import Tracker
from .faces.identity.collect import Identities, TrackSampler
from .faces.identity.embedder import Embedder
from .faces.detection.video import VideoDetector
from .media.prefetch import prefetch
from .media.sources import VideoInfo, iter_frames, kind_of, video_info
from .errors import BackendUnavailable, InputError, WeightsError
from .memory import release_free_memory
from .plan import RunPlan, resolve_plan
from .types import FaceBatch, Frame

MAX_STILL_SIDE = 4096
FRAME_BATCH = 8  # video frames whose faces are classified together
# free heap pages go back to the system every this many video frames: with the malloc
# settings of emobatch.memory, blocks are reused rather than page-faulted anew, and this keeps
# the heap's fragmentation from holding memory, for little speed (docs/experiments.md)
TRIM_EVERY = 32


@dataclass
class Checkpoint:
    """Between two chunks of a video: the state after frame `next_index - 1`."""

    next_index: int      # the first frame index the video continues with
    processed: int       # frames processed so far (they set the checkpoint schedule)
    state: dict[str, Any] = field(default_factory=dict)


class FacePipeline:
    """The stages, built once from a run's plan and shared by all sources of a run."""

    def __init__(self, plan: RunPlan | Settings) -> None:
        """plan: what a run resolved (emobatch.plan); Settings are resolved here, for a
        pipeline used on its own."""
        self.plan = plan if isinstance(plan, RunPlan) else resolve_plan(plan)
        self.settings = s = self.plan.settings
        self.classifier = classifier_of(self.plan)
        self.detector = detector_of(self.plan, self.plan.detector)
        # photos get their own networks only where they run elsewhere than videos'
        self.still_detector = (self.detector if self.plan.detector_stills == self.plan.detector
                               else detector_of(self.plan, self.plan.detector_stills))
        self.aligner = Aligner(self.classifier.input_size)
        self.classify_every = self.plan.classify_every
        # who is who: one embedding per track (or per photo face), never per video frame
        self.embedder = Embedder() if s.people != "off" else None

    def process(self, frame: Frame, scale: float = 1.0) -> FaceBatch:
        """One still through detect (on a copy scaled by `scale`) -> align -> classify."""
        faces = self.still_detector.detect(frame.image, scale)
        faces = self.aligner.align(frame.image, faces)
        return self.classifier.classify(faces)

    def frames(self, path: Path) -> Iterator[tuple[Frame, FaceBatch]]:
        """(frame, faces) for every processed frame of one source; raises InputError."""
        for x in self.stream(path):
            if isinstance(x, tuple):
                yield x

    def stream(self, path: Path, resume: Checkpoint | None = None, info: VideoInfo | None = None
               ) -> Iterator[tuple[Frame, FaceBatch] | Checkpoint | Identities]:
        """(frame, faces) for every processed frame, and a Checkpoint every
        `settings.checkpoint_every` seconds of video; `resume` continues after one. With
        people on, Identities: a photo's faces after its frame, a video's tracks once they
        end (before the next Checkpoint, and at the end).

        Videos get their own detection schedule, tracker and smoother (state per video);
        frames are decoded in a background thread. `info`: the video's header, if the
        caller has read it already.
        """
        s = self.settings
        if kind_of(path) != "video":
            yield from self._stills(path)
            return
        info = info or video_info(path)
        every, scale, full_res = s.detection_plan(info.width, info.height)
        per_call = frames_per_call(self.plan.detect_budget, info.width, info.height,
                                   s.min_face_size, scale if not full_res else 1.0)
        video = _VideoState(VideoDetector(self.detector, every, scale, full_res,
                                          max_batch=per_call),
                            Tracker() if s.track else None,
                            ClassifySchedule(self.classify_every),
                            Smoother(s.smooth_tau) if s.track and s.smooth_tau > 0 else None)
        if video.tracker is not None and self.embedder is not None:
            video.sampler = TrackSampler(self.embedder, video.tracker.max_age)
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
            # detection runs here, not in a thread of its own beside the classifier: on 2
            # cores the two multi-threaded networks only contended (slower, docs/experiments.md)
            for frame, faces, snap in detected:
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
            yield from video.drained()
            raise
        yield from self._finish(buf, video)
        yield from video.drained()

    def _stills(self, path: Path) -> Iterator[tuple[Frame, FaceBatch] | Identities]:
        for frame in iter_frames(path, self.settings.every):
            h, w = frame.image.shape[:2]
            # huge photos: detect on a copy with a long side of MAX_STILL_SIDE, landmarks
            # re-measured at full resolution, so time and memory stay bounded
            faces = self.process(frame, min(1.0, MAX_STILL_SIDE / max(h, w)))
            yield frame, faces
            if self.embedder is not None and len(faces):
                yield Identities.of_photo(frame.index, self.embedder.embed_faces(
                    frame.image, faces.landmarks))

    def _detected(self, path: Path, vdet: VideoDetector, start: int, processed: int,
                  period: int) -> Iterator[tuple[Frame, FaceBatch, dict | None]]:
        """(frame, aligned faces, the schedule's state at a checkpoint frame else None).

        Frames are decoded ahead and detected in chunks of `vdet.frames_per_call` (one on a
        CPU, several on a GPU); a chunk ends at a checkpoint frame, whose state is then the
        schedule's own."""
        chunk: list[Frame] = []
        try:
            for frame in prefetch(iter_frames(path, self.settings.every, start),
                                  depth=max(4, vdet.frames_per_call)):
                chunk.append(frame)
                if (len(chunk) >= vdet.frames_per_call
                        or (processed + len(chunk)) % period == 0):
                    yield from self._detect_chunk(chunk, vdet, processed, period)
                    processed, chunk = processed + len(chunk), []
        except InputError:
            # the frames decoded before the break count
            yield from self._detect_chunk(chunk, vdet, processed, period)
            raise
        yield from self._detect_chunk(chunk, vdet, processed, period)

    def _detect_chunk(self, chunk: list[Frame], vdet: VideoDetector, processed: int,
                      period: int) -> Iterator[tuple[Frame, FaceBatch, dict | None]]:
        for frame, faces in zip(chunk, vdet.detect_many([f.image for f in chunk])):
            processed += 1
            yield (frame, self.aligner.align(frame.image, faces),
                   vdet.state_dict() if processed % period == 0 else None)

    def _finish(self, buf: list[tuple[Frame, FaceBatch]], video: "_VideoState"
                ) -> Iterator[tuple[Frame, FaceBatch]]:
        """Track the buffered frames in order, classify the faces the schedule picks in one
        batch, then fill in every face's probabilities and smooth, in order."""
        if not buf:
            return
        tracked = [(frame, video.track(frame, faces)) for frame, faces in buf]
        picks = [video.schedule.pick(faces, frame.t_sec) for frame, faces in tracked]
        crops = [f.crops[m] for (_, f), m in zip(tracked, picks)]
        n_cls = len(self.classifier.labels)
        probs = (self.classifier.predict(np.concatenate(crops), self.plan.tta_video)
                 if sum(map(len, crops)) else np.zeros((0, n_cls), np.float32))
        start = 0
        for (frame, faces), mask in zip(tracked, picks):
            k = int(mask.sum())
            faces = video.schedule.fill(faces, mask, probs[start:start + k])
            start += k
            if video.smoother is not None:
                faces = video.smoother.smooth(faces, frame.t_sec)
            yield frame, faces
        if video.sampler is not None:
            for frame, faces in tracked:
                video.sampler.observe(frame.image, faces, frame.t_sec)
            done = video.sampler.finished(tracked[-1][0].t_sec)
            if len(done):
                yield done


def detector_of(plan: RunPlan, runtime: NetRuntime) -> Detector:
    """MTCNN as the plan set it up, on `runtime` (the plan's videos' or photos')."""
    s = plan.settings
    return Detector(s.min_face_size, s.thresholds, s.min_score, device=plan.device,
                    runtime=runtime)


def classifier_of(plan: RunPlan) -> Classifier:
    """The classifier a run's plan resolved: its weights, device, backend, photos' TTA."""
    # the shipped weights where this process finds them (a Dask worker's install may lie
    # elsewhere than the client's), checked by content against what the plan recorded
    loaded = load_weights(plan.settings.weights, device=plan.device)
    if loaded.sha256 != plan.weights_sha256:
        raise WeightsError(f"{loaded.path} (sha256 {loaded.sha256[:12]}...) is not the "
                           f"weights this run was planned with ({plan.weights_sha256[:12]}"
                           f"...): install the same emobatch version everywhere")
    clf = Classifier.from_loaded(loaded, plan.device, plan.classifier_backend, plan.settings.amp,
                                 plan.tta, plan.settings.batch_size)
    if clf.backend != plan.classifier_runtime:  # the plan named it before it was built
        raise BackendUnavailable(f"the {plan.classifier_backend} backend gave "
                                 f"{clf.backend}, not {plan.classifier_runtime}")
    return clf


@dataclass
class _VideoState:
    """The per-video stages whose state a checkpoint saves."""

    detector: VideoDetector
    tracker: Tracker | None
    schedule: ClassifySchedule
    smoother: Smoother | None
    sampler: TrackSampler | None = None
    cuts: CutDetector = field(default_factory=CutDetector)

    def track(self, frame: Frame, faces: FaceBatch) -> FaceBatch:
        """faces with their track ids (as they were without a tracker); tracks end at a cut."""
        if self.tracker is None:
            return faces
        if self.cuts.is_cut(frame.image):
            self.tracker.cut()
        return self.tracker.track(faces, frame.t_sec)

    def state(self, detector_state: dict) -> dict[str, Any]:
        # `is not None`: a tracker or smoother holding no track is empty, hence falsy
        return {"detector": detector_state,
                "tracker": self.tracker.state_dict() if self.tracker is not None else None,
                "schedule": self.schedule.state_dict(),
                "smoother": self.smoother.state_dict() if self.smoother is not None else None,
                "sampler": self.sampler.state_dict() if self.sampler is not None else None,
                "cuts": self.cuts.state_dict()}

    def drained(self) -> Iterator[Identities]:
        """The tracks still held when the video ends."""
        if self.sampler is not None:
            done = self.sampler.drain()
            if len(done):
                yield done

    def load(self, state: dict[str, Any]) -> None:
        self.detector.load_state_dict(state["detector"])
        if self.tracker is not None:
            self.tracker.load_state_dict(state["tracker"])
        self.schedule.load_state_dict(state["schedule"])
        if self.smoother is not None:
            self.smoother.load_state_dict(state["smoother"])
        if self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])
        self.cuts.load_state_dict(state["cuts"])
