"""The report of an experiment grid: the results table (Markdown for people, CSV for programs)
and its plot. Rows are (store, model) aggregates as `semloc.experiment.collect` makes them."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semloc.io import atomic_write_text
from semloc.metrics import SUMMARY_KEYS, format_mean_std

if TYPE_CHECKING:
    from semloc.experiment import Grid

Rows = list[dict[str, Any]]


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


def format_params(n: int | None, *, missing: str = "?", k_digits: int = 1) -> str:
    """A parameter count as 1.39M / 68.1k / 512 (`missing` when unknown)."""
    if n is None:
        return missing
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.{k_digits}f}k"
    return str(n)


def _cell_text(row: dict[str, Any], key: str) -> str:
    entry = row.get(key)
    if entry is None:
        return "–"
    if row["runs"] == 1:  # one run has no spread to report (sample std is undefined)
        return f"{entry['mean'] * 100:.2f}"
    return format_mean_std(entry)


def results_markdown(grid: Grid, rows: Rows) -> str:
    """The table people read: percentages as mean ± sample std over seeds; best macro-F1 bold."""
    lines = [
        f"# {grid.name}",
        "",
        f"Split `{grid.split}`; mean ± sample std (ddof=1) over seeds {grid.seeds} in percent; "
        "checkpoints selected on dev macro-F1. Training-free baselines are deterministic "
        "(one run). Train time: mean per run.",
        "",
    ]
    series = grid.is_series
    head = ["model", "runs", "macro-F1", "accuracy", "weighted-F1", "params", "train time"]
    if series or len(grid.stores) > 1:
        head.insert(0, grid.x_label if series else "store")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for store in grid.stores:
        store_rows = [r for r in rows if r["store"] == store.key]
        best = max((r["macro_f1"]["mean"] for r in store_rows), default=None)
        for r in store_rows:
            f1 = _cell_text(r, "macro_f1")
            if best is not None and r["macro_f1"]["mean"] == best and len(store_rows) > 1:
                f1 = f"**{f1}**"
            cells = [
                r["model"],
                str(r["runs"]),
                f1,
                _cell_text(r, "accuracy"),
                _cell_text(r, "weighted_f1"),
                format_params(r["num_params"]),
                format_duration(r["train_seconds"]),
            ]
            if series or len(grid.stores) > 1:
                cells.insert(0, f"{store.x:g}" if series and store.x is not None else store.key)
            lines.append("| " + " | ".join(cells) + " |")
    if series:
        xs = sorted(grid.stores, key=lambda s: s.x)
        first, last = xs[0], xs[-1]
        lines += [
            "",
            f"Macro-F1 (%) against {grid.x_label}; the last column is how much each model loses "
            f"from {first.x:g} to {last.x:g} (difference of the means; lower is more robust):",
            "",
            "| model | "
            + " | ".join(f"{s.x:g}" for s in xs)
            + f" | change {first.x:g} → {last.x:g} |",
            "|" + "---|" * (len(xs) + 2),
        ]
        for model in grid.models:
            cells, by_key = [], {}
            for s in xs:
                r = next(
                    (r for r in rows if r["store"] == s.key and r["model"] == model.name), None
                )
                by_key[s.key] = r
                cells.append(_cell_text(r, "macro_f1") if r else "–")
            a, b = by_key[first.key], by_key[last.key]
            change = (
                f"{100 * (b['macro_f1']['mean'] - a['macro_f1']['mean']):+.2f}" if a and b else "–"
            )
            lines.append(f"| {model.name} | " + " | ".join(cells) + f" | {change} |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = [
    "store",
    "x",
    "model",
    "kind",
    "runs",
    *[f"{k}_{stat}" for k in SUMMARY_KEYS for stat in ("mean", "std")],
    "num_params",
    "train_seconds_mean",
    "store_path",
]


def results_csv(rows: Rows) -> str:
    """Fractions (not percent), one row per (store, model); std empty for a single run."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        out = {k: r.get(k) for k in ("store", "x", "model", "kind", "runs", "num_params")}
        out["x"] = "" if r["x"] is None else r["x"]
        out["store_path"] = r["store_path"]
        out["train_seconds_mean"] = r["train_seconds"]
        for k in SUMMARY_KEYS:
            entry = r.get(k)
            out[f"{k}_mean"] = entry["mean"] if entry else ""
            out[f"{k}_std"] = entry["std"] if entry and r["runs"] > 1 else ""
        writer.writerow(out)
    return buf.getvalue()


