"""Do people agree with the labels, and are posed expressions still found? One table for
several weights files, each run as the product runs it (its backend and TTA).

    python benchmarks/label_quality.py [--weights A.pt B.pt ...] [--fer PATH] [--ck PATH]
        [--backend auto] [--tta auto] [--json OUT]

Per weights file: on FER2013 PublicTest, accuracy against the FER+ ten-vote majority (with
neutral recall, sad and fear precision), cross-entropy against the vote distribution,
accuracy against FER2013's own labels; on a CK+-style `<class>/` folder (default
`../shared/data/ckplus-dev`, 6 classes), accuracy and each class's recall. Default
--weights: the shipped model. Choose models on PublicTest; the CK+ folder is a check that
clear posed expressions are still found, for comparing candidates, never to train on.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emobatch.faces.emotion.runtimes import load_runtime
from emobatch.faces.emotion.classifier import predict_probs
from emobatch.config import TTA_MODES, backend_choices
from emobatch.faces.device import select_device
from emobatch.types import EMOTIONS
from emobatch.faces.emotion.weights import load_weights
from emobatch.training.data import Split, load_fer
from emobatch.training.evaluate import to_emotions_order
from emobatch.training.scoring import metrics, vote_metrics

from machine import machine_info

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def scores(weights: str | None, public: Split, ck: Split | None, backend: str, tta: str
           ) -> dict[str, Any]:
    """The table's row for one weights file."""
    device = select_device("cpu")
    loaded = load_weights(weights, device=str(device))
    runtime = load_runtime(loaded, device, backend, "auto")
    mode = loaded.config.get("tta", "none") if tta == "auto" else tta

    def probs(split: Split) -> np.ndarray:
        p = predict_probs(runtime.model, split.images, device, runtime.dtype, batch_size=256,
                          tta=mode, mean=loaded.config.get("mean", 0.5),
                          std=loaded.config.get("std", 0.25))
        return to_emotions_order(p.astype(np.float64), loaded.config["labels"])

    p = probs(public)
    fp = vote_metrics(p, public.votes)
    m = fp["majority"]["per_class"]
    row = {"weights": Path(loaded.path).name, "sha256": loaded.sha256[:12], "backend": runtime.name,
           "tta": mode, "ferplus_acc": fp["majority"]["accuracy"],
           "neutral_recall": m["neutral"]["recall"], "sad_precision": m["sad"]["precision"],
           "fear_precision": m["fear"]["precision"], "vote_ce": fp["vote_cross_entropy"],
           "fer2013_acc": float((p.argmax(1) == public.labels).mean())}
    if ck is not None:
        c = metrics(probs(ck), ck.labels, len(EMOTIONS), EMOTIONS)
        row["ck_acc"] = c["accuracy"]
        row |= {f"ck_{name}": c["per_class"][name]["recall"] for name in c["classes"]}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", nargs="+", default=[None], help="weights files (default: shipped)")
    p.add_argument("--fer", default=str(SHARED / "fer2013"), help="FER2013 folder with FER+ votes beside")
    p.add_argument("--ck", default=str(SHARED / "ckplus-dev"), help="CK+-style <class>/ folder ('' to skip)")
    p.add_argument("--backend", default="auto", choices=list(backend_choices()))
    p.add_argument("--tta", default="auto", choices=[*TTA_MODES, "auto"])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    public = load_fer(args.fer)["PublicTest"]
    if public.votes is None:
        raise SystemExit(f"no FER+ votes beside {args.fer}")
    ck = load_fer(args.ck, align="off")["PublicTest"] if args.ck else None
    rows = [scores(w, public, ck, args.backend, args.tta) for w in args.weights]
    info = machine_info()
    print(f"# {info['cpu_model']} ({info['isa']}), torch threads {torch.get_num_threads()}, "
          f"emobatch {info['emobatch']} {info['commit']}; PublicTest n={len(public)}"
          + (f", CK+ n={len(ck)}" if ck is not None else ""))
    keys = list(rows[0])
    print("  ".join(keys))
    for r in rows:
        print("  ".join(f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
