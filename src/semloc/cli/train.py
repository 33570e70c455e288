"""semloc train STORE --out RUN: train a model on a feature store (selection on dev only)."""

from __future__ import annotations

import argparse

from semloc.cli import add_config_arguments
from semloc.config import load_config

HELP = "train a model on a feature store; selects the checkpoint on dev macro-F1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="feature store directory (from `semloc extract`)")
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument("--model", help="model name (shortcut for model.name=...)")
    parser.add_argument("--seed", type=int, help="shortcut for train.seed=...")
    parser.add_argument("--epochs", type=int, help="shortcut for train.epochs=...")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from semloc.runs import train_run

    shortcuts = []
    if args.model:
        shortcuts.append(f"model.name={args.model}")
    if args.seed is not None:
        shortcuts.append(f"train.seed={args.seed}")
    if args.epochs is not None:
        shortcuts.append(f"train.epochs={args.epochs}")
    cfg = load_config(args.config, [*args.overrides, *shortcuts])
    dist = None
    from semloc.training import distributed

    if distributed.is_launched():  # started by torchrun
        dist = distributed.DistContext.from_env(cfg.train.device)
    try:
        result = train_run(
            args.store, cfg, args.out, resume=args.resume, overwrite=args.overwrite, dist=dist
        )
    finally:
        if dist is not None:
            dist.close()
    if dist is None or dist.is_main:
        m = result.best_metrics
        print(
            f"best epoch {result.best_epoch}: dev macro-F1 {m.get('macro_f1', float('nan')):.4f}, "
            f"accuracy {m.get('accuracy', float('nan')):.4f}"
            + (" (early stop)" if result.stopped_early else "")
            + f"\nrun saved in {args.out}"
        )
    return 0
