"""Detection metrics on scores (probability of fake) and binary labels (1 = fake).

Written with numpy only; each returns NaN when it is undefined (e.g. AUC with one class).
"""

from __future__ import annotations

import numpy as np


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise ValueError(f"Expected as many scores as labels, found {s.shape} and {y.shape}")
    return s, y


def accuracy(scores, labels, threshold: float = 0.5) -> float:
    s, y = _check(scores, labels)
    return float(np.mean((s >= threshold) == (y >= 0.5))) if len(s) else float("nan")


def auc(scores, labels) -> float:
    """Area under the ROC curve (the probability that a random fake scores above a random real;
    ties count half), from average ranks."""
    s, y = _check(scores, labels)
    pos, neg = y >= 0.5, y < 0.5
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds), thresholds decreasing."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order] >= 0.5
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, s[distinct]]


def eer(scores, labels) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate
    (interpolated between ROC points)."""
    s, y = _check(scores, labels)
    if (y >= 0.5).all() or (y < 0.5).all():
        return float("nan")
    fpr, tpr, _ = roc_curve(s, y)
    fnr = 1 - tpr
    d = fpr - fnr
    k = int(np.flatnonzero(d >= 0)[0])
    if k == 0 or d[k] == 0:
        return float((fpr[k] + fnr[k]) / 2)
    t = d[k - 1] / (d[k - 1] - d[k])  # linear interpolation of the crossing
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def average_precision(scores, labels) -> float:
    """Area under the precision-recall curve, as the sum over score thresholds of precision x
    the recall gained there (tied scores form one threshold)."""
    s, y = _check(scores, labels)
    if not (y >= 0.5).any():
        return float("nan")
    fpr, tpr, _ = roc_curve(s, y)
    n_pos, n_neg = int((y >= 0.5).sum()), int((y < 0.5).sum())
    tp, fp = tpr[1:] * n_pos, fpr[1:] * n_neg
    precision = tp / np.maximum(tp + fp, 1e-12)
    return float(np.sum(np.diff(tpr) * precision))


def summary(scores, labels) -> dict[str, float]:
    """Accuracy (threshold 0.5), AUC, EER, AP, the count and ``fake_share``: the share of fakes,
    which is also the accuracy of always answering "fake" (and 1 - it, of always "real")."""
    y = np.ravel(labels)
    return {"acc": accuracy(scores, labels), "auc": auc(scores, labels), "eer": eer(scores, labels),
            "ap": average_precision(scores, labels), "n": int(len(y)),
            "fake_share": float(np.mean(y == 1)) if len(y) else float("nan")}
