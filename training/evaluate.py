"""Evaluate emotion-classifier weights on a labelled FER2013-style set.

    python -m training.evaluate --data PATH [--weights FILE] [--split PublicTest]
        [--json REPORT.json] [--out-dir DIR] [--tta none|flip|zoom|tencrop|auto] [--history CSV]
        [--fit-temperature]

Data: anything `training.data.load_fer` reads (the train/ + test/ folder layout, a plain
`<class>/` folder such as CK+48's, or fer2013.csv). The split is --split (default
PublicTest). When that split is empty, every other non-empty split except PrivateTest is
used together (a plain `<class>/` folder already loads as PublicTest, unless its file names
start with `Training_`/`PrivateTest_`). PrivateTest is only ever read when named with
--split. Images without FER2013's file-name prefixes are reported as what they are ("class
folders", "test/"), not as a FER2013 split. Class folders that are not one of the seven
emotions are skipped with a warning; macro averages cover the classes the data has.

Prints accuracy, macro-F1, per-class precision/recall/F1/support, the confusion matrix,
ECE (15 equal-width bins on the top-label confidence) and NLL. --json writes the same as a
report; --out-dir (default: the --json file's folder) adds confusion_matrix.png/.json,
calibration.png/.json and, with --history (a training/fit history.csv), training_curves.png.

--fit-temperature fits one temperature T on this split by minimising NLL. predict_probs
returns probabilities, so log(probs) serve as logits: softmax(log p / T) is exactly
temperature scaling, because log p differs from the network's logits only by a per-row
constant (with flip TTA, log of the averaged probabilities is the score being calibrated).
Accuracy is unchanged. T is fitted and scored on the same images, so the "after" numbers
are optimistic; fit on PublicTest, report on PrivateTest for an honest figure.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from emobatch.atomic import write_text
from emobatch.faces.emotion.classifier import predict_probs
from emobatch.faces.emotion.runtimes import load_runtime
from emobatch.config import TTA_MODES, backend_choices
from emobatch.faces.device import select_device
from emobatch.types import EMOTIONS
from emobatch.faces.emotion.weights import LoadedModel, load_weights
from .data import (Split, TrainingError, add_align_argument, add_votes_argument, exit_on_error,
                   load_fer, votes_arg)
from .plots import plot_calibration, plot_confusion, plot_curves
from .scoring import (ECE_BINS, ece, fit_temperature, metrics, nll, reliability, scale_probs,
                      vote_metrics)

log = logging.getLogger("training.evaluate")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate emobatch emotion weights on labelled FER2013 data.")
    p.add_argument("--data", required=True, help="FER2013 folder layout, <class>/ folder, or fer2013.csv")
    p.add_argument("--weights", default=None, help="weights .pt (default: the shipped weights)")
    p.add_argument("--split", default="PublicTest",
                   help="Training|PublicTest|PrivateTest (default PublicTest; if empty, all "
                        "non-empty splits except PrivateTest)")
    p.add_argument("--json", default=None, metavar="REPORT.json", help="write the report as JSON")
    p.add_argument("--out-dir", default=None,
                   help="figures + confusion/calibration JSON (default: folder of --json; none without)")
    p.add_argument("--tta", default="auto", choices=[*TTA_MODES, "auto"],
                   help="test-time augmentation (auto: the weights' config)")
    p.add_argument("--history", default=None, metavar="CSV",
                   help="history.csv from training.fit: plot training_curves.png in --out-dir")
    p.add_argument("--fit-temperature", action="store_true",
                   help="fit a temperature on this split; report ECE/NLL before and after")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--backend", default="auto", choices=list(backend_choices()),
                   help="how the network runs, as in emobatch run (auto: int8 on a CPU for "
                        "calibrated weights)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_align_argument(p)
    add_votes_argument(p)
    return p


# ----------------------------------------------------------------------------- main

def _name(split_name: str, split: Split) -> str:
    """A FER2013 split by its name; images without FER2013's prefixes by where they came from."""
    return f"{split.origin} (no FER2013 split)" if split.origin else split_name


