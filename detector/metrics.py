"""Detection metrics on scores (probability of fake) and binary labels (1 = fake).

AUC, ROC and AP come from scikit-learn; accuracy and the EER (interpolated on the ROC) are
written here. Each returns NaN when it is undefined (e.g. AUC with one class).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as _sk_roc_curve


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
    ties count half): scikit-learn's ``roc_auc_score``."""
    s, y = _check(scores, labels)
    y = y >= 0.5
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds), thresholds decreasing, one point
    per distinct score after (0, 0) at threshold +inf: scikit-learn's ``roc_curve`` with every
    point kept. Both classes must be present."""
    s, y = _check(scores, labels)
    return _sk_roc_curve(y >= 0.5, s, drop_intermediate=False)


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
    the recall gained there (tied scores form one threshold): scikit-learn's
    ``average_precision_score``."""
    s, y = _check(scores, labels)
    if not (y >= 0.5).any():
        return float("nan")
    return float(average_precision_score(y >= 0.5, s))


def summary(scores, labels) -> dict[str, float]:
    """Accuracy (threshold 0.5), AUC, EER, AP, the count and ``fake_share``: the share of fakes,
    which is also the accuracy of always answering "fake" (and 1 - it, of always "real")."""
    y = np.ravel(labels)
    return {"acc": accuracy(scores, labels), "auc": auc(scores, labels), "eer": eer(scores, labels),
            "ap": average_precision(scores, labels), "n": int(len(y)),
            "fake_share": float(np.mean(y == 1)) if len(y) else float("nan")}
