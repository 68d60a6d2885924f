"""`emobatch run` on a GPU against the CPU path and the exhaustive reference.

    python benchmarks/gpu_throughput.py [VIDEO] [--copies 8] [--runs NAME ...] [--json OUT]
        [--reference-cache DIR]

A folder of COPIES copies of VIDEO (default: the 1080p walking clip in ../shared) is run by
`emobatch run` in a fresh process once per run (RUNS; those on CUDA only where it is there):
- cpu, cpu-workers: `--device cpu`, alone and with `--workers auto`;
- cuda: `--device cuda` (the default `balanced` schedule, the CPU path's own cascade);
- cuda-exhaustive: `--quality exhaustive` (every frame a full detection: frames batched per
  network call, emobatch.faces.detection.video.detect_many);
- cuda-annotate: `--annotate DIR` (its frames/s against cuda's is the cost of annotation);
- cuda-4-processes: the copies split over 4 `emobatch run --device cuda` processes at once,
  all on one GPU (`--workers` refuses to share a GPU: this measures whether it should).
Prints the decode-only frames/s of one copy; for each run the frames/s of the whole command
(start-up included), faces, recall and emotion agreement of copy 0 against the exhaustive
reference (facenet-pytorch's MTCNN on every full frame, the fp32 classifier; see
video_throughput.py, whose `reference` and `match` this uses) and peak GPU memory; the faces
found on CUDA relative to the CPU path's; the machine (CPU and GPU model); with --profile,
where a CUDA run of one copy spends its time.
Self-contained: only the project, its wheel's dependencies and the clip; ~1 minute on 2 CPU
cores without a GPU (mostly the reference); budgeted for under 5 minutes on an H200-class
machine with 16 cores (`--runs` to leave some out).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from emobatch.timeline import read_metadata
from emobatch.config import Settings
from emobatch.faces.device import cpu_model
from emobatch.faces.emotion.weights import default_weights_path, sha256_of
from video_throughput import decode_fps, match, reference

CLIP = Path(__file__).resolve().parents[1].parent / "shared/data/media/videos/facenet_pytorch_video.mp4"
# runs the CLI in this process's interpreter and reports the peak GPU memory on stdout
RUN = ("import json, sys, torch; from emobatch.cli import main; rc = main(sys.argv[1:]); "
       "peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0; "
       "print(json.dumps({'rc': rc, 'peak_gpu_mb': peak / 2**20}))")


# name -> (the options of `emobatch run` ({tmp}: a fresh folder), processes sharing the copies)
RUNS = {"cpu": (["--device", "cpu"], 1),
        "cpu-workers": (["--device", "cpu", "--workers", "auto"], 1),
        "cuda": (["--device", "cuda"], 1),
        "cuda-exhaustive": (["--device", "cuda", "--quality", "exhaustive"], 1),
        "cuda-annotate": (["--device", "cuda", "--annotate", "{tmp}/annotated"], 1),
        "cuda-4-processes": (["--device", "cuda"], 4)}


def run_cli(folders: list[Path], out_dir: Path, options: list[str]) -> dict:
    """`emobatch run FOLDER OPTIONS` for each folder at once, a fresh process each (all on
    one GPU where the options say cuda): the wall time of the whole, frames/s, frames and
    faces of all, the largest peak GPU memory and the timeline holding copy 0."""
    procs, t0 = [], time.perf_counter()
    for k, folder in enumerate(folders):
        out = out_dir / f"p{k}" / "timeline.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        opts = [o.replace("{tmp}", str(out.parent)) for o in options]
        procs.append((out, subprocess.Popen(
            [sys.executable, "-c", RUN, "run", str(folder), "--out", str(out), "--quiet", *opts],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    done = [(out, *proc.communicate(), proc.returncode) for out, proc in procs]
    wall = time.perf_counter() - t0
    for _, _, err, rc in done:
        if rc != 0:
            raise SystemExit(f"emobatch run {' '.join(options)} failed:\n{err[-2000:]}")
    metas = [read_metadata(out) for out, *_ in done]
    peaks = [json.loads(o.strip().splitlines()[-1])["peak_gpu_mb"] for _, o, _, _ in done]
    frames = sum(m["frames"] for m in metas)
    return {"processes": len(folders), "wall_s": round(wall, 2), "frames": frames,
            "faces": sum(m["faces"] for m in metas), "fps": round(frames / wall, 1),
            "backend": metas[0]["backend"], "detector_backend": metas[0]["detector_backend"],
            "peak_gpu_mb": round(max(peaks), 1), "timeline": pd.read_parquet(done[0][0])}


def copies(video: Path, root: Path, n: int, parts: int) -> list[Path]:
    """n copies of video in `parts` folders under root (copy 0 in the first), as files: a
    link would be one input."""
    folders = [root / f"part{k}" for k in range(parts)]
    for i in range(n):
        folders[i % parts].mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, folders[i % parts] / f"copy{i}{video.suffix}")
    return folders


def fidelity(ref: pd.DataFrame, timeline: pd.DataFrame, copy0: str) -> dict:
    """Recall and emotion agreement of copy 0's rows against the reference."""
    got = timeline[timeline["source"].str.endswith(copy0)]
    n_ref, n_match, same, _ = match(ref, got)
    return {"recall": round(n_match / max(n_ref, 1), 4),
            "agreement": round(same / max(n_match, 1), 4)}


