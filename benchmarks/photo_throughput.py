"""Photos: faces per second of the default backends against torch eager for both networks.

    python benchmarks/photo_throughput.py DIR_OR_FILE... [--repeats 3] [--json OUT]

Runs every photo through the pipeline as `emobatch run` does (detection, alignment, the
classifier with the weights' TTA, `zoom` for the shipped model), once per configuration and
repeat, the configurations interleaved so that a drifting machine speed hits both alike; each
pass on a newly built pipeline (warmed up on the sample photo), as a run sees each photo once.
Prints photos/s and faces/s per configuration, their ratio, and how often the two agree on
the number of faces and on each matched face's top emotion.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emobatch.config import Settings
from emobatch.batch.process_tuning import configure_process
from emobatch.pipeline import FacePipeline
from emobatch.media.sources import discover_inputs, kind_of

from machine import machine_info

CONFIGS = {"default": {}, "torch": {"backend": "torch", "detector_backend": "torch"}}
WARM_UP = Path(__file__).resolve().parents[1] / "examples" / "sample" / "astronaut.jpg"


def photos(paths: list[Path]) -> list[Path]:
    """The images among the inputs, found as `emobatch run` finds them."""
    return [f for f in discover_inputs(paths).files if kind_of(f) == "image"]


def run_once(pipe: FacePipeline, files: list[Path]) -> tuple[float, list[np.ndarray]]:
    """Seconds for all files, and each photo's (faces, 7) probabilities."""
    t0, probs = time.perf_counter(), []
    for f in files:
        for frame, faces in pipe.frames(f):
            probs.append(faces.probs)
    return time.perf_counter() - t0, probs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    configure_process()
    files = photos(a.paths)
    secs: dict[str, list[float]] = {name: [] for name in CONFIGS}
    probs, pipes = {}, {}
    for _ in range(a.repeats):
        for name, kw in CONFIGS.items():
            # a new pipeline each time: OpenVINO builds kernels for each input shape it has
            # not seen, and a run sees each photo once, so a second pass over the same photos
            # would flatter it (17 photos: 3.0 s the first time, 1.6 s after). The warm-up on
            # the sample photo leaves out what only the first image of a process pays.
            pipes[name] = FacePipeline(Settings(device="cpu", **kw))
            run_once(pipes[name], [WARM_UP])
            s, probs[name] = run_once(pipes[name], files)
            secs[name].append(s)
    faces = sum(len(x) for x in probs["default"])
    same_count = sum(len(x) == len(y) for x, y in zip(probs["default"], probs["torch"]))
    same_top = [float(np.mean(x.argmax(1) == y.argmax(1)))
                for x, y in zip(probs["default"], probs["torch"]) if len(x) == len(y) and len(x)]
    res = {**machine_info(pipes["default"]), "photos": len(files), "faces": faces,
           "torch_backends": machine_info(pipes["torch"])["backend"],
           "photos_per_s": {n: round(len(files) / float(np.median(s)), 2) for n, s in secs.items()},
           "faces_per_s": {n: round(faces / float(np.median(s)), 2) for n, s in secs.items()},
           "speedup_vs_torch": round(float(np.median(secs["torch"])) / float(np.median(secs["default"])), 2),
           "same_face_count": f"{same_count}/{len(files)}",
           "same_top_emotion": round(float(np.mean(same_top)), 4) if same_top else None}
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
