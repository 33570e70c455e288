"""Classification metrics as the field reports them, and their aggregation over seeds.

Macro-F1 is the headline (classes are imbalanced and every place type matters equally); accuracy,
weighted-F1 and macro precision/recall come with it. Computed with scikit-learn so the numbers
mean exactly what readers expect. Classes absent from both truth and prediction count with F1 0
only if they were expected (``labels`` passes the full class list), as scikit-learn does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

HEADLINE = "macro_f1"
SUMMARY_KEYS = ("macro_f1", "accuracy", "weighted_f1", "macro_precision", "macro_recall")


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: Sequence[str],
) -> dict[str, Any]:
    """All metrics for one evaluation: summary numbers, per-class table, confusion matrix."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    codes = list(range(len(labels)))
    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=codes, average=None, zero_division=0
    )
    mp, mr, mf, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=codes, average="macro", zero_division=0
    )
    _, _, wf, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=codes, average="weighted", zero_division=0
    )
    return {
        "num_examples": int(y_true.size),
        "accuracy": float(accuracy_score(y_true, y_pred)) if y_true.size else 0.0,
        "macro_f1": float(mf),
        "weighted_f1": float(wf),
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "per_class": {
            lab: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=codes).tolist(),
    }


def aggregate(runs: Sequence[dict[str, Any]], keys: Sequence[str] = SUMMARY_KEYS) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1, as papers report over seeds) of each key."""
    out: dict[str, Any] = {"num_runs": len(runs)}
    for key in keys:
        values = [float(r[key]) for r in runs if key in r]
        if not values:
            continue
        mean = sum(values) / len(values)
        std = (
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else 0.0
        )
        out[key] = {"mean": mean, "std": std, "values": values}
    return out


def format_mean_std(entry: dict[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    """'47.21 ± 0.35' (percent by default)."""
    return f"{entry['mean'] * scale:.{digits}f} ± {entry['std'] * scale:.{digits}f}"


def paired_bootstrap(
    y_true: Sequence[int] | np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    num_classes: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Macro-F1 of model B minus model A, averaged over seeds, with a paired bootstrap interval.

    `preds_a` and `preds_b` are predicted class codes, (seeds, posts) or (posts,), on the same
    posts as `y_true`. Each replicate resamples the posts with replacement, the same posts for
    every seed of both models, so the interval is the spread a different sample of evaluation
    posts would give; the seeds stay fixed (their spread is the ± of the tables). Returns the
    difference on the posts as they are and the percentile interval at `level`, in [0, 1] units.
    """
    y = np.asarray(y_true, dtype=np.int64)
    a, b = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    if y.ndim != 1 or a.shape[1] != len(y) or b.shape[1] != len(y):
        raise ValueError(
            f"predictions {a.shape} and {b.shape} must be (seeds, posts) for {len(y)} posts"
        )
    if not 0 < level < 1 or resamples < 1 or num_classes < 1:
        raise ValueError("level must be in (0, 1), resamples and num_classes at least 1")
    for name, codes in (("labels", y), ("model A", a), ("model B", b)):
        if codes.size and (codes.min() < 0 or codes.max() >= num_classes):
            raise ValueError(f"{name} has class codes outside 0..{num_classes - 1}")
    rng = np.random.default_rng(seed)
    rows = np.vstack([np.arange(len(y))[None], rng.integers(0, len(y), (resamples, len(y)))])

    def macro_f1(pred: np.ndarray) -> np.ndarray:  # (posts,) -> (1 + resamples,)
        cells = (y * num_classes + pred)[rows]  # (R, N) confusion-cell index of each draw
        offsets = np.arange(len(rows))[:, None] * num_classes**2
        counts = np.bincount((cells + offsets).ravel(), minlength=len(rows) * num_classes**2)
        cm = counts.reshape(len(rows), num_classes, num_classes)  # (R, true, predicted)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        denom = cm.sum(1) + cm.sum(2)  # 2 TP + FP + FN
        f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
        return f1.mean(1)  # every class counts, as classification_metrics' macro-F1 does

    diff = np.mean([macro_f1(p) for p in b], 0) - np.mean([macro_f1(p) for p in a], 0)
    low, high = np.percentile(diff[1:], [50 * (1 - level), 50 * (1 + level)])
    return {"difference": float(diff[0]), "low": float(low), "high": float(high)}