def select_split(data: dict[str, Split], name: str) -> tuple[Split, str]:
    """The named split and what to call it; if empty, all non-empty splits except PrivateTest,
    concatenated. The name is the split's for FER2013's own splits and the images' origin
    otherwise (e.g. 'class folders (no FER2013 split)'; see Split.origin)."""
    if name not in data:
        raise TrainingError(f"unknown split {name!r}; this data has {sorted(data)}")
    if len(data[name]):
        return data[name], _name(name, data[name])
    use = [s for s, sp in data.items() if len(sp) and s != "PrivateTest"]
    if not use:
        found = ", ".join(f"{s} {len(sp)}" for s, sp in data.items()) or "nothing"
        hint = " (pass --split PrivateTest to evaluate on it)" if len(data.get("PrivateTest", [])) else ""
        raise TrainingError(f"no images in split {name} and no other usable split (found {found}){hint}")
    names = [_name(s, data[s]) for s in use]
    log.warning("split %s is empty: evaluating on %s instead", name, " + ".join(names))
    if "Training" in use and not data["Training"].origin:
        log.warning("these include Training images: accuracy on them is not a held-out figure")
    parts = [data[s] for s in use]
    votes = None if any(p.votes is None for p in parts) else np.concatenate([p.votes for p in parts])
    return Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                 [q for p in parts for q in p.paths], ", ".join(p.origin for p in parts if p.origin),
                 votes), "+".join(names)


def to_emotions_order(probs: np.ndarray, model_labels: Sequence[str]) -> np.ndarray:
    """Reorder probability columns from the weights' label order to EMOTIONS order."""
    if list(model_labels) == list(EMOTIONS):
        return probs
    if sorted(model_labels) != sorted(EMOTIONS):
        raise TrainingError(f"weights labels {list(model_labels)} are not the seven FER2013 emotions")
    return probs[:, [list(model_labels).index(e) for e in EMOTIONS]]