def write_tables(grid: Grid, rows: Rows, out: Path) -> dict[str, Path]:
    """OUT/results.md and OUT/results.csv, each written atomically."""
    atomic_write_text(out / "results.md", results_markdown(grid, rows))
    atomic_write_text(out / "results.csv", results_csv(rows))
    return {"markdown": out / "results.md", "csv": out / "results.csv"}


def plot_results(grid: Grid, rows: Rows, out: Path) -> Path:
    """Bar chart of macro-F1 per model (one store), or macro-F1 against x (a series)."""
    import matplotlib.pyplot as plt

    from semloc.plots import model_colors, save_figure  # sets the Agg backend

    if grid.is_series:
        # left: macro-F1 against x; right: the same relative to each model's value at the
        # smallest x, which is the robustness question (who loses least as noise grows)
        path = out / "noise.png"
        fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(12, 4.5))
        x0 = min(s.x for s in grid.stores if s.x is not None)
        # each model in its own fixed colour (the same in every plot), SG-MFT drawn heavier,
        # training-free baselines dashed
        colors = model_colors([m.name for m in grid.models])
        for model in grid.models:
            style = {
                "color": colors[model.name],
                "linestyle": "-" if model.kind == "train" else "--",
                "linewidth": 2.6 if model.name == "sgmft" else 1.4,
                "zorder": 3 if model.name == "sgmft" else 2,
            }
            pts = sorted(
                (r["x"], r["macro_f1"]["mean"], r["macro_f1"]["std"])
                for r in rows
                if r["model"] == model.name and r["x"] is not None
            )
            if not pts:
                continue
            x, mean, std = (list(v) for v in zip(*pts, strict=True))
            ax.plot(x, mean, marker="o", markersize=4, label=model.name, **style)
            lo = [m - s for m, s in zip(mean, std, strict=True)]
            hi = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(x, lo, hi, color=style["color"], alpha=0.15, linewidth=0)
            if x[0] == x0:
                ax_d.plot(x, [m - mean[0] for m in mean], marker="o", markersize=4, **style)
        ax.set_xlabel(grid.x_label)
        ax.set_ylabel(f"{grid.split} macro-F1")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        ax.set_title("macro-F1 (mean ± std over seeds)", fontsize=10)
        ax_d.axhline(0, color="0.5", linewidth=0.8)
        ax_d.set_xlabel(grid.x_label)
        ax_d.set_ylabel(f"change in macro-F1 from x = {x0:g}")
        ax_d.grid(alpha=0.3)
        ax_d.set_title("change from each model's own value at the cleanest point", fontsize=10)
        fig.suptitle(grid.name)
    else:
        path = out / "results.png"
        names = [r["model"] for r in rows]
        means = [r["macro_f1"]["mean"] for r in rows]
        stds = [r["macro_f1"]["std"] for r in rows]
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(rows) + 2), 4.5))
        palette = model_colors(list(dict.fromkeys(names)))
        colors = [palette[name] for name in names]
        ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color=colors)
        for i, (m, sd) in enumerate(zip(means, stds, strict=True)):  # above the error bar
            ax.text(i, m + sd + 0.01, f"{m * 100:.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right")
        ax.set_ylabel(f"{grid.split} macro-F1")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{grid.name}: macro-F1 (mean ± std over seeds)")
    return save_figure(fig, path)
