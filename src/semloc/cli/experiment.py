"""semloc experiment GRID.yaml: models x seeds (x stores) through the same trainer, as a table."""

from __future__ import annotations

import argparse
from pathlib import Path

from semloc.cli import add_config_arguments

HELP = (
    "run a grid of models x seeds (x feature stores), evaluate each on the grid's split (test "
    "unless it says otherwise, or --split) and tabulate mean ± std; resumable"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", help="grid file (YAML/JSON): store(s), models, seeds, overrides")
    parser.add_argument("--out", help="output directory (default: runs/<grid file stem>)")
    parser.add_argument("--store", help="feature store to use instead of the grid's")
    parser.add_argument("--seeds", type=int, help="run seeds 0..N-1 instead of the grid's")
    parser.add_argument(
        "--split",
        choices=["train", "dev", "test"],
        help="the split to evaluate and tabulate instead of the grid's (selection: dev)",
    )
    parser.add_argument(
        "--no-cell-plots",
        action="store_true",
        help="skip each cell's confusion and per-class plots (the grid plot is still drawn)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the cells and their state; run nothing"
    )
    add_config_arguments(parser)  # --config and overrides apply to every trained cell


def run(args: argparse.Namespace) -> int:
    from semloc.experiment import load_grid, run_grid

    grid = load_grid(
        args.grid,
        store=args.store,
        seeds=args.seeds,
        split=args.split,
        overrides=args.overrides,
        config=args.config,
    )
    out = Path(args.out) if args.out else Path("runs") / Path(args.grid).stem
    results = run_grid(grid, out, plots=not args.no_cell_plots, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    if "markdown" in results.files:
        print(results.files["markdown"].read_text(encoding="utf-8"), end="")
    print("\n" + "\n".join(f"{kind}: {path}" for kind, path in results.files.items()))
    return 0
