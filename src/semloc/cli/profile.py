"""semloc profile PREDICTIONS --out DIR: per-user location shares, weekly activity grids,
home-/work-like hours and group comparisons from a predictions table."""

from __future__ import annotations

import argparse

HELP = "profile predictions: location shares, weekly routines, groups (per user and overall)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", help="predictions CSV/JSONL/Parquet from `semloc predict`")
    parser.add_argument("--out", required=True, help="output directory (tables, PNGs, report)")
    parser.add_argument(
        "--run",
        help="the run that made the predictions: its dev confusion enables the "
        "adjusted estimators (acc, pacc)",
    )
    parser.add_argument("--group", metavar="COLUMN", help="compare groups by this column")
    parser.add_argument(
        "--min-posts",
        type=int,
        default=20,
        help="per-user outputs only for users with at least this many posts (default 20)",
    )
    parser.add_argument(
        "--timezone", help="convert every time to this IANA zone (default: each post's offset)"
    )
    parser.add_argument(
        "--pseudonymise",
        action="store_true",
        help="replace user ids by salted SHA-256 digests in everything written",
    )
    parser.add_argument(
        "--salt",
        help="salt for --pseudonymise (default: random, never stored; pass one to get "
        "the same pseudonyms across runs)",
    )
    parser.add_argument(
        "--format", default="csv", help="table formats, comma-separated: csv, parquet"
    )
    parser.add_argument("--home-labels", default="home", help="comma-separated home locations")
    parser.add_argument(
        "--work-labels", default="office,school,work", help="comma-separated work locations"
    )
    parser.add_argument("--no-user-grids", action="store_true", help="skip per-user grids")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG heat-maps")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--no-progress", action="store_true")


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def run(args: argparse.Namespace) -> int:
    from semloc.profile import PRIVACY_NOTE, ProfileOptions, format_hours, profile_predictions

    options = ProfileOptions(
        min_posts=args.min_posts,
        group=args.group,
        timezone=args.timezone,
        pseudonymise=args.pseudonymise,
        salt=args.salt,
        home_labels=_names(args.home_labels),
        work_labels=_names(args.work_labels),
        formats=_names(args.format),
        per_user_grids=not args.no_user_grids,
        plots=not args.no_plots,
        num_boot=args.bootstrap,
        seed=args.seed,
    )
    result = profile_predictions(
        args.predictions, args.out, options, run=args.run, progress=not args.no_progress
    )
    s = result.summary
    print(f"note: {PRIVACY_NOTE}")
    print(
        f"{s['predicted_posts']:,} posts, {s['users']:,} users "
        f"({s['users_profiled']:,} with >= {s['min_posts']} posts profiled)"
    )
    best = "pacc" if s["adjusted_estimators"] else "pcc"
    rows = [r for r in result.population_shares.to_pylist() if r["estimator"] == best]
    print(
        f"population shares ({best}): "
        + ", ".join(f"{r['location']} {r['share']:.3f}" for r in rows)
    )
    print(
        f"home-like hours {format_hours(s['home_like_hours'])}; "
        f"work-like hours {format_hours(s['work_like_hours'])}"
    )
    print(f"report: {args.out}/report.md (and report.html, tables, heat-maps)")
    return 0
