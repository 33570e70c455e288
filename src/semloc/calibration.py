"""Calibrated probabilities: temperature scaling fitted on the dev split, and how to measure it.

A classifier trained with cross-entropy and selected on macro-F1 is usually over-confident: its
top probability says 0.95 where it is right 80% of the time. Everything downstream that *adds up*
probabilities (probabilistic prevalence, activity grids, per-user shares) inherits that bias, so a
run learns one scalar T on the dev split after training (Guo et al. 2017, "On Calibration of
Modern Neural Networks") and every probability that leaves semloc is ``softmax(logits / T)``.
T > 1 softens, T < 1 sharpens; argmax labels never change.

Measures (all on held-out posts):

- ECE: top-label expected calibration error with ``NUM_BINS`` equal-width confidence bins over
  [0, 1]: sum over bins of (posts in bin / posts) * |accuracy in bin - mean confidence in bin|.
  The binning is stored next to every ECE value, since ECE depends on it.
- Brier score: mean over posts of sum over classes of (p_c - [y = c])^2 (0 = perfect, 2 = worst).
- NLL: mean negative log-likelihood of the true class (what the temperature minimises).

The dev split is the only data the temperature sees; the test split is never read here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

NUM_BINS = 15
BINNING = f"{NUM_BINS} equal-width bins of top-label confidence over [0, 1]"
# log T is searched in [-LOG_T_BOUND, LOG_T_BOUND]: T in [0.02, 55], far beyond any sane value
LOG_T_BOUND = 4.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64 (stable for large logits)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class at `temperature`."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of `labels` under softmax(logits / T).

    One-dimensional and convex in 1/T, so a bounded scalar search on log T finds the optimum;
    deterministic (no random restarts)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError("fit_temperature needs (N, C) logits and N labels, N > 0")
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, math.exp(log_t)),
        bounds=(-LOG_T_BOUND, LOG_T_BOUND),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(result.x))


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS
) -> dict[str, list[float]]:
    """Per confidence bin: number of posts, mean top-label confidence and accuracy."""
    p = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    # bin b holds (b/B, (b+1)/B]; confidence 0 cannot occur for a softmax
    which = np.clip(np.ceil(conf * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    count = np.bincount(which, minlength=num_bins).astype(np.float64)
    conf_sum = np.bincount(which, weights=conf, minlength=num_bins)
    hit_sum = np.bincount(which, weights=correct, minlength=num_bins)
    nz = count > 0
    mean_conf = np.divide(conf_sum, count, out=np.zeros(num_bins), where=nz)
    accuracy = np.divide(hit_sum, count, out=np.zeros(num_bins), where=nz)
    return {
        "edges": np.linspace(0, 1, num_bins + 1).tolist(),
        "count": count.tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": accuracy.tolist(),
    }


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS
) -> float:
    """Top-label ECE with `num_bins` equal-width confidence bins (see the module docstring)."""
    bins = reliability_bins(probabilities, labels, num_bins)
    count = np.asarray(bins["count"])
    if count.sum() == 0:
        return 0.0
    gap = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float((count * gap).sum() / count.sum())


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over posts of sum_c (p_c - [y = c])^2."""
    p = np.asarray(probabilities, dtype=np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(labels)), np.asarray(labels)] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def calibration_metrics(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
) -> dict[str, Any]:
    """ECE, Brier and NLL of softmax(logits / temperature) against `labels`."""
    p = softmax(logits, temperature)
    return {
        "temperature": float(temperature),
        "ece": expected_calibration_error(p, labels),
        "brier": brier_score(p, labels),
        "nll": nll(logits, labels, temperature),
        "reliability": reliability_bins(p, labels),
    }


def dev_confusions(
    logits: np.ndarray, labels: np.ndarray, num_classes: int, temperature: float
) -> dict[str, Any]:
    """What the adjusted prevalence estimators need from the dev split, at the calibrated
    temperature (`semloc.prevalence.DevConfusion`, as a JSON-ready dict)."""
    from semloc.prevalence import DevConfusion

    p = softmax(logits, temperature)
    return DevConfusion.from_predictions(p, labels, num_classes).to_dict()


def calibration_summary(
    logits: np.ndarray, labels: np.ndarray, label_names: Sequence[str], split: str = "dev"
) -> dict[str, Any]:
    """Fit the temperature on (logits, labels) and report before/after: the calibration.json
    content. Only ever called with dev-split outputs at training time."""
    temperature = fit_temperature(logits, labels)
    return {
        "split": split,
        "num_posts": len(labels),
        "labels": list(label_names),
        "temperature": temperature,
        "binning": BINNING,
        "before": calibration_metrics(logits, labels, 1.0),
        "after": calibration_metrics(logits, labels, temperature),
        "dev_confusion": dev_confusions(logits, labels, len(label_names), temperature),
    }


def plot_reliability(
    before: dict[str, Any], after: dict[str, Any], path: str | Path, title: str = ""
) -> Path:
    """Reliability diagram: accuracy against confidence per bin, before and after temperature
    scaling, with the diagonal of perfect calibration and the bin counts underneath."""
    from semloc.plots import plt, save_figure

    fig, (ax, ax_n) = plt.subplots(
        2, 1, figsize=(5, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect")
    edges = np.asarray(before["reliability"]["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    for metrics, colour, name in ((before, "#d62728", "T = 1"), (after, "#1f77b4", None)):
        rel = metrics["reliability"]
        count = np.asarray(rel["count"])
        mask = count > 0
        label = name or f"T = {metrics['temperature']:.2f}"
        label += f"  (ECE {metrics['ece']:.3f}, Brier {metrics['brier']:.3f})"
        ax.plot(
            np.asarray(rel["confidence"])[mask],
            np.asarray(rel["accuracy"])[mask],
            marker="o",
            color=colour,
            label=label,
        )
        ax_n.bar(centres, count, width=width * 0.9, color=colour, alpha=0.45)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "reliability diagram")
    ax_n.set_xlabel(f"top-label confidence ({BINNING})")
    ax_n.set_ylabel("posts")
    return save_figure(fig, path)
