"""Evaluate runs on a split: metrics, plots, and mean ± std over runs of the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from semloc.config import config_to_dict
from semloc.errors import SemlocError
from semloc.features.store import FeatureStore
from semloc.io import atomic_write_json, sha256_json
from semloc.metrics import aggregate, classification_metrics
from semloc.outputs import Predictions
from semloc.prediction import predict_store
from semloc.runs import (
    BACKBONE_FILLED_MODEL_KEYS,
    DATA_FILLED_MODEL_KEYS,
    LoadedRun,
    load_run,
    require_split,
)


def open_run_store(run: LoadedRun, store_path: str | Path | None) -> FeatureStore:
    path = store_path or run.meta.get("store_path")
    if not path:
        raise SemlocError(f"run {run.path} records no feature store; pass --features STORE")
    store = FeatureStore(path)
    store.check_compatible(run.feature_header, what=f"the features run {run.path} was trained on")
    return store


def calibration_block(run: LoadedRun, preds: Predictions) -> dict[str, Any]:
    """ECE/Brier/NLL of the raw softmax and at the run's temperature (1.0 for a run trained
    before calibration existed) on the evaluated posts."""
    from semloc.calibration import BINNING, calibration_metrics

    return {
        "binning": BINNING,
        "temperature": run.temperature,
        "before": calibration_metrics(preds.logits, preds.labels, 1.0),
        "after": calibration_metrics(preds.logits, preds.labels, run.temperature),
    }


def evaluate_runs(
    runs: list[str | Path],
    split: str = "test",
    *,
    store_path: str | Path | None = None,
    out_name: str | None = None,
    plots: bool = True,
    device: str = "cpu",
    batch_size: int = 256,
    runtime: str = "torch",
) -> dict[str, Any]:
    """Evaluate one or more runs (e.g. seeds) on a split; returns per-run metrics and mean ± std.

    Each run's results go to RUN/eval-SPLIT/. Posts whose label the model does not know are an
    error (listed), not silently skipped."""
    results = []
    for run_path in runs:
        run = load_run(run_path, device, runtime=runtime)
        store = open_run_store(run, store_path)
        idx = require_split(store, split, f"nothing to evaluate on '{split}'")
        idx = idx[np.array([store.raw_labels[i] is not None for i in idx], dtype=bool)]
        if idx.size == 0:
            raise SemlocError(f"the '{split}' posts of {store.root} carry no labels")
        store.check_labels(run.labels, idx, what=f"run {run.path}")
        preds = predict_store(run, store, idx, device=device, batch_size=batch_size)
        metrics = classification_metrics(preds.labels, preds.logits.argmax(1), run.labels)
        metrics.update(
            split=split,
            run=str(run.path),
            model=run.meta["model_name"],
            seed=run.config.train.seed,
            num_params=run.meta.get("num_params"),
        )
        metrics["calibration"] = calibration_block(run, preds)
        out = run.path / (out_name or f"eval-{split}")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", metrics)
        if plots:
            from semloc.calibration import plot_reliability
            from semloc.plots import plot_confusion, plot_per_class_f1

            cal = metrics["calibration"]
            plot_reliability(
                cal["before"],
                cal["after"],
                out / "reliability.png",
                f"{run.meta['model_name']} — {split}",
            )
            title = f"{run.meta['model_name']} — {split}"
            plot_confusion(metrics["confusion_matrix"], run.labels, out / "confusion.png", title)
            plot_per_class_f1(metrics["per_class"], out / "per_class_f1.png", title)
        if out_name is None:  # the model card lists the run's standard evaluations
            from semloc.model_card import write_model_card

            write_model_card(run.path, run.meta)
        metrics["model_key"] = model_key(run)
        results.append(metrics)
    groups: dict[str, list[dict[str, Any]]] = {}
    for m in results:
        groups.setdefault(m["model_key"], []).append(m)
    return {
        "split": split,
        "runs": results,
        # mean ± std only over runs of one model (seeds); runs of different models are grouped
        "groups": [
            {"model": key, "runs": [m["run"] for m in ms], "aggregate": aggregate(ms)}
            for key, ms in groups.items()
        ],
        "aggregate": aggregate(results) if len(groups) == 1 else None,
    }


def model_key(run: LoadedRun) -> str:
    """What makes runs seeds of one model: the model name and config, and the features.
    Runs with equal keys may be averaged; others may not (training settings may differ)."""
    cfg = config_to_dict(run.config)
    filled = set(DATA_FILLED_MODEL_KEYS)
    if cfg["model"].get("gate_init") == "backbone":
        filled |= set(BACKBONE_FILLED_MODEL_KEYS)
    model = {k: v for k, v in cfg["model"].items() if k not in filled}
    digest = sha256_json({"model": model, "features": run.meta.get("feature_fingerprint")})
    return f"{run.meta['model_name']}@{digest[:8]}"
