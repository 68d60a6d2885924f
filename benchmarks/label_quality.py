"""Do people agree with the labels, on everyday and on posed faces? One table for several
candidates, each run as the product runs it (its backend and TTA).

    python benchmarks/label_quality.py [--weights A.pt B.pt,B0.pt,B1.pt,B2.pt ...]
        [--fer PATH] [--ck PATH] [--posed DIR] [--footage VIDEO_OR_DIR ...]
        [--backend auto] [--tta auto] [--cache-dir DIR] [--json OUT]

A candidate is one weights file, or a comma-separated group: the model itself, then the
models of the same recipe trained with each performer fold of --posed held out
(`python -m training.fit --posed DIR --posed-holdout F`). Per candidate:
- on FER2013 PublicTest: accuracy against the FER+ ten-vote majority (with neutral recall,
  sad and fear precision), cross-entropy against the vote distribution, accuracy against
  FER2013's own labels;
- on a CK+-style `<class>/` folder (default `../shared/data/ckplus-dev`, 6 classes):
  accuracy and each class's recall, on the crops as they are (`ck_`) and on the faces the
  product's detector and alignment find in them (`ck_aligned_`: the framing every other
  input gets; the crops' own framing moves the first figure with the network's input side);
- on rated posed photos (default `../shared/data/posed-tw`), each performer scored only by
  a model of the group that never saw them (the first such; weights record the performers
  they learnt from): agreement with the observers' top choice and with the intended
  expression, end to end (`emobatch.run` on the photos: detection, alignment, classifier;
  a photo without a face counts as a miss) and on the aligned crops, pooled over all
  photos, with the mean over models (folds) and how many performers were scored;
- on everyday footage (default `../shared/data/media/videos`): each clip's share of faces
  given each emotion (benchmarks/footage_emotions.py's table, printed below the main one).
Default --weights: the shipped model. Choose on PublicTest and held-out performers; the CK+
folder is a cross-lab check, never to train on, and the footage is unlabelled.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import emobatch
from emobatch.faces.emotion.runtimes import load_runtime
from emobatch.faces.emotion.classifier import predict_probs
from emobatch.config import TTA_MODES, backend_choices
from emobatch.faces.device import select_device
from emobatch.types import EMOTIONS
from emobatch.faces.emotion.weights import load_weights
from emobatch.training.data import Split, load_fer
from emobatch.training.evaluate import to_emotions_order
from emobatch.training.posed import PosedSet, crops, load_posed
from emobatch.training.scoring import metrics, vote_metrics

from footage_emotions import footage_table
from machine import machine_info

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class Candidate:
    """One weights file run as the product runs it: its backend, TTA and normalisation."""

    def __init__(self, weights: str | None, backend: str, tta: str) -> None:
        self.weights, self.backend = weights, backend
        self.device = select_device("cpu")
        self.loaded = load_weights(weights, device=str(self.device))
        self.runtime = load_runtime(self.loaded, self.device, backend, "auto")
        self.tta = self.loaded.config.get("tta", "none") if tta == "auto" else tta
        self.seen = set(self.loaded.config.get("posed", {}).get("performers", []))

    def probs(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, 7) in EMOTIONS order for uint8 crops (N, H, W), resized to the
        network's input side."""
        p = predict_probs(self.runtime.model, images, self.device, self.runtime.dtype,
                          batch_size=256, tta=self.tta, **self.loaded.weights_config.inputs)
        return to_emotions_order(p.astype(np.float64), self.loaded.config["labels"])

    def run_photos(self, paths: list[str]) -> np.ndarray:
        """The emotion index (N,) `emobatch run` gives each photo's most confident face, -1
        where it finds none."""
        df = emobatch.run(paths, weights=self.weights, backend=self.backend,
                          **({} if self.tta == "auto" else {"tta": self.tta}))
        faces = df[df["emotion"].notna()].sort_values("det_score", ascending=False)
        top = faces.drop_duplicates("source").set_index("source")["emotion"]
        return np.array([EMOTIONS.index(top[p]) if p in top.index else -1 for p in paths])


def scores(c: Candidate, public: Split, ck: dict[str, Split]) -> dict[str, Any]:
    """The table's FER+ and CK+ columns for one model; ck: the CK+ crops by column prefix."""
    p = c.probs(public.images)
    fp = vote_metrics(p, public.votes)
    m = fp["majority"]["per_class"]
    row = {"weights": Path(c.loaded.path).name, "sha256": c.loaded.sha256[:12],
           "backend": c.runtime.name, "tta": c.tta, "ferplus_acc": fp["majority"]["accuracy"],
           "neutral_recall": m["neutral"]["recall"], "sad_precision": m["sad"]["precision"],
           "fear_precision": m["fear"]["precision"], "vote_ce": fp["vote_cross_entropy"],
           "fer2013_acc": float((p.argmax(1) == public.labels).mean())}
    return row | ck_scores(c, ck)


