import numpy as np
import pytest

from detector import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_the_definitions(seed):
    """AUC as the share of (fake, real) pairs ranked right (ties half), AP as precision x recall
    gained per distinct threshold, the ROC one point per distinct score: counted by brute force."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounded: many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert metrics.auc(s, y) == pytest.approx(pairs.mean(), abs=1e-12)
    thresholds = np.unique(s)[::-1]
    tpr = np.array([0.0] + [(pos >= t).mean() for t in thresholds])
    fpr = np.array([0.0] + [(neg >= t).mean() for t in thresholds])
    precision = np.array([(pos >= t).sum() / (s >= t).sum() for t in thresholds])
    assert metrics.average_precision(s, y) == pytest.approx(np.sum(np.diff(tpr) * precision), abs=1e-12)
    ours_fpr, ours_tpr, ours_thr = metrics.roc_curve(s, y)
    np.testing.assert_allclose(ours_fpr, fpr)
    np.testing.assert_allclose(ours_tpr, tpr)
    assert ours_thr[0] == np.inf and np.array_equal(ours_thr[1:], thresholds)
    e = metrics.eer(s, y)
    k = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(e - (fpr[k] + 1 - tpr[k]) / 2) < 0.03


def test_known_values():
    assert metrics.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert metrics.eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0
    assert metrics.eer([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 1.0
    assert metrics.accuracy([0.2, 0.7, 0.5], [0, 1, 0]) == pytest.approx(2 / 3)
    assert np.isnan(metrics.auc([0.1, 0.2], [1, 1])) and np.isnan(metrics.eer([0.1], [0]))
    with pytest.raises(ValueError, match="as many scores"):
        metrics.auc([0.1, 0.2], [1])
    s = metrics.summary([0.9, 0.8, 0.7, 0.1], [1, 1, 1, 0])
    assert s["fake_share"] == 0.75 == metrics.accuracy([1, 1, 1, 1], [1, 1, 1, 0]) and s["n"] == 4
