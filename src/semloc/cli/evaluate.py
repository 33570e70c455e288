"""semloc evaluate RUN [RUN ...] --split test: metrics, plots, and mean ± std over runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from semloc.io import atomic_write_json
from semloc.metrics import SUMMARY_KEYS, format_mean_std

HELP = "evaluate trained runs on a split (metrics JSON + confusion/per-class plots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run directories (several = seeds, aggregated)")
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument(
        "--features", help="feature store (default: the one the run was trained on)"
    )
    parser.add_argument("--summary", help="also write the aggregate to this JSON file")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    from semloc.cli import add_config_arguments

    add_config_arguments(parser)  # train.device and train.eval_batch_size apply here


def run(args: argparse.Namespace) -> int:
    from semloc.config import load_config
    from semloc.evaluation import evaluate_runs

    cfg = load_config(args.config, args.overrides)
    device = cfg.train.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    report = evaluate_runs(
        args.runs,
        args.split,
        store_path=args.features,
        plots=not args.no_plots,
        device=device,
        batch_size=cfg.train.eval_batch_size,
    )
    names = ("macro-F1", "accuracy", "weighted-F1", "macro-P", "macro-R")
    print(f"{'run':40s} " + " ".join(f"{n:>11s}" for n in names))
    for m in report["runs"]:
        print(
            f"{Path(m['run']).name[:40]:40s} "
            + " ".join(f"{100 * m[k]:11.2f}" for k in SUMMARY_KEYS)
        )
    groups = report["groups"]
    if len(groups) > 1:
        print(
            f"these runs are of {len(groups)} different models (name, config or features): "
            "mean ± std is given per model, never across models"
        )
    for group in groups:
        agg = group["aggregate"]
        if agg["num_runs"] > 1:
            label = f"{group['model']}: mean ± std over {agg['num_runs']} runs"
            print(
                f"{label[:40]:40s} "
                + " ".join(f"{format_mean_std(agg[k]):>11s}" for k in SUMMARY_KEYS)
            )
    for m in report["runs"]:
        cal = m["calibration"]
        print(
            f"{Path(m['run']).name[:40]:40s} calibration at T = {cal['temperature']:.3f}: "
            f"ECE {cal['before']['ece']:.4f} -> {cal['after']['ece']:.4f}, "
            f"Brier {cal['before']['brier']:.4f} -> {cal['after']['brier']:.4f} "
            f"({cal['binning']})"
        )
    for m in report["runs"]:
        print(f"plots and metrics: {Path(m['run']) / ('eval-' + args.split)}")
    if args.summary:
        atomic_write_json(args.summary, report)
    return 0
