"""Quantification: adjusted estimators beat counting under prior shift; intervals cover."""

import numpy as np
import pytest

from semloc.prevalence import (
    DevConfusion,
    PredictionStats,
    adjust,
    estimate_prevalence,
    wilson_interval,
)

MEANS = np.array([0.0, 2.0, 4.0])  # three classes on a line: neighbours get confused


def simulate(rng, shares, n):
    """Posts of known classes; the classifier's probabilities are the exact posterior under a
    uniform prior, i.e. calibrated on a balanced dev split and biased on skewed targets."""
    y = rng.choice(len(shares), size=n, p=shares)
    x = rng.normal(MEANS[y], 1.0)
    log_lik = -0.5 * (x[:, None] - MEANS[None, :]) ** 2
    p = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True), y


def run_once(seed, target=(0.65, 0.25, 0.10), n=2000, n_dev=1500, **kw):
    rng = np.random.default_rng(seed)
    dev_p, dev_y = simulate(rng, np.full(3, 1 / 3), n_dev)
    p, _ = simulate(rng, np.asarray(target), n)
    dev = DevConfusion.from_predictions(dev_p, dev_y, 3)
    return estimate_prevalence(PredictionStats.from_probabilities(p), dev, seed=seed, **kw)


def test_adjusted_estimators_have_lower_error_than_counting():
    target = np.array([0.65, 0.25, 0.10])
    errors = {name: [] for name in ("cc", "pcc", "acc", "pacc")}
    for seed in range(30):
        result = run_once(seed, num_boot=50)
        for name in errors:
            errors[name].append(np.abs(result[name]["share"] - target).sum())
    mean = {k: float(np.mean(v)) for k, v in errors.items()}
    assert mean["acc"] < mean["cc"] / 2
    assert mean["pacc"] < mean["pcc"] / 2
    assert mean["pacc"] <= mean["acc"] * 1.1  # probabilities carry more information


def test_adjusted_interval_covers_the_truth_at_about_the_nominal_rate():
    target = np.array([0.65, 0.25, 0.10])
    hits = {"acc": [], "pacc": []}
    for seed in range(150):
        result = run_once(seed, num_boot=300, confidence=0.9)
        for name in hits:
            r = result[name]
            hits[name].append((r["low"] <= target) & (target <= r["high"]))
    for name, h in hits.items():
        coverage = np.mean(h, axis=0)  # per class, nominal 0.90
        assert np.all(coverage > 0.82), (name, coverage)
        assert np.all(coverage < 0.98), (name, coverage)


def test_counting_interval_is_tight_around_a_biased_value():
    # the point of the adjusted estimators: cc is confidently wrong under prior shift
    result = run_once(0, num_boot=300)
    target = np.array([0.65, 0.25, 0.10])
    cc = result["cc"]
    assert not np.all((cc["low"] <= target) & (target <= cc["high"]))


def test_stats_stream_and_merge_equal_one_pass():
    rng = np.random.default_rng(1)
    p, _ = simulate(rng, np.full(3, 1 / 3), 1000)
    whole = PredictionStats.from_probabilities(p)
    a, b = PredictionStats.from_probabilities(p[:400]), PredictionStats.from_probabilities(p[400:])
    a.merge(b)
    assert a.n == whole.n and np.array_equal(a.counts, whole.counts)
    assert np.allclose(a.prob_outer, whole.prob_outer)
    dev = DevConfusion.from_predictions(p, rng.integers(0, 3, 1000), 3)
    again = DevConfusion.from_dict(dev.to_dict())
    assert np.allclose(again.soft_outer, dev.soft_outer)


def test_adjust_inverts_a_confusion_and_stays_on_the_simplex():
    m = np.array([[0.8, 0.3], [0.2, 0.7]])
    q = np.array([0.25, 0.75])
    assert adjust(m, m @ q) == pytest.approx(q)
    out = adjust(m, np.array([0.95, 0.05]))  # outside what m can produce: clipped
    assert out.min() >= 0 and out.sum() == pytest.approx(1.0)
    singular = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert adjust(singular, np.array([0.5, 0.5])).sum() == pytest.approx(1.0)


def test_wilson_interval_widens_with_fewer_posts():
    low5, high5 = wilson_interval(np.array([0.4]), np.array([5]))
    low500, high500 = wilson_interval(np.array([0.4]), np.array([500]))
    assert high5 - low5 > high500 - low500
    assert low5[0] < 0.4 < high5[0]
