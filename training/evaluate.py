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
import csv
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from emobatch.atomic import atomic_write, write_text
from emobatch.faces.classify import predict_probs
from emobatch.faces.backends import load_runtime
from emobatch.config import TTA_MODES, backend_choices
from emobatch.faces.device import select_device
from emobatch.types import EMOTIONS
from emobatch.faces.weights import load_weights
from . import ferplus
from .data import (Split, TrainingError, add_align_argument, add_votes_argument, exit_on_error,
                   load_fer, votes_arg)

log = logging.getLogger("training.evaluate")

ECE_BINS = 15
EPS = 1e-12


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


# ----------------------------------------------------------------------------- metrics

def confusion(pred: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: rows = true class, columns = predicted class."""
    pred, labels = np.asarray(pred, np.int64), np.asarray(labels, np.int64)
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per-bin count, mean confidence and accuracy of the top label (bins (lo, hi] on [0, 1])."""
    conf = probs.max(1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(1) == labels) if len(probs) else np.zeros(0, bool)
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": n,
                    "confidence": float(conf[m].mean()) if n else None,
                    "accuracy": float(correct[m].mean()) if n else None})
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top label: sum_b n_b/N * |acc_b - conf_b|."""
    n = len(labels)
    if n == 0:
        return float("nan")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(probs, labels, bins) if b["count"]))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at 1e-12)."""
    if len(labels) == 0:
        return float("nan")
    p = probs[np.arange(len(labels)), labels].astype(np.float64)
    return float(-np.log(np.clip(p, EPS, 1.0)).mean())


def _logits(probs: np.ndarray) -> np.ndarray:
    """log(probs) as logits (equal to the network's logits up to a per-row constant)."""
    return np.log(np.clip(np.asarray(probs, np.float64), EPS, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def scale_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T): temperature-scaled probabilities."""
    return _softmax(_logits(probs) / temperature)


def _nll_at(z: np.ndarray, labels: np.ndarray, t: float) -> float:
    s = z / t
    m = s.max(1)
    lse = m + np.log(np.exp(s - m[:, None]).sum(1))
    return float((lse - s[np.arange(len(labels)), labels]).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray,
                    bounds: tuple[float, float] = (0.05, 20.0), iters: int = 80) -> float:
    """The T minimising NLL of softmax(log(probs) / T); golden-section search on log T.

    NLL is convex in 1/T, so it is unimodal in log T and the search finds the optimum
    within `bounds`. Returns 1.0 for an empty set.
    """
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        return 1.0
    z = _logits(probs)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    r = (math.sqrt(5) - 1) / 2
    a, b = hi - r * (hi - lo), lo + r * (hi - lo)
    fa, fb = _nll_at(z, labels, math.exp(a)), _nll_at(z, labels, math.exp(b))
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - r * (hi - lo)
            fa = _nll_at(z, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + r * (hi - lo)
            fb = _nll_at(z, labels, math.exp(b))
    t = math.exp((lo + hi) / 2)
    return t if _nll_at(z, labels, t) <= _nll_at(z, labels, 1.0) else 1.0


def metrics(probs: np.ndarray, labels: np.ndarray, n_classes: int,
            names: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro-F1, confusion matrix, ECE, NLL.

    Precision/recall/F1 are 0 where undefined (no predictions / no support). Macro-F1
    averages over the classes present in the labels (`classes`): a class the data does not
    have (a 6-class set) would add an F1 of 0 that says nothing about the model. Predictions
    into such a class still count as errors in accuracy and the other classes' recall.
    """
    names = list(names) if names is not None else (
        list(EMOTIONS) if n_classes == len(EMOTIONS) else [str(i) for i in range(n_classes)])
    labels = np.asarray(labels, np.int64)
    pred = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    cm = confusion(pred, labels, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    prec = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    rec = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(n_classes), where=(prec + rec) > 0)
    present = support > 0
    n = int(len(labels))
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class": {name: {"precision": float(prec[i]), "recall": float(rec[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(names)},
        "labels": names,
        "classes": [name for name, keep in zip(names, present) if keep],
        "confusion_matrix": cm.tolist(),
        "ece": ece(probs, labels),
        "nll": nll(probs, labels),
    }