def format_report(r: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    lines = [
        f"weights   {r['weights']}  (sha256 {r['weights_sha256'][:12]})",
        f"data      {r['data']}  {'split ' if r.get('fer2013_split', True) else ''}{r['split']}  "
        f"n={r['n']}  tta={r['tta']}",
        f"accuracy  {r['accuracy']:.4f}   macro-F1 {r['macro_f1']:.4f}   "
        f"ECE {r['ece']:.4f}   NLL {r['nll']:.4f}   (against the images' own labels"
        f"{': FER2013' if r.get('fer2013_split', True) else ''})",
    ]
    ts = r.get("temperature_scaling")
    if ts:
        lines.append(f"temperature T={ts['temperature']:.3f} (fitted on these images): "
                     f"ECE {ts['ece_before']:.4f} -> {ts['ece_after']:.4f}, "
                     f"NLL {ts['nll_before']:.4f} -> {ts['nll_after']:.4f}")
    lines += _class_table(r)
    fp = r.get("ferplus")
    if fp:
        m = fp["majority"]
        lines += ["", f"FER+ majority  accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}   "
                      f"n={m['n']} ({fp['left_out']} tied, contempt-, unknown- or not-a-face-led "
                      f"left out)",
                  f"FER+ votes     cross-entropy {fp['vote_cross_entropy']:.4f} (the votes' own "
                  f"entropy {fp['vote_entropy']:.4f}), probability vs vote share gap "
                  f"{fp['vote_calibration_gap']:.4f}, n={fp['n_distribution']}"]
        lines += _class_table(m)
    elif "ferplus" in r:
        lines += ["", "FER+ votes: none for these images"]
    return "\n".join(lines)


def _class_table(r: dict[str, Any]) -> list[str]:
    """Per-class precision/recall/F1/support and the confusion matrix of a metrics() dict."""
    # macro averages cover the classes the data has (as macro-F1 does)
    present = [name for name, c in r["per_class"].items() if c["support"] > 0]
    pc = [r["per_class"][name] for name in present] or list(r["per_class"].values())
    macro = "macro avg" if len(present) == len(r["per_class"]) else f"macro avg ({len(present)} classes)"
    w = max(10, len(macro), *(len(k) for k in r["per_class"]))
    lines = ["", f"{'class':<{w}}  precision  recall      f1  support"]
    for name, c in r["per_class"].items():
        lines.append(f"{name:<{w}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:6.3f}  "
                     f"{c['support']:7d}" + ("" if c["support"] else "  (not in the data)"))
    lines.append(f"{macro:<{w}}  {np.mean([c['precision'] for c in pc]):9.3f}  "
                 f"{np.mean([c['recall'] for c in pc]):6.3f}  {r['macro_f1']:6.3f}  {r['n']:7d}")
    labels = r["labels"]
    lines += ["", "confusion matrix (rows true, columns predicted)",
              f"{'':<{w}}  " + " ".join(f"{lab[:7]:>7}" for lab in labels)]
    for lab, row in zip(labels, r["confusion_matrix"]):
        lines.append(f"{lab:<{w}}  " + " ".join(f"{v:7d}" for v in row))
    return lines


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Write a report as indented JSON, creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", path)


class Predictions(NamedTuple):
    """A split's probabilities (n, 7) float64 in EMOTIONS order, and what produced them."""

    probs: np.ndarray
    split: Split
    split_name: str
    loaded: LoadedModel
    tta: str
    backend: str


def predict_split(args: argparse.Namespace) -> Predictions:
    """Load --data's split and --weights, and predict every image of the split."""
    data = load_fer(args.data, align=args.align, votes=votes_arg(args.votes))
    split, split_name = select_split(data, args.split)
    device = select_device(args.device)
    loaded = load_weights(args.weights, device=str(device))
    cfg = loaded.config
    tta = cfg.get("tta", "none") if args.tta == "auto" else args.tta
    log.info("evaluating %s (%s) on %s %s: %d images, tta %s", loaded.path, cfg.get("arch"),
             args.data, split_name, len(split), tta)

    runtime = load_runtime(loaded, device, args.backend, args.amp)
    log.info("backend %s", runtime.name)
    probs = predict_probs(runtime.model, split.images, device, runtime.dtype,
                          batch_size=args.batch_size, tta=tta,
                          **loaded.weights_config.inputs)
    return Predictions(to_emotions_order(probs.astype(np.float64), cfg["labels"]), split,
                       split_name, loaded, tta, runtime.name)


def score(p: Predictions, data: str) -> dict[str, Any]:
    """The report of p: metrics() against the split's labels, FER+'s figures where the split
    has votes; temperature_scaling left None."""
    m = metrics(p.probs, p.split.labels, len(EMOTIONS), EMOTIONS)
    report: dict[str, Any] = {
        **m, "tta": p.tta, "weights": str(p.loaded.path), "weights_sha256": p.loaded.sha256,
        "arch": p.loaded.config.get("arch"), "backend": p.backend, "split": p.split_name,
        "fer2013_split": not p.split.origin,
        "data": data,
        "temperature_scaling": None,
    }
    if p.split.votes is not None:
        has = p.split.votes[:, 0] >= 0
        report["ferplus"] = vote_metrics(p.probs[has], p.split.votes[has]) if has.any() else None
    return report


def temperature_scaling(p: Predictions, report: dict[str, Any]
                        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A temperature fitted on p's own images: the report's temperature_scaling entry and the
    reliability bins after scaling."""
    labels = p.split.labels
    t = fit_temperature(p.probs, labels)
    if not 0.051 < t < 19.9:
        log.warning("fitted temperature %.3g is at the search bound: the predictions carry "
                    "(almost) no information about the labels on this split", t)
    scaled = scale_probs(p.probs, t)
    return {"temperature": t, "ece_before": report["ece"], "ece_after": ece(scaled, labels),
            "nll_before": report["nll"], "nll_after": nll(scaled, labels),
            "fitted_on": p.split_name}, reliability(scaled, labels)


def _write_confusion(out_dir: Path, p: Predictions, m: dict[str, Any]) -> list[str]:
    """confusion_matrix.png/.json against the split's labels: the names written."""
    title = f"{Path(p.loaded.path).name} on {p.split_name} (n={m['n']}, acc {m['accuracy']:.3f})"
    plot_confusion(m["confusion_matrix"], EMOTIONS, out_dir / "confusion_matrix.png", title)
    cm = np.asarray(m["confusion_matrix"])
    rows = cm.sum(1, keepdims=True)
    write_text(out_dir / "confusion_matrix.json", json.dumps({
        "labels": list(EMOTIONS), "rows": "true", "columns": "predicted",
        "counts": m["confusion_matrix"],
        "row_normalised": np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0).round(4).tolist(),
        "split": p.split_name, "n": m["n"], "weights_sha256": p.loaded.sha256,
    }, indent=2) + "\n")
    return ["confusion_matrix.png", "confusion_matrix.json"]


def _write_ferplus_confusion(out_dir: Path, p: Predictions, m: dict[str, Any]) -> list[str]:
    """confusion_matrix_ferplus.png against FER+'s majority, where there are votes."""
    if not m.get("ferplus"):
        return []
    fm = m["ferplus"]["majority"]
    plot_confusion(fm["confusion_matrix"], EMOTIONS, out_dir / "confusion_matrix_ferplus.png",
                   f"{Path(p.loaded.path).name} on {p.split_name}, FER+ majority "
                   f"(n={fm['n']}, acc {fm['accuracy']:.3f})")
    return ["confusion_matrix_ferplus.png"]


def _write_calibration(out_dir: Path, p: Predictions, m: dict[str, Any],
                       bins_after: list[dict[str, Any]] | None) -> list[str]:
    """calibration.png/.json, before and (with a fitted temperature) after: the names written."""
    ts = m["temperature_scaling"] or {}
    t, ece_after = ts.get("temperature"), ts.get("ece_after")
    bins_before = reliability(p.probs, p.split.labels)
    plot_calibration(bins_before, out_dir / "calibration.png", m["ece"], bins_after, ece_after, t,
                     title=f"Reliability on {p.split_name} (n={m['n']}, tta {p.tta})")
    write_text(out_dir / "calibration.json", json.dumps({
        "n_bins": ECE_BINS, "ece_before": m["ece"], "ece_after": ece_after,
        "nll_before": m["nll"], "nll_after": ts.get("nll_after"),
        "temperature": t, "bins_before": bins_before, "bins_after": bins_after,
        "split": p.split_name, "weights_sha256": p.loaded.sha256,
    }, indent=2) + "\n")
    return ["calibration.png", "calibration.json"]


@exit_on_error
def main(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate, print the table, write the JSON/figures asked for; returns the report."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.out_dir) if args.out_dir else (Path(args.json).parent if args.json else None)
    if args.history and out_dir is None:
        raise SystemExit("--history needs --out-dir (or --json) for training_curves.png")
    if args.threads:
        torch.set_num_threads(args.threads)

    p = predict_split(args)
    report = score(p, str(args.data))
    bins_after = None
    if args.fit_temperature:
        report["temperature_scaling"], bins_after = temperature_scaling(p, report)

    print(format_report(report), flush=True)

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = (_write_confusion(out_dir, p, report)
                   + _write_calibration(out_dir, p, report, bins_after)
                   + _write_ferplus_confusion(out_dir, p, report))
        if args.history:
            plot_curves(args.history, out_dir / "training_curves.png")
            written.append("training_curves.png")
        log.info("wrote %s in %s", ", ".join(written), out_dir)

    if args.json:
        write_report(report, args.json)
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
