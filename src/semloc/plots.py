"""Plots people would rather look at than read: confusion matrix, per-class F1, training curves.
Every plot is written atomically as PNG (matplotlib's Agg backend; no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from semloc.io import atomic_path


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib figure as PNG atomically (never a half-written file) and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


# One colour per model, fixed by name, so a model looks the same in every plot semloc draws
# (the demo report, the noise studies, grid bar charts) whatever else is plotted beside it.
_MODEL_COLORS = {
    "sgmft": "#d62728",
    "cross_transformer": "#1f77b4",
    "concat_mlp": "#ff7f0e",
    "gmu": "#2ca02c",
    "attention_fusion": "#9467bd",
    "hateclipper": "#8c564b",
    "text_linear": "#98df8a",
    "text_mlp": "#17becf",
    "text_transformer": "#9edae5",
    "image_linear": "#c5b0d5",
    "image_mlp": "#e377c2",
    "image_transformer": "#f7b6d2",
    "linear-probe": "#7f7f7f",
    "zeroshot-image": "#bcbd22",
    "zeroshot-text": "#dbdb8d",
}
_SPARE_COLORS = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d"]


def model_color(name: str) -> str:
    """The colour of model `name` in every plot (a stable pick for names not listed)."""
    if name in _MODEL_COLORS:
        return _MODEL_COLORS[name]
    import zlib

    return _SPARE_COLORS[zlib.crc32(name.encode()) % len(_SPARE_COLORS)]


def model_colors(names: Sequence[str]) -> dict[str, str]:
    """Each name's `model_color`, except that two names not listed never share a colour in one
    plot: a name whose pick is taken takes the next spare colour not in use (while any is
    left)."""
    colors = {name: _MODEL_COLORS[name] for name in names if name in _MODEL_COLORS}
    for name in names:
        if name in colors:
            continue
        pick = model_color(name)
        free = [c for c in _SPARE_COLORS if c not in colors.values()]
        if pick in colors.values() and free:
            start = _SPARE_COLORS.index(pick)
            pick = min(free, key=lambda c: (_SPARE_COLORS.index(c) - start) % len(_SPARE_COLORS))
        colors[name] = pick
    return colors


def plot_confusion(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if m[i, j]:
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="row-normalised")
    ax.set_title(title or "confusion matrix")
    return save_figure(fig, path)


def plot_per_class_f1(
    per_class: dict[str, dict[str, float]] | dict[str, dict[str, dict[str, float]]],
    path: str | Path,
    title: str = "",
) -> Path:
    """`per_class` is one run's table {label: {f1,...}} or several {run: {label: {f1,...}}}."""
    first = next(iter(per_class.values()))
    series = per_class if isinstance(next(iter(first.values())), dict) else {"": per_class}
    labels = list(next(iter(series.values())).keys())
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) * max(1, len(series)) ** 0.5), 4))
    width = 0.8 / len(series)
    x = np.arange(len(labels))
    for k, (name, table) in enumerate(series.items()):
        ax.bar(
            x + k * width - 0.4 + width / 2,
            [table[lab]["f1"] for lab in labels],
            width,
            label=name or None,
        )
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8, ncol=2)
    ax.set_title(title or "per-class F1")
    return save_figure(fig, path)


def plot_training_curves(
    history: Sequence[dict[str, Any]], path: str | Path, title: str = ""
) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax1.plot(epochs, [h["dev_loss"] for h in history], label="dev loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, [h["dev_macro_f1"] for h in history], label="dev macro-F1")
    ax2.plot(epochs, [h["dev_accuracy"] for h in history], label="dev accuracy")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(title or "training curves")
    return save_figure(fig, path)


def plot_clip_curves(
    curves: dict[str, Sequence[dict[str, Any]]],
    path: str | Path,
    x: str = "train_cpu_seconds",
    title: str = "",
) -> Path:
    """Held-out related-vs-unrelated AUROC and R@1 of CLIP builds against training time.

    `curves`: build name -> the ``points`` of its curve.json (semloc.clip.pretrain); `x` is the
    point field on the horizontal axis (``train_cpu_seconds``, ``train_seconds`` or ``steps``).
    Each build keeps one colour in both panels."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = model_colors(list(curves))
    for name, points in curves.items():
        color = colors[name]
        xs = [p[x] for p in points]
        auc = [p.get("related_vs_unrelated_auroc") for p in points]
        r1 = [p.get("r_at_1") for p in points]
        ax1.plot(xs, [np.nan if a is None else a for a in auc], "o-", ms=3, color=color, label=name)
        ax2.plot(xs, [np.nan if r is None else r for r in r1], "o-", ms=3, color=color, label=name)
    label = {"train_cpu_seconds": "training CPU seconds", "train_seconds": "training seconds"}
    for ax, what in ((ax1, "related vs unrelated picture, ROC AUC"), (ax2, "held-out R@1")):
        ax.set_xlabel(label.get(x, x))
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    ax1.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax1.legend(fontsize=8)
    fig.suptitle(title or "demo CLIP: held-out metrics against pretraining time")
    return save_figure(fig, path)
