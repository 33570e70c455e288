"""semloc.metrics.paired_bootstrap: the difference is the tables' macro-F1 difference, the
interval is a resampling of the posts shared by both models, and bad shapes are refused."""

import numpy as np
import pytest

from semloc.metrics import classification_metrics, paired_bootstrap

LABELS = ["home", "work", "park", "cafe"]


def macro_f1(y, p):
    return classification_metrics(y, p, LABELS)["macro_f1"]


def test_difference_is_the_mean_macro_f1_difference_over_seeds():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    a = np.where(rng.random((3, 300)) < 0.6, y, rng.integers(0, 4, (3, 300)))
    b = np.where(rng.random((3, 300)) < 0.7, y, rng.integers(0, 4, (3, 300)))
    a[0, :] = np.where(y == 3, 0, a[0])  # one seed never predicts a class: F1 0 counts for it
    out = paired_bootstrap(y, a, b, 4, resamples=200)
    want = np.mean([macro_f1(y, q) for q in b]) - np.mean([macro_f1(y, q) for q in a])
    assert out["difference"] == pytest.approx(want, abs=1e-12)
    assert out["low"] < out["difference"] < out["high"]


def test_identical_models_differ_by_nothing_and_a_better_one_clears_zero():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 400)
    noisy = np.where(rng.random(400) < 0.5, y, rng.integers(0, 4, 400))
    same = paired_bootstrap(y, noisy, noisy.copy(), 4, resamples=100)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    better = paired_bootstrap(y, noisy, y, 4, resamples=100)  # B is always right
    assert better["low"] > 0.2
    again = paired_bootstrap(y, noisy, y, 4, resamples=100)
    assert again == better  # seeded


@pytest.mark.parametrize(
    ("y", "a", "b", "needle"),
    [
        ([0, 1, 2], [[0, 1]], [[0, 1, 2]], "must be"),
        ([0, 1, 2], [[0, 1, 2]], [[0, 1, 4]], "model B has class codes"),
        ([0, -1, 2], [[0, 1, 2]], [[0, 1, 2]], "labels has class codes"),
    ],
)
def test_bad_inputs_are_refused(y, a, b, needle):
    with pytest.raises(ValueError, match=needle):
        paired_bootstrap(y, np.array(a), np.array(b), 4)
