"""Classifier throughput on this machine: faces/s at batch 1 and batch 64, fp32 vs autocast,
without and with each TTA mode, for the shipped (or a given) model as the pipeline runs it.

    python benchmarks/classifier_throughput.py [--weights FILE] [--seconds 3] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from emobatch.classify import inference_model, predict_probs
from emobatch.config import TTA_MODES
from emobatch.device import amp_dtype, select_device
from emobatch.weights import load_weights


def faces_per_second(model, device, dtype, batch: int, tta: str, seconds: float) -> float:
    crops = np.random.default_rng(0).integers(0, 256, (batch, 48, 48), dtype=np.uint8)
    for _ in range(3):  # warm-up: oneDNN builds its kernels on first use
        predict_probs(model, crops, device, dtype, batch_size=batch, tta=tta)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        predict_probs(model, crops, device, dtype, batch_size=batch, tta=tta)
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    device = select_device(a.device)
    lm = load_weights(a.weights, device=str(device))
    model = inference_model(lm.model)
    amp = amp_dtype(device, "auto")
    rows = []
    print(f"model {lm.config['arch']} ({sum(x.numel() for x in model.parameters()) / 1e6:.2f}M params), "
          f"device {device}, threads {torch.get_num_threads()}")
    for dtype in dict.fromkeys([None, amp]):
        for tta in TTA_MODES:
            for batch in (1, 64):
                fps = faces_per_second(model, device, dtype, batch, tta, a.seconds)
                rows.append({"dtype": str(dtype or "fp32").replace("torch.", ""), "tta": tta,
                             "batch": batch, "faces_per_s": round(fps, 1),
                             "ms_per_face": round(1000 / fps, 3)})
                print(f"{rows[-1]['dtype']:>9} tta={tta:<7} batch={batch:<3} "
                      f"{fps:9.1f} faces/s  {1000 / fps:7.3f} ms/face")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"weights_sha256": lm.sha256, "results": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
