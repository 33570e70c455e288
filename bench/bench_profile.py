"""`semloc profile` throughput and peak memory at 1M and 10M prediction rows, vs pandas.

    python bench/bench_profile.py [--rows 1000000,10000000] [--users 50000] [--keep DIR]

Measured in one run, so machine drift cancels out. For each size a synthetic predictions
Parquet file is written (8 locations, `--users` authors, canonical times over 8 weeks), then, each
in a fresh process so peak RSS is its own:

  * semloc: `profile_predictions` (streamed record batches; population/user/grid tables in
    Parquet, bootstrap intervals, heat-map, report);
  * pandas: the obvious script on the same rows: read the whole file, parse the times, then
    groupby user (shares, counts), groupby (day, hour) and groupby (user, day, hour) sums.

Prints rows/s and peak RSS of both, semloc's RSS ratio between the largest and smallest size
(target <= 1.3: memory does not grow with rows; it grows with users, fixed here) and the
semloc / pandas ratios. Never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LABELS = ("home", "office", "school", "restaurant", "shop", "park", "station", "gym")


def write_synthetic(path: Path, rows: int, users: int, seed: int = 0) -> None:
    """A predictions Parquet in chunks (bounded memory while writing)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    start = 1767571200  # 2026-01-05T00:00:00 (a Monday), written as wall time at +01:00
    writer = None
    chunk = 1_000_000
    for offset in range(0, rows, chunk):
        n = min(chunk, rows - offset)
        logits = rng.standard_normal((n, len(LABELS))).astype(np.float32) * 2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        secs = start + rng.integers(0, 8 * 7 * 86400, n)
        wall = pc.strftime(pa.array(secs, type=pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
        created = pc.binary_join_element_wise(wall, pa.scalar("+01:00"), "")
        user_codes = pa.array(rng.integers(0, users, n)).cast(pa.string())
        cols = {
            "id": pa.array(np.arange(offset, offset + n)).cast(pa.string()),
            "user": pc.binary_join_element_wise(pa.scalar("u"), user_codes, ""),
            "created_at": created,
            "label": pa.array(np.asarray(LABELS)[p.argmax(axis=1)]),
        }
        cols |= {f"p_{lab}": pa.array(p[:, j]) for j, lab in enumerate(LABELS)}
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


SEMLOC = """
import json, resource, sys, time
from semloc.profile import ProfileOptions, profile_predictions
t0 = time.perf_counter()
r = profile_predictions(sys.argv[1], sys.argv[2], ProfileOptions(formats=("parquet",), plots=False))
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 1024, "users": r.summary["users_profiled"]}))
"""

PANDAS = """
import json, resource, sys, time
import pandas as pd
t0 = time.perf_counter()
df = pd.read_parquet(sys.argv[1])
p_cols = [c for c in df.columns if c.startswith("p_")]
t = pd.to_datetime(df["created_at"].str.slice(0, 19))
df["dow"], df["hour"] = t.dt.dayofweek, t.dt.hour
counts = df.groupby("user").size()
shares = df.groupby("user")[p_cols].mean()
keep = counts[counts >= 20].index
grid = df.groupby(["dow", "hour"])[p_cols].sum()
user_grid = df[df["user"].isin(keep)].groupby(["user", "dow", "hour"])[p_cols].sum()
shares[shares.index.isin(keep)].to_parquet(sys.argv[2] + "/user_shares.parquet")
grid.to_parquet(sys.argv[2] + "/grid.parquet")
user_grid.to_parquet(sys.argv[2] + "/user_grid.parquet")
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 1024, "users": int(len(keep))}))
"""


def measure(script: str, data: Path, out: Path) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", script, str(data), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--keep", help="keep the generated files in this directory")
    args = ap.parse_args()
    sizes = [int(x) for x in args.rows.split(",")]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-profile-"))
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for rows in sizes:
            data = root / f"predictions-{rows}.parquet"
            if not data.exists():
                write_synthetic(data, rows, args.users)
            ours = measure(SEMLOC, data, root / f"semloc-{rows}")
            theirs = measure(PANDAS, data, root / f"pandas-{rows}")
            results[rows] = (ours, theirs)
            print(
                f"{rows:>11,} rows  semloc {rows / ours['seconds']:>10,.0f} rows/s "
                f"{ours['rss_mb']:>7,.0f} MB   pandas {rows / theirs['seconds']:>10,.0f} rows/s "
                f"{theirs['rss_mb']:>7,.0f} MB   speed x{theirs['seconds'] / ours['seconds']:.2f}"
                f"  memory x{ours['rss_mb'] / theirs['rss_mb']:.2f}",
                flush=True,
            )
        lo, hi = min(sizes), max(sizes)
        if lo != hi:
            ratio = results[hi][0]["rss_mb"] / results[lo][0]["rss_mb"]
            pandas_ratio = results[hi][1]["rss_mb"] / results[lo][1]["rss_mb"]
            print(
                f"peak RSS {hi:,} / {lo:,} rows: semloc {ratio:.2f} (target <= 1.3), "
                f"pandas {pandas_ratio:.2f}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
