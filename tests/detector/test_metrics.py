import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from detector import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounded: many ties
    assert metrics.auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    ours_fpr, ours_tpr, _ = metrics.roc_curve(s, y)
    np.testing.assert_allclose(ours_fpr, fpr)
    np.testing.assert_allclose(ours_tpr, tpr)
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