def vote_calibration(probs: np.ndarray, dist: np.ndarray, bins: int = ECE_BINS
                     ) -> tuple[float, list[dict[str, Any]]]:
    """How close probabilities are to the share of people who chose each label: every
    class's probability (N * 7 values) binned on [0, 1], each bin's mean probability against
    the mean vote share of the same (face, class) pairs. Returns the count-weighted mean gap
    and the bins."""
    p, q = np.asarray(probs, np.float64).ravel(), np.asarray(dist, np.float64).ravel()
    idx = np.clip(np.ceil(p * bins).astype(np.int64) - 1, 0, bins - 1)
    out, gap = [], 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": n,
                    "probability": float(p[m].mean()) if n else None,
                    "vote_share": float(q[m].mean()) if n else None})
        if n:
            gap += n / max(len(p), 1) * abs(p[m].mean() - q[m].mean())
    return float(gap), out


def vote_metrics(probs: np.ndarray, votes: np.ndarray) -> dict[str, Any]:
    """FER+ figures of probs (N, 7) in EMOTIONS order against votes (N, 10) (rows of -1:
    no votes): `metrics` against the majority label (faces with one, see
    training.ferplus.majority), cross-entropy against the seven emotions' vote shares (and
    the shares' own entropy, its floor), and how close probabilities are to vote shares."""
    votes = np.asarray(votes)
    maj = ferplus.majority(votes)
    keep = maj != ferplus.NO_LABEL
    dist = ferplus.distribution(votes)
    has = dist.sum(1) > 0
    p = np.clip(np.asarray(probs, np.float64)[has], EPS, 1.0)
    q = dist[has].astype(np.float64)
    gap, bins = vote_calibration(probs[has], dist[has])
    return {
        "majority": metrics(probs[keep], maj[keep], len(EMOTIONS), EMOTIONS),
        "left_out": int((votes[:, 0] >= 0).sum() - keep.sum()),
        "no_votes": int((votes[:, 0] < 0).sum()),
        "n_distribution": int(has.sum()),
        "vote_cross_entropy": float(-(q * np.log(p)).sum(1).mean()) if has.any() else float("nan"),
        "vote_entropy": float(-(q * np.log(np.clip(q, EPS, 1.0))).sum(1).mean()) if has.any() else float("nan"),
        "vote_calibration_gap": gap,
        "vote_calibration": bins,
    }


# ----------------------------------------------------------------------------- plots

