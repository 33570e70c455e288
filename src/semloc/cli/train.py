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
    overrides = [*args.overrides, *shortcuts]
    if args.resume:
        # the run continues with its saved config; anything given here is applied on top of it
        # and refused by train_run when it would change what the run computes
        from pathlib import Path

        from semloc.config import config_from_dict
        from semloc.runs import read_resume_checkpoint

        cfg = None
        last = Path(args.out) / "last.pt"
        if (args.config or overrides) and last.is_file():
            saved = config_from_dict(read_resume_checkpoint(last)["config"])
            cfg = load_config(args.config, overrides, base=saved)
    else:
        cfg = load_config(args.config, overrides)
    dist = None
    from semloc.training import distributed

    if distributed.is_launched():  # started by torchrun
        dist = distributed.DistContext.from_env(cfg.train.device if cfg else "auto")
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
