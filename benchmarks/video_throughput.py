"""Video throughput and fidelity of the default pipeline against the exhaustive reference.

    python benchmarks/video_throughput.py VIDEO [--quality balanced] [--weights W.pt] [--json OUT]

Prints, from one run: decode-only fps; the exhaustive reference's fps (facenet-pytorch's own
MTCNN.detect at full resolution on every frame, then align + classify, track and smooth as the
preset does); the chosen preset's fps (annotation off, timeline written to a temporary
Parquet); their ratios; face recall of the preset against the reference (IoU >= 0.5, one-to-one matching per frame);
emotion agreement on matched faces (`agreement`: the reported, smoothed `emotion` of both;
`agreement_raw`: the per-frame argmax of both); and peak RSS of the preset's run.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from emobatch.config import TTA_MODES, Settings
from emobatch.detect import Detector
from emobatch.memory import limit_heap_growth
from emobatch.pipeline import FacePipeline
from emobatch.sinks import TimelineSink
from emobatch.sources import iter_video
from emobatch.track import iou_matrix
from emobatch.types import EMOTIONS


def decode_fps(video: Path) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    for _ in iter_video(video):
        n += 1
    return n / (time.perf_counter() - t0), n


def timed_run(pipe: FacePipeline, video: Path) -> tuple[float, pd.DataFrame]:
    """fps of frames -> timeline rows (Parquet written, as a user's run does)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "t.parquet"
        t0, n = time.perf_counter(), 0
        with TimelineSink(out) as sink:
            for frame, faces in pipe.frames(video):
                sink.write(frame, faces)
                n += 1
        fps = n / (time.perf_counter() - t0)
        return fps, pd.read_parquet(out)


def match(ref: pd.DataFrame, got: pd.DataFrame) -> tuple[int, int, int, int]:
    """(reference faces, matched, same emotion, same raw emotion) over all frames."""
    raw_cols = [f"{e}_raw" for e in EMOTIONS]
    n_ref = n_match = same = same_raw = 0
    got_by = {f: g for f, g in got.dropna(subset=["face"]).groupby("frame")}
    for f, r in ref.dropna(subset=["face"]).groupby("frame"):
        n_ref += len(r)
        g = got_by.get(f)
        if g is None:
            continue
        iou = iou_matrix(r[["x1", "y1", "x2", "y2"]].to_numpy(), g[["x1", "y1", "x2", "y2"]].to_numpy())
        ri, gi = linear_sum_assignment(-iou)
        ok = iou[ri, gi] >= 0.5
        ri, gi = ri[ok], gi[ok]
        n_match += len(ri)
        same += int((r["emotion"].to_numpy()[ri] == g["emotion"].to_numpy()[gi]).sum())
        same_raw += int((r[raw_cols].to_numpy()[ri].argmax(1) == g[raw_cols].to_numpy()[gi].argmax(1)).sum())
    return n_ref, n_match, same, same_raw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path)
    p.add_argument("--quality", default="balanced", choices=["balanced", "fast", "exhaustive"])
    p.add_argument("--detect-every", type=int, default=None)
    p.add_argument("--detect-scale", type=float, default=None)
    p.add_argument("--full-res-every", type=int, default=None)
    p.add_argument("--tta", default=None, choices=TTA_MODES, help="for both runs")
    p.add_argument("--weights", type=Path, default=None, help="classifier for both runs (default: shipped)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()

    fps_decode, n = decode_fps(a.video)
    s = Settings(device="cpu", quality=a.quality, detect_every=a.detect_every,
                 detect_scale=a.detect_scale, full_res_every=a.full_res_every, tta=a.tta,
                 weights=a.weights)
    limit_heap_growth()  # as the CLI does where a process starts
    pipe = FacePipeline(s)
    fps_default, got = timed_run(pipe, a.video)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # same classifier, tracking and smoothing; only the detection differs
    pipe.settings = Settings(device="cpu", quality="exhaustive", tta=a.tta, weights=a.weights)
    pipe.detector = Detector(s.min_face_size, s.thresholds, s.min_score, exact=True)
    fps_ref, ref = timed_run(pipe, a.video)
    n_ref, n_match, same, same_raw = match(ref, got)
    res = {
        "video": str(a.video), "frames": n, "quality": a.quality,
        "weights_sha256": pipe.classifier.sha256,
        "fps_decode": round(fps_decode, 2), "fps_reference": round(fps_ref, 2),
        "fps_default": round(fps_default, 2),
        "speedup_vs_reference": round(fps_default / fps_ref, 2),
        "fraction_of_decode": round(fps_default / fps_decode, 3),
        "reference_faces": n_ref, "default_faces": int(got["face"].notna().sum()),
        "recall": round(n_match / max(n_ref, 1), 4),
        "agreement": round(same / max(n_match, 1), 4),
        "agreement_raw": round(same_raw / max(n_match, 1), 4),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    for k, v in res.items():
        print(f"{k:>22}: {v}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
