"""Video throughput and fidelity of the default pipeline against the exhaustive reference.

    python benchmarks/video_throughput.py VIDEO [--quality balanced] [--classify-every N]
        [--weights W.pt] [--backend auto] [--detector-backend auto] [--amp auto]
        [--thresholds P R O] [--json OUT] [--reference-cache DIR]

Prints: decode-only fps and the chosen preset's fps with the chosen backends (medians of
--repeats runs of each, in turn; annotation off, timeline written to a temporary Parquet);
the exhaustive reference's fps (facenet-pytorch's own MTCNN.detect at full resolution on
every frame, then align, the classifier in plain fp32 torch, track and smooth as the preset
does); their ratios; face recall of the preset against the reference (IoU >= 0.5,
one-to-one matching per frame); emotion agreement on matched faces (`agreement`: the
reported, smoothed `emotion` of both; `agreement_raw`: the per-frame argmax of both), so
agreement covers the backends' rounding too; and peak RSS of the preset's run. The JSON
records the machine (cpu_model, isa, threads) and both backends. --amp and --thresholds
change only the preset's run (the reference is always MTCNN's own thresholds in fp32).
--reference-cache keeps the reference's timeline (keyed by video, weights and settings) so
that trying several settings runs the slow reference once.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from emobatch.config import TTA_MODES, Settings
from emobatch.faces.detection.detector import Detector
from emobatch.batch.process_tuning import configure_process
from emobatch.pipeline import FacePipeline
from emobatch.media.sources import iter_video
from emobatch.faces.boxes import iou_matrix
from emobatch.types import EMOTIONS

from machine import machine_info
from product_run import run_as_product


def decode_fps(video: Path) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    for _ in iter_video(video):
        n += 1
    return n / (time.perf_counter() - t0), n


def timed_run(pipe: FacePipeline, video: Path) -> tuple[float, pd.DataFrame]:
    """fps of frames -> timeline rows, written as `emobatch run` writes them (a Parquet part
    per checkpoint in the input's store, then the timeline)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "t.parquet"
        t0 = time.perf_counter()
        n = run_as_product(pipe, video, out)
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


def reference(a: argparse.Namespace, s: Settings, sha256: str) -> tuple[float, pd.DataFrame, bool]:
    """fps and timeline of the exhaustive reference: facenet-pytorch's MTCNN on every frame,
    the classifier in fp32 torch, the same tracking and smoothing. From the cache when there."""
    ref_s = Settings(device="cpu", quality="exhaustive", tta=a.tta, weights=a.weights,
                     backend="torch", amp="off")
    key = hashlib.sha256(json.dumps([str(a.video.resolve()), a.video.stat().st_size,
                                     a.video.stat().st_mtime, sha256, ref_s.as_metadata()],
                                    sort_keys=True).encode()).hexdigest()[:16]
    cached = a.reference_cache / f"{a.video.stem}-{key}.parquet" if a.reference_cache else None
    if cached is not None and cached.is_file():
        meta = json.loads(cached.with_suffix(".json").read_text())
        return meta["fps_reference"], pd.read_parquet(cached), True
    pipe = FacePipeline(ref_s)
    # MTCNN's own thresholds even where the preset's differ: the reference stays the same
    pipe.detector = Detector(s.min_face_size, ref_s.thresholds, s.min_score, exact=True,
                             backend="torch")
    fps_ref, ref = timed_run(pipe, a.video)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        ref.to_parquet(cached)
        cached.with_suffix(".json").write_text(json.dumps({"fps_reference": fps_ref}))
    return fps_ref, ref, False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path)
    p.add_argument("--quality", default="balanced", choices=["balanced", "fast", "exhaustive"])
    p.add_argument("--detect-every", type=int, default=None)
    p.add_argument("--detect-scale", type=float, default=None)
    p.add_argument("--full-res-every", type=int, default=None)
    p.add_argument("--classify-every", type=int, default=None)
    p.add_argument("--tta", default=None, choices=TTA_MODES, help="for both runs")
    p.add_argument("--weights", type=Path, default=None, help="classifier for both runs (default: shipped)")
    p.add_argument("--backend", default="auto", help="the preset's classifier backend")
    p.add_argument("--detector-backend", default="auto", help="the preset's MTCNN backend")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"], help="the preset's bf16")
    p.add_argument("--thresholds", type=float, nargs=3, default=None, metavar=("P", "R", "O"),
                   help="the preset's MTCNN stage thresholds (the reference keeps MTCNN's own)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--reference-cache", type=Path, default=None, metavar="DIR")
    p.add_argument("--repeats", type=int, default=3, help="decode and preset runs, in turn")
    a = p.parse_args()

    s = Settings(device="cpu", quality=a.quality, detect_every=a.detect_every,
                 detect_scale=a.detect_scale, full_res_every=a.full_res_every,
                 classify_every=a.classify_every, tta=a.tta,
                 weights=a.weights, backend=a.backend, detector_backend=a.detector_backend,
                 amp=a.amp, **({"thresholds": tuple(a.thresholds)} if a.thresholds else {}))
    configure_process()  # as the CLI does where a process starts
    pipe = FacePipeline(s)
    # decode and the preset in turn, medians: this machine's speed drifts between runs
    decode_runs, default_runs = [], []
    for _ in range(a.repeats):
        fps, n = decode_fps(a.video)
        decode_runs.append(fps)
        fps, got = timed_run(pipe, a.video)
        default_runs.append(fps)
    fps_decode, fps_default = float(np.median(decode_runs)), float(np.median(default_runs))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    machine = machine_info(pipe)
    fps_ref, ref, ref_cached = reference(a, s, pipe.classifier.sha256)
    n_ref, n_match, same, same_raw = match(ref, got)
    res = {
        **machine, "video": str(a.video), "frames": n, "quality": a.quality,
        "amp": a.amp, "thresholds": list(s.thresholds),
        "classify_every": pipe.classify_every,
        "weights_sha256": pipe.classifier.sha256,
        "fps_decode": round(fps_decode, 2), "fps_reference": round(fps_ref, 2),
        "reference_from_cache": ref_cached,
        "fps_default": round(fps_default, 2),
        "speedup_vs_reference": round(fps_default / fps_ref, 2),
        "fraction_of_decode": round(fps_default / fps_decode, 3),
        "fraction_of_decode_runs": [round(x / y, 3) for x, y in zip(default_runs, decode_runs)],
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
