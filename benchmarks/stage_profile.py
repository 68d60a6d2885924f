"""Where a video's time goes: milliseconds per frame per stage of the default pipeline.

    python benchmarks/stage_profile.py VIDEO [--quality balanced] [--classify-every N] [--json OUT]

The pipeline runs with its decode thread replaced by a plain loop, so the stages run one after
another and their times add up to the wall time (the product overlaps decoding with the rest).
Each stage's time is exclusive: the networks are timed on their own, and a detection stage's
figure is what is left of it (pyramid resampling, crops, NMS, glue). `other` is the rest of
the wall time (frame buffering, the smoother's bookkeeping, Python glue).

The rows take the product's path (product_run.py): `process_item` gathers them in a RowBuffer
and writes a Parquet part into the input's store at each checkpoint, then the parts are
copied into the timeline as `emobatch run` publishes them (TimelineSink.write_table).
"""
from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

from emobatch import pipeline
from emobatch.faces.emotion import classifier as classify
from emobatch.media import sources, video
from emobatch.faces.align import Aligner
from emobatch.config import Settings
from emobatch.faces.detection.detector import Detector
from emobatch.batch.process_tuning import configure_process
from emobatch.faces.detection.cascade import CascadeMTCNN
from emobatch.batch.sinks import RowBuffer, TimelineSink
from emobatch.batch.store import ItemStore
from emobatch.faces.tracking.smoother import Smoother
from emobatch.faces.tracking.tracker import Tracker
from emobatch.faces.detection.video import VideoDetector

from machine import machine_info
from product_run import run_as_product


class StageClock:
    """Exclusive wall time per label: time spent in a nested timed call is its own label's."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []

    def wrap(self, label: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                t0, inner = self._stack.pop()
                dt = time.perf_counter() - t0
                self.seconds[label] += dt - inner
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1][1] += dt
        return timed

    def wrap_iter(self, label: str, it: Iterator) -> Iterator:
        """Time spent producing each item of `it` (minus timed calls inside it)."""
        nxt = self.wrap(label, lambda: next(it, StopIteration))
        while (x := nxt()) is not StopIteration:
            yield x


def patch(clock: StageClock, pipe: pipeline.FacePipeline) -> None:
    """Time the stages in place (this process only)."""
    W = clock.wrap
    stages = [(video, "_rgb", "colour conversion"),
              (VideoDetector, "_scene_cut", "scene-cut check"),
              (VideoDetector, "_full", "full detection (rest)"),
              (VideoDetector, "_follow", "following (rest)"),
              (Detector, "search", "lost-face search (rest)"),
              (CascadeMTCNN, "_proposals", "P-Net stage (pyramid, NMS)"),
              (CascadeMTCNN, "_refine_rnet", "R-Net stage (crops, NMS)"),
              (CascadeMTCNN, "_output_onet", "O-Net stage (crops, NMS)"),
              (Aligner, "align", "alignment"), (classify, "predict_probs", "classifier (rest)"),
              (Tracker, "track", "tracking"), (Smoother, "smooth", "smoothing"),
              (RowBuffer, "add", "timeline rows"),
              (ItemStore, "write_chunk", "checkpoints (Parquet part, state)"),
              (TimelineSink, "write_table", "timeline publish")]
    for owner, name, label in stages:
        setattr(owner, name, W(label, getattr(owner, name)))
    casc = pipe.detector.cascade
    casc.pnet, casc.rnet, casc.onet = (W(name, net) for name, net in
                                       (("P-Net", casc.pnet), ("R-Net", casc.rnet), ("O-Net", casc.onet)))
    import torch
    orig_call = torch.nn.Module.__call__
    model = pipe.classifier.model

    def call(self, *a, **k):  # the classifier's top-level call gets its label
        return W("classifier net", orig_call)(self, *a, **k) if self is model else orig_call(self, *a, **k)

    torch.nn.Module.__call__ = call


def serial(it: Iterator, depth: int = 0) -> Iterator:
    return it


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path)
    p.add_argument("--quality", default="balanced", choices=["balanced", "fast", "exhaustive"])
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--classify-every", type=int, default=None, help="default: the preset's")
    p.add_argument("--backend", default="auto", help="classifier backend")
    p.add_argument("--detector-backend", default="auto", help="MTCNN's networks' backend")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    configure_process()
    s = Settings(device="cpu", quality=a.quality, weights=a.weights, backend=a.backend,
                 detector_backend=a.detector_backend, classify_every=a.classify_every)
    pipe = pipeline.FacePipeline(s)
    clock = StageClock()
    patch(clock, pipe)
    pipeline.prefetch = serial  # stages one after another: their times add up
    real_iter = sources.iter_video
    sources_iter = lambda *x, **k: clock.wrap_iter("decode", real_iter(*x, **k))  # noqa: E731
    pipeline.iter_frames = lambda path, every, start=0: sources_iter(path, every, start)
    for _ in pipe.frames(a.video):  # warm-up: kernels built on first use
        break
    clock.seconds.clear()
    clock.calls.clear()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        n = run_as_product(pipe, a.video, Path(d) / "t.parquet")
        wall = time.perf_counter() - t0
    ms = {k: round(1000 * v / n, 2) for k, v in sorted(clock.seconds.items(), key=lambda kv: -kv[1])}
    ms["other"] = round(1000 * wall / n - sum(ms.values()), 2)
    calls = {k: round(clock.calls[k] / n, 2) for k in ms if k in clock.calls}
    res = {**machine_info(pipe), "video": str(a.video), "quality": a.quality,
           "classify_every": pipe.classify_every,
           "frames": n, "ms_per_frame": round(1000 * wall / n, 2),
           "fps_serial": round(n / wall, 2), "stages_ms_per_frame": ms, "calls_per_frame": calls,
           "full_detections": clock.calls.get("full detection (rest)", 0)}
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
