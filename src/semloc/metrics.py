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
