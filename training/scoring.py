"""Scores of predicted probabilities against labels: accuracy, per-class figures and the
confusion matrix, calibration (ECE, reliability bins, NLL, temperature scaling) and FER+'s
vote figures. Shared by training.evaluate, fit, adjust, quantize and the benchmarks."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from emobatch.types import EMOTIONS
from . import ferplus

ECE_BINS = 15
EPS = 1e-12


def confusion(pred: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: rows = true class, columns = predicted class."""
    pred, labels = np.asarray(pred, np.int64), np.asarray(labels, np.int64)
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)


def _binned(x: np.ndarray, y: np.ndarray, bins: int, x_name: str, y_name: str
            ) -> list[dict[str, Any]]:
    """x (n,) in [0, 1] cut into `bins` equal bins (lo, hi]: per bin its count and the means of
    x and of y (n,) over it, under x_name and y_name (None for an empty bin)."""
    idx = np.clip(np.ceil(x * bins).astype(np.int64) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": n,
                    x_name: float(x[m].mean()) if n else None,
                    y_name: float(y[m].mean()) if n else None})
    return out


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per-bin count, mean confidence and accuracy of the top label (bins (lo, hi] on [0, 1])."""
    conf = probs.max(1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(1) == labels) if len(probs) else np.zeros(0, bool)
    return _binned(conf, correct, bins, "confidence", "accuracy")


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
    out = _binned(p, q, bins, "probability", "vote_share")
    gap = sum(b["count"] / max(len(p), 1) * abs(b["probability"] - b["vote_share"])
              for b in out if b["count"])
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
