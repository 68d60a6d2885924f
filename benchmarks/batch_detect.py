"""MTCNN's full detection frame by frame against several frames per network call.

    python benchmarks/batch_detect.py [VIDEO] [--frames 16] [--batch 8] [--scale 1.0 0.5]
        [--repeats 3] [--json OUT]

For each network runtime this machine has (torch on the CPU; OpenVINO in f32 and, where the
CPU runs bf16, in bf16; torch on CUDA where there is a GPU, its pyramid and crops made on the
host by OpenCV and on the device, emobatch.faces.detection.crops) and each scale of the frames:
the seconds for FRAMES frames of VIDEO (default: the 1080p clip in ../shared) detected one by
one (`Detector.detect`) and BATCH at a time (`Detector.detect_batch`), best of REPEATS, and
whether both found the same faces bit for bit (on CUDA: the same count, boxes within a pixel).
This is what `emobatch.faces.device.frames_per_call` rests on: one frame per call on a CPU.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from emobatch.faces.detection.detector import Detector
from emobatch.faces.device import cpu_model, cpu_isa
from emobatch.faces.detection.runtimes import NetRuntime, openvino_available
from emobatch.media.sources import iter_frames
from timing import best_time

CLIP = (Path(__file__).resolve().parents[1].parent
        / "shared/data/media/videos/facenet_pytorch_video.mp4")


def runtimes() -> list[tuple[str, NetRuntime, str]]:
    """(device, MTCNN's runtime, where crops and pyramid are made) to time."""
    out = [("cpu", NetRuntime("torch"), "host")]
    if openvino_available():
        out.append(("cpu", NetRuntime("openvino"), "host"))
        if cpu_isa() in ("amx", "avx512"):
            out.append(("cpu", NetRuntime("openvino", "bf16"), "host"))
    if torch.cuda.is_available():
        out += [("cuda", NetRuntime("torch"), "host"), ("cuda", NetRuntime("torch"), "device")]
    return out


def same(a: list, b: list, exact: bool) -> bool:
    if [len(x) for x in a] != [len(x) for x in b]:
        return False
    if exact:
        return all(np.array_equal(x.xyxy, y.xyxy) and np.array_equal(x.landmarks, y.landmarks)
                   for x, y in zip(a, b))
    return all(np.allclose(x.xyxy, y.xyxy, atol=1.0) for x, y in zip(a, b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path, nargs="?", default=CLIP)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--scale", type=float, nargs="+", default=[1.0, 0.5])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    frames = [f.image for f in itertools.islice(iter_frames(a.video, 1), a.frames)]
    res = {"cpu_model": cpu_model(), "threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "video": str(a.video), "frames": len(frames), "batch": a.batch, "runs": []}
    for device, rt, crops in runtimes():
        det = Detector(device=device, runtime=rt, crops=crops)
        for scale in a.scale:
            imgs = frames if scale == 1 else [cv2.resize(f, None, fx=scale, fy=scale,
                                                         interpolation=cv2.INTER_AREA)
                                              for f in frames]
            # each way once untimed (kernels built for these sizes), its faces compared; the
            # results come back to the host, so a GPU's work is done when a call returns
            alone = lambda: [det.detect(i) for i in imgs]  # noqa: E731
            batched = lambda: [f for k in range(0, len(imgs), a.batch)  # noqa: E731
                               for f in det.detect_batch(imgs[k:k + a.batch])]
            one, many = alone(), batched()
            t1, tb = best_time(alone, a.repeats), best_time(batched, a.repeats)
            row = {"device": device, "runtime": rt.name, "crops": crops,
                   "size": list(imgs[0].shape[:2]),
                   "per_frame_s": round(t1, 3), "batched_s": round(tb, 3),
                   "batched_speedup": round(t1 / tb, 2), "faces": sum(map(len, one)),
                   "same_faces": same(one, many, exact=device == "cpu")}
            res["runs"].append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
