"""semloc profile PREDICTIONS --out DIR: per-user location shares, weekly activity grids,
home-/work-like hours and group comparisons from a predictions table.

Settings come from the `profile` section of the config (``--config FILE``, ``profile.lift=1.5``);
the flags below override it."""

from __future__ import annotations

import argparse

HELP = "profile predictions: location shares, weekly routines, groups (per user and overall)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from semloc.cli import add_config_arguments

    parser.add_argument("predictions", help="predictions CSV/JSONL/Parquet from `semloc predict`")
    parser.add_argument("--out", required=True, help="output directory (tables, PNGs, report)")
    parser.add_argument(
        "--run",
        help="the run that made the predictions: its dev confusion enables the adjusted "
        "estimators (acc, pacc)",
    )
    parser.add_argument("--group", metavar="COLUMN", help="compare groups by this column")
    parser.add_argument(
        "--min-posts",
        type=int,
        help="per-user outputs only for users with at least this many posts (default 20)",
    )
    parser.add_argument(
        "--timezone", help="convert every time to this IANA zone (default: each post's offset)"
    )
    parser.add_argument(
        "--pseudonymise",
        action="store_true",
        default=None,
        help="replace user ids by salted SHA-256 digests in everything written",
    )
    parser.add_argument(
        "--salt",
        help="salt for --pseudonymise (default: random, never stored; pass one to get the same "
        "pseudonyms across runs)",
    )
    parser.add_argument("--format", help="table formats, comma-separated: csv, parquet")
    parser.add_argument("--home-labels", help="comma-separated home locations (default home)")
    parser.add_argument(
        "--work-labels", help="comma-separated work locations (default office,school,work)"
    )
    parser.add_argument(
        "--no-user-grids", action="store_true", default=None, help="skip per-user grids"
    )
    parser.add_argument(
        "--no-plots", action="store_true", default=None, help="skip the PNG heat-maps"
    )
    parser.add_argument("--bootstrap", type=int, help="bootstrap replicates (default 1000)")
    parser.add_argument("--seed", type=int, help="bootstrap seed")
    parser.add_argument("--no-progress", action="store_true")
    add_config_arguments(parser)


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def run(args: argparse.Namespace) -> int:
    from semloc.config import load_config
    from semloc.profile import PRIVACY_NOTE, format_hours, profile_predictions

    cfg = load_config(args.config, args.overrides).profile
    flags = {
        "min_posts": args.min_posts,
        "group": args.group,
        "timezone": args.timezone,
        "pseudonymise": args.pseudonymise,
        "salt": args.salt,
        "formats": _names(args.format) if args.format else None,
        "home_labels": _names(args.home_labels) if args.home_labels else None,
        "work_labels": _names(args.work_labels) if args.work_labels else None,
        "per_user_grids": False if args.no_user_grids else None,
        "plots": False if args.no_plots else None,
        "num_boot": args.bootstrap,
        "seed": args.seed,
    }
    for key, value in flags.items():
        if value is not None:
            setattr(cfg, key, value)
    result = profile_predictions(
        args.predictions, args.out, cfg, run=args.run, progress=not args.no_progress
    )
    s = result.summary
    print(f"note: {PRIVACY_NOTE}")
    print(
        f"{s['predicted_posts']:,} posts, {s['users']:,} users "
        f"({s['users_profiled']:,} with >= {s['min_posts']} posts profiled)"
    )
    best = "pacc" if s["adjusted_estimators"] else "pcc"
    rows = [r for r in result.population_shares.to_pylist() if r["estimator"] == best]
    shares = ", ".join(f"{r['location']} {r['share']:.3f}" for r in rows)
    print(f"population shares ({best}): {shares}")
    print(
        f"home-like hours {format_hours(s['home_like_hours'])}; "
        f"work-like hours {format_hours(s['work_like_hours'])}"
    )
    print(f"report: {args.out}/report.md (and report.html, tables, heat-maps)")
    return 0
