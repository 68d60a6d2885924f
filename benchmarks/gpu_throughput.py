"""`emobatch run` on a GPU against the CPU path and the exhaustive reference.

    python benchmarks/gpu_throughput.py [VIDEO] [--copies 8] [--json OUT] [--reference-cache DIR]

A folder of COPIES copies of VIDEO (default: the 1080p walking clip in ../shared) is run by
`emobatch run` in a fresh process on the CPU and, where CUDA is there, on the GPU (frames/s of
the whole command, start-up included, and the faces found). Prints the decode-only frames/s
of one copy; for each device the frames/s, faces, recall and emotion agreement of copy 0
against the exhaustive reference (facenet-pytorch's MTCNN on every full frame, the fp32
classifier; see video_throughput.py, whose `reference` and `match` this uses); the GPU's faces
found relative to the CPU path's; its peak GPU memory; the machine (CPU and GPU model).
Self-contained: only the project, its wheel's dependencies and the clip; ~1 minute on 2 CPU
cores without a GPU (mostly the reference), well under 5 minutes on an H200-class machine.
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

from emobatch.batch.sinks import read_metadata
from emobatch.config import Settings
from emobatch.faces.device import cpu_model
from emobatch.faces.weights import default_weights_path, sha256_of
from video_throughput import decode_fps, match, reference

CLIP = Path(__file__).resolve().parents[1].parent / "shared/data/media/videos/facenet_pytorch_video.mp4"
# runs the CLI in this process's interpreter and reports the peak GPU memory on stdout
RUN = ("import json, sys, torch; from emobatch.cli import main; rc = main(sys.argv[1:]); "
       "peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0; "
       "print(json.dumps({'rc': rc, 'peak_gpu_mb': peak / 2**20}))")


def run_cli(folder: Path, out: Path, device: str) -> dict:
    """`emobatch run folder --device device` in a fresh process: its wall time, frames,
    faces, peak GPU memory and timeline."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", RUN, "run", str(folder), "--out", str(out),
                        "--quiet", "--device", device], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"emobatch run --device {device} failed:\n{r.stderr[-2000:]}")
    meta = read_metadata(out)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "frames": meta["frames"], "faces": meta["faces"],
            "fps": round(meta["frames"] / wall, 1), "backend": meta["backend"],
            "detector_backend": meta["detector_backend"],
            "peak_gpu_mb": round(report["peak_gpu_mb"], 1), "timeline": pd.read_parquet(out)}


def fidelity(ref: pd.DataFrame, timeline: pd.DataFrame, copy0: str) -> dict:
    """Recall and emotion agreement of copy 0's rows against the reference."""
    got = timeline[timeline["source"].str.endswith(copy0)]
    n_ref, n_match, same, _ = match(ref, got)
    return {"recall": round(n_match / max(n_ref, 1), 4),
            "agreement": round(same / max(n_match, 1), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path, nargs="?", default=CLIP)
    p.add_argument("--copies", type=int, default=8)
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
        folder = Path(d) / "clips"
        folder.mkdir()
        for i in range(a.copies):
            shutil.copyfile(a.video, folder / f"copy{i}{a.video.suffix}")  # a link is one input
        for device in ["cpu"] + (["cuda"] if res["gpu"] else []):
            run = run_cli(folder, Path(d) / f"{device}.parquet", device)
            run.update(fidelity(ref, run.pop("timeline"), f"copy0{a.video.suffix}"))
            res[device] = run
    if res["gpu"]:
        res["faces_cuda_vs_cpu"] = round(res["cuda"]["faces"] / max(res["cpu"]["faces"], 1), 4)
        res["speedup_cuda_vs_cpu"] = round(res["cuda"]["fps"] / res["cpu"]["fps"], 2)
    else:
        res["cuda"] = "not available: no GPU figures on this machine"
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