def profile(video: Path) -> None:
    """The 25 functions a CUDA run of `video` spends most time in (their own time)."""
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-m", "cProfile", "-s", "tottime", "-m", "emobatch",
                            "run", str(video), "--out", f"{d}/p.parquet", "--quiet",
                            "--device", "cuda"], capture_output=True, text=True)
    lines = r.stdout.splitlines()
    start = next((i for i, x in enumerate(lines) if "ncalls" in x), 0)
    print("\n".join(lines[max(0, start - 3):start + 26]))


def ratios(res: dict) -> dict:
    """The comparisons the issue's targets are stated in, where both runs are there."""
    def fig(name: str, key: str) -> float | None:
        return res[name][key] if isinstance(res.get(name), dict) else None

    pairs = {"faces_cuda_vs_cpu": ("cuda", "cpu", "faces"),
             "speedup_cuda_vs_cpu": ("cuda", "cpu", "fps"),
             "speedup_cuda_vs_cpu_workers": ("cuda", "cpu-workers", "fps"),
             "fps_annotate_vs_plain_cuda": ("cuda-annotate", "cuda", "fps"),
             "fps_4_processes_vs_1_cuda": ("cuda-4-processes", "cuda", "fps")}
    out = {}
    for key, (num, den, what) in pairs.items():
        x, y = fig(num, what), fig(den, what)
        if x is not None and y:
            out[key] = round(x / y, 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path, nargs="?", default=CLIP)
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    p.add_argument("--profile", action="store_true",
                   help="also print where a CUDA run of one copy spends its time (cProfile)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--reference-cache", type=Path, default=None, metavar="DIR")
    a = p.parse_args()
    import torch

    res: dict = {"cpu_model": cpu_model(), "video": str(a.video), "copies": a.copies,
                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    res["fps_decode"] = round(decode_fps(a.video)[0], 1)
    ref_args = argparse.Namespace(video=a.video, tta=None, weights=None,
                                  reference_cache=a.reference_cache)
    _, ref, _ = reference(ref_args, Settings(device="cpu"), sha256_of(default_weights_path()))
    with tempfile.TemporaryDirectory() as d:
        for name in a.runs:
            if name.startswith("cuda") and not res["gpu"]:
                res[name] = "not available: no GPU on this machine"
                continue
            options, parts = RUNS[name]
            folders = copies(a.video, Path(d) / name / "clips", a.copies, parts)
            run = run_cli(folders, Path(d) / name, options)
            run.update(fidelity(ref, run.pop("timeline"), f"copy0{a.video.suffix}"))
            res[name] = run
    res.update(ratios(res))
    if a.profile and res["gpu"]:
        profile(a.video)
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