def ck_scores(c: Candidate, ck: dict[str, Split]) -> dict[str, float]:
    """Accuracy and each class's recall on each CK+ split, columns named by its prefix."""
    row = {}
    for prefix, split in ck.items():
        c_ = metrics(c.probs(split.images), split.labels, len(EMOTIONS), EMOTIONS)
        row[f"{prefix}_acc"] = c_["accuracy"]
        row |= {f"{prefix}_{name}": c_["per_class"][name]["recall"] for name in c_["classes"]}
    return row


def load_ck(path: str) -> dict[str, Split]:
    """A CK+-style folder's crops as they are ('ck') and as the product's detector and
    alignment frame the face in them ('ck_aligned')."""
    return {"ck": load_fer(path, align="off")["PublicTest"],
            "ck_aligned": load_fer(path, align="on")["PublicTest"]}


def posed_scores(group: list[Candidate], posed: PosedSet) -> dict[str, Any]:
    """posed-tw columns: each performer scored by the first model of the group that never
    saw them; agreement with the observers' top choice (`tw_top`) and the instruction
    (`tw_intended`), end to end (`e2e`) and on aligned crops (`crop`), pooled over photos,
    and `tw_top_e2e_fold_mean` over the models that scored someone."""
    performers = sorted(set(posed.performer.tolist()))
    owner = {p: next((i for i, c in enumerate(group) if p not in c.seen), None) for p in performers}
    top, intended = posed.shares.argmax(1), posed.intended
    hits: dict[str, list[np.ndarray]] = {"e2e": [], "crop": []}
    fold_means, scored = [], np.zeros(len(posed), bool)
    for i, c in enumerate(group):
        mine = np.isin(posed.performer, [p for p, o in owner.items() if o == i])
        if not mine.any():
            continue
        part = posed.subset(mine)
        clean = crops(part, size=c.loaded.weights_config.input_size)[0]
        pred = {"crop": c.probs(clean).argmax(1), "e2e": c.run_photos(part.paths)}
        for k, v in pred.items():
            hits[k].append(np.stack([v == top[mine], v == intended[mine]]))
        fold_means.append(float((pred["e2e"] == top[mine]).mean()))
        scored |= mine
    row: dict[str, Any] = {"tw_performers": f"{sum(o is not None for o in owner.values())}"
                                            f"/{len(performers)}"}
    for k, v in hits.items():
        both = np.concatenate(v, axis=1) if v else np.zeros((2, 0), bool)
        row[f"tw_top_{k}"] = float(both[0].mean()) if both.size else float("nan")
        row[f"tw_intended_{k}"] = float(both[1].mean()) if both.size else float("nan")
    row["tw_top_e2e_fold_mean"] = float(np.mean(fold_means)) if fold_means else float("nan")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", nargs="+", default=[None],
                   help="candidates: weights files, or comma-separated groups (the model, "
                        "then its recipe's posed-fold models; default: shipped)")
    p.add_argument("--fer", default=str(SHARED / "fer2013"), help="FER2013 folder with FER+ votes beside")
    p.add_argument("--ck", default=str(SHARED / "ckplus-dev"), help="CK+-style <class>/ folder ('' to skip)")
    p.add_argument("--posed", default=str(SHARED / "posed-tw"),
                   help="rated posed photos with labels.csv ('' to skip)")
    p.add_argument("--footage", nargs="*", default=[str(SHARED / "media" / "videos")],
                   help="videos or folders for the footage shares (none given: skip)")
    p.add_argument("--cache-dir", default=None,
                   help="keep the posed photos' detections here between runs")
    p.add_argument("--backend", default="auto", choices=list(backend_choices()))
    p.add_argument("--tta", default="auto", choices=[*TTA_MODES, "auto"])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    public = load_fer(args.fer)["PublicTest"]
    if public.votes is None:
        raise SystemExit(f"no FER+ votes beside {args.fer}")
    ck = load_ck(args.ck) if args.ck else {}
    posed = load_posed(args.posed, cache_dir=args.cache_dir) if args.posed else None
    rows, footage = [], []
    for spec in args.weights:
        files = [None] if spec is None else spec.split(",")
        group = [Candidate(w, args.backend, args.tta) for w in files]
        row = scores(group[0], public, ck)
        if posed is not None:
            row |= posed_scores(group, posed)
        rows.append(row)
        if args.footage:
            footage.append(footage_table(args.footage, files[0]))
    info = machine_info()
    print(f"# {info['cpu_model']} ({info['isa']}), torch threads {torch.get_num_threads()}, "
          f"emobatch {info['emobatch']} {info['commit']}; PublicTest n={len(public)}"
          + (f", CK+ n={len(ck['ck'])} ({len(ck['ck_aligned'])} aligned)" if ck else "")
          + (f", posed n={len(posed)}" if posed is not None else ""))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = pd.DataFrame(rows, columns=keys)  # transposed: one column per candidate
    table.index = [f"{r['weights']} {r['sha256']}" for r in rows]
    table = table.drop(columns=["weights", "sha256"]).T
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
        if footage:
            print("\n# footage: share of faces given each emotion")
            print(pd.concat(footage, ignore_index=True).to_string(
                index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        out = {"machine": info, "rows": rows,
               "footage": pd.concat(footage).to_dict("records") if footage else []}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
