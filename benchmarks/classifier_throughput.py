"""Classifier cost per face on this machine, for each backend and TTA mode, as the pipeline runs it.

    python benchmarks/classifier_throughput.py [--weights W.pt ...] [--seconds 3] [--json OUT]

For each weights file (default: the shipped one) prints its GMACs per face (one view) and
faces/s and ms per face at batch 1 and 64 for every backend that runs here: `torch` in fp32,
`torch` in bf16 where the CPU runs bf16 natively, and `int8` where the weights carry a
calibration. The fastest path at batch 64 without TTA is marked; the JSON records the
machine (benchmarks/machine.py).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emobatch.faces.emotion.runtimes import Runtime, load_runtime

from emobatch.errors import BackendUnavailable
from emobatch.faces.emotion.classifier import predict_probs
from emobatch.config import TTA_MODES
from emobatch.faces.device import cpu_bf16_supported, select_device
from emobatch.faces.emotion.weights import LoadedModel, load_weights

from machine import machine_info


def gmacs_per_face(model: nn.Module, size: int = 48) -> float:
    """Multiply-accumulates of one forward pass on one (1, 1, size, size) face, in 1e9."""
    total = 0

    def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 1, size, size))
    for h in handles:
        h.remove()
    return total / 1e9


def faces_per_second(rt: Runtime, device: torch.device, batch: int, tta: str, seconds: float,
                     size: int = 48) -> float:
    """Faces a second of crops (batch, size, size) at the network's own input side."""
    crops = np.random.default_rng(0).integers(0, 256, (batch, size, size), dtype=np.uint8)
    for _ in range(3):  # warm-up: oneDNN builds its kernels on first use
        predict_probs(rt.model, crops, device, rt.dtype, batch_size=batch, tta=tta)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        predict_probs(rt.model, crops, device, rt.dtype, batch_size=batch, tta=tta)
        n += batch
    return n / (time.perf_counter() - t0)


def runtimes(lm: LoadedModel, device: torch.device) -> list[Runtime]:
    options = [("torch", "off")]
    if device.type == "cuda" or cpu_bf16_supported():
        options.append(("torch", "auto"))
    options.append(("int8", "off"))
    out = []
    for backend, amp in options:
        try:
            out.append(load_runtime(lm, device, backend, amp))
        except BackendUnavailable as e:
            print(f"  ({backend}: {e})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="*", default=[None])
    p.add_argument("--device", default="auto")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--tta", nargs="*", default=list(TTA_MODES), choices=TTA_MODES)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    device = select_device(a.device)
    report = {**machine_info(), "device": str(device), "models": []}
    print(f"{report['cpu_model']}, isa {report['isa']}, {report['threads']} threads, {device}")
    for w in a.weights:
        lm = load_weights(w, device=str(device))
        size = lm.weights_config.input_size
        gmacs = gmacs_per_face(copy.deepcopy(lm.model).cpu(), size)  # lm stays on its device
        entry = {"weights": str(lm.path), "weights_sha256": lm.sha256, "arch": lm.config.get("arch"),
                 "input_size": size,
                 "params_m": round(sum(x.numel() for x in lm.model.parameters()) / 1e6, 2),
                 "gmacs_per_face": round(gmacs, 3), "results": []}
        print(f"{lm.path.name}: {entry['arch']} at {size} px, {entry['params_m']}M parameters, "
              f"{gmacs:.3f} GMACs per face (one view)")
        for rt in runtimes(lm, device):
            for tta in a.tta:
                for batch in (1, 64):
                    fps = faces_per_second(rt, device, batch, tta, a.seconds, size)
                    entry["results"].append({"backend": rt.name, "tta": tta, "batch": batch,
                                             "faces_per_s": round(fps, 1),
                                             "ms_per_face": round(1000 / fps, 3)})
                    print(f"  {rt.name:>10} tta={tta:<7} batch={batch:<3} {fps:9.1f} faces/s "
                          f"{1000 / fps:7.3f} ms/face")
        plain = [r for r in entry["results"] if r["tta"] == "none" and r["batch"] == 64]
        if plain:
            best = min(plain, key=lambda r: r["ms_per_face"])
            fp32 = next((r for r in plain if r["backend"] == "torch-fp32"), best)
            entry["fastest"] = {"backend": best["backend"], "ms_per_face": best["ms_per_face"],
                                "vs_fp32": round(fp32["ms_per_face"] / best["ms_per_face"], 2)}
            print(f"  fastest at batch 64 without TTA: {best['backend']} {best['ms_per_face']} "
                  f"ms/face, {entry['fastest']['vs_fp32']}x fp32")
        report["models"].append(entry)
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