def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, no pyplot state
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion(cm: np.ndarray | list, labels: Sequence[str], path: str | Path,
                   title: str = "") -> None:
    """Row-normalised confusion matrix, each cell annotated with its count and row %."""
    cm = np.asarray(cm)
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig = _figure(7.5, 6.5)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    k = len(labels)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]}\n{100 * frac[i, j]:.0f}%", ha="center", va="center",
                    fontsize=8, color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), [f"{lab} ({int(rows[i, 0])})" for i, lab in enumerate(labels)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (support)")
    ax.set_title(title or "Confusion matrix (row-normalised)")
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png")


def plot_calibration(bins_before: list[dict], path: str | Path, ece_before: float,
                     bins_after: list[dict] | None = None, ece_after: float | None = None,
                     temperature: float | None = None, title: str = "") -> None:
    """Reliability diagram (accuracy vs confidence per bin) over a confidence histogram."""
    fig = _figure(6.0, 6.5)
    ax, axh = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lo = np.array([b["lo"] for b in bins_before])
    width = lo[1] - lo[0] if len(lo) > 1 else 1.0
    acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins_before])
    conf = np.array([b["confidence"] if b["count"] else np.nan for b in bins_before])
    used = np.array([b["count"] > 0 for b in bins_before])
    ax.bar(lo[used], acc[used], width=width, align="edge", color="tab:blue", alpha=0.75,
           edgecolor="k", label=f"accuracy (ECE {ece_before:.3f})")
    ax.bar(lo[used], (conf - acc)[used], bottom=acc[used], width=width, align="edge",
           color="none", edgecolor="tab:red", hatch="//", label="gap to confidence")
    if bins_after is not None:
        c = [b["confidence"] for b in bins_after if b["count"]]
        a = [b["accuracy"] for b in bins_after if b["count"]]
        ax.plot(c, a, "o-", color="tab:orange",
                label=f"after T={temperature:.2f} (ECE {ece_after:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title or "Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    axh.bar(lo, [b["count"] for b in bins_before], width=width, align="edge", color="tab:gray",
            edgecolor="k")
    axh.set(xlabel="top-label confidence", ylabel="images")
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png")


def _read_history(history_csv: str | Path) -> dict[str, np.ndarray]:
    with open(history_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols: dict[str, np.ndarray] = {}
    for key in (rows[0] if rows else {}):
        try:
            cols[key] = np.array([float(r[key]) for r in rows])
        except (TypeError, ValueError):
            pass
    return cols


def plot_curves(history_csv: str | Path, path: str | Path) -> None:
    """Loss and accuracy per epoch from training/fit's history.csv (train, PublicTest, EMA)."""
    from matplotlib.ticker import MaxNLocator

    h = _read_history(history_csv)
    if "epoch" not in h:
        raise ValueError(f"{history_csv}: no epoch column (not a training.fit history.csv)")
    ep = h["epoch"]
    fig = _figure(11.0, 4.2)
    ax_l, ax_a = fig.subplots(1, 2)
    votes = "val_fp_acc" in h  # trained on FER+ votes: scored against them too
    # (column, label, colour, style, faint) per panel
    loss = [("train_loss", "train (augmented)", "tab:blue", "o-", False)]
    if votes:
        loss += [("val_vote_ce", "PublicTest, vs votes", "tab:orange", "s-", False),
                 ("ema_val_vote_ce", "EMA PublicTest, vs votes", "tab:green", "^--", False)]
    else:
        loss += [("val_loss", "PublicTest", "tab:orange", "s-", False),
                 ("ema_val_loss", "EMA PublicTest", "tab:green", "^--", False)]
    acc = [("train_acc", "train" + (" (top vote)" if votes else ""), "tab:blue", "o-", False),
           ("val_acc", "PublicTest" + (" (FER2013 labels)" if votes else ""), "tab:orange", "s-", votes),
           ("ema_val_acc", "EMA PublicTest" + (" (FER2013 labels)" if votes else ""), "tab:green", "^--", votes)]
    if votes:
        acc += [("val_fp_acc", "PublicTest (FER+ majority)", "tab:orange", "s-", False),
                ("ema_val_fp_acc", "EMA PublicTest (FER+ majority)", "tab:green", "^--", False)]
    ylabel = "cross-entropy (train, val vs votes)" if votes else "loss (val: NLL)"
    for ax, lines, label in ((ax_l, loss, ylabel), (ax_a, acc, "accuracy")):
        for key, name, color, style, faint in lines:
            if key in h:
                ax.plot(ep, h[key], style, color=color, ms=3, label=name, alpha=0.45 if faint else 1.0)
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    best_key = "ema_val_fp_acc" if votes else "ema_val_acc"
    if best_key in h and len(ep):
        i = int(np.argmax(h[best_key]))
        ax_a.annotate(f"best EMA {h[best_key][i]:.3f}", (ep[i], h[best_key][i]),
                      textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
    ax_l.set_title("Loss per epoch")
    ax_a.set_title("Accuracy per epoch")
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png")


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


@exit_on_error
def main(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate, print the table, write the JSON/figures asked for; returns the report."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.out_dir) if args.out_dir else (Path(args.json).parent if args.json else None)
    if args.history and out_dir is None:
        raise SystemExit("--history needs --out-dir (or --json) for training_curves.png")
    if args.threads:
        torch.set_num_threads(args.threads)

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
                          mean=cfg.get("mean", 0.5), std=cfg.get("std", 0.25))
    probs = to_emotions_order(probs.astype(np.float64), cfg["labels"])
    labels = split.labels
    m = metrics(probs, labels, len(EMOTIONS), EMOTIONS)
    report: dict[str, Any] = {
        **m, "tta": tta, "weights": str(loaded.path), "weights_sha256": loaded.sha256,
        "arch": cfg.get("arch"), "backend": runtime.name, "split": split_name,
        "fer2013_split": not split.origin,
        "data": str(args.data),
        "temperature_scaling": None,
    }
    if split.votes is not None:
        has = split.votes[:, 0] >= 0
        report["ferplus"] = vote_metrics(probs[has], split.votes[has]) if has.any() else None

    bins_after = ece_after = t = None
    if args.fit_temperature:
        t = fit_temperature(probs, labels)
        if not 0.051 < t < 19.9:
            log.warning("fitted temperature %.3g is at the search bound: the predictions carry "
                        "(almost) no information about the labels on this split", t)
        scaled = scale_probs(probs, t)
        ece_after = ece(scaled, labels)
        bins_after = reliability(scaled, labels)
        report["temperature_scaling"] = {
            "temperature": t, "ece_before": m["ece"], "ece_after": ece_after,
            "nll_before": m["nll"],
            "nll_after": nll(scaled, labels), "fitted_on": split_name,
        }

    print(format_report(report), flush=True)

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        title = f"{Path(loaded.path).name} on {split_name} (n={m['n']}, acc {m['accuracy']:.3f})"
        plot_confusion(m["confusion_matrix"], EMOTIONS, out_dir / "confusion_matrix.png", title)
        cm = np.asarray(m["confusion_matrix"])
        rows = cm.sum(1, keepdims=True)
        write_text(out_dir / "confusion_matrix.json", json.dumps({
            "labels": list(EMOTIONS), "rows": "true", "columns": "predicted",
            "counts": m["confusion_matrix"],
            "row_normalised": np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0).round(4).tolist(),
            "split": split_name, "n": m["n"], "weights_sha256": loaded.sha256,
        }, indent=2) + "\n")
        bins_before = reliability(probs, labels)
        plot_calibration(bins_before, out_dir / "calibration.png", m["ece"], bins_after, ece_after, t,
                         title=f"Reliability on {split_name} (n={m['n']}, tta {tta})")
        write_text(out_dir / "calibration.json", json.dumps({
            "n_bins": ECE_BINS, "ece_before": m["ece"], "ece_after": ece_after,
            "nll_before": m["nll"],
            "nll_after": report["temperature_scaling"]["nll_after"] if t is not None else None,
            "temperature": t, "bins_before": bins_before, "bins_after": bins_after,
            "split": split_name, "weights_sha256": loaded.sha256,
        }, indent=2) + "\n")
        written = ["confusion_matrix.png", "confusion_matrix.json", "calibration.png", "calibration.json"]
        if report.get("ferplus"):
            fm = report["ferplus"]["majority"]
            plot_confusion(fm["confusion_matrix"], EMOTIONS, out_dir / "confusion_matrix_ferplus.png",
                           f"{Path(loaded.path).name} on {split_name}, FER+ majority "
                           f"(n={fm['n']}, acc {fm['accuracy']:.3f})")
            written.append("confusion_matrix_ferplus.png")
        if args.history:
            plot_curves(args.history, out_dir / "training_curves.png")
            written.append("training_curves.png")
        log.info("wrote %s in %s", ", ".join(written), out_dir)

    if args.json:
        write_report(report, args.json)
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
