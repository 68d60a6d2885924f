"""The evaluation's figures (matplotlib's Agg canvas, no pyplot state): confusion matrix,
reliability diagram and training curves from training.fit's history.csv."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from emobatch.atomic import atomic_write


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
