"""Building a profile: read, accumulate, estimate, and write every table, plot and report."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semloc.errors import DataError, SemlocError
from semloc.io import atomic_path, atomic_write_json, atomic_write_text
from semloc.prevalence import (
    ESTIMATOR_NAMES,
    DevConfusion,
    PredictionStats,
    estimate_prevalence,
    prevalence_table,
    wilson_interval,
)
from semloc.profile.accumulate import (
    DAYS,
    SLOTS,
    KeyedSums,
    ProfileAccumulator,
    ProfileOptions,
    hour_profile,
)
from semloc.profile.read import FORMATS, columns_of, iter_prediction_batches
from semloc.profile.report import format_hours, markdown_to_html, plot_activity, profile_markdown

log = logging.getLogger(__name__)


def like_hours(
    grid: np.ndarray,
    grid_posts: np.ndarray,
    columns: Sequence[int],
    lift: float,
    min_hour_posts: int,
) -> list[int]:
    """Hours of day at which a post is >= `lift` times as likely as the average post to be at one
    of `columns` (home-like, work-like), among hours with at least `min_hour_posts` posts."""
    if not columns:
        return []
    by_hour, posts = hour_profile(grid, grid_posts)
    total = posts.sum()
    if total == 0:
        return []
    mass = by_hour[:, list(columns)].sum(axis=1)
    overall = mass.sum() / total
    if overall <= 0:
        return []
    share = np.divide(mass, posts, out=np.zeros(24), where=posts > 0)
    return [int(h) for h in range(24) if posts[h] >= min_hour_posts and share[h] >= lift * overall]


def pseudonym(user: str, salt: str) -> str:
    return "u_" + hashlib.sha256(f"{salt}\x00{user}".encode()).hexdigest()[:16]


@dataclass
class ProfileResult:
    """What `profile_predictions` computed and wrote. Tables are pyarrow Tables (the same
    content as the files); `accumulator` keeps the raw sums (grids per user and group)."""

    labels: list[str]
    summary: dict[str, Any]
    population_shares: Any
    group_shares: Any
    user_shares: Any
    routines: Any
    accumulator: ProfileAccumulator
    user_ids: dict[str, int]  # written user id -> row of the accumulator's user tables
    files: list[str]

    def user_grid(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        """(expected posts (SLOTS, C), posts (SLOTS,)) of a profiled user, by written id."""
        users = self.accumulator.users
        if user not in self.user_ids or users.grid is None or users.grid_posts is None:
            raise KeyError(user)
        u = self.user_ids[user]
        return users.grid[u].astype(np.float64), users.grid_posts[u].astype(np.int64)


def like_hours_matrix(
    grid: np.ndarray, grid_posts: np.ndarray, columns: Sequence[int], lift: float, min_posts: int
) -> np.ndarray:
    """Vectorised `like_hours` over K grids: (K, SLOTS, C), (K, SLOTS) -> (K, 24) bool."""
    k = len(grid)
    if not columns or k == 0:
        return np.zeros((k, 24), bool)
    by_hour = grid.reshape(k, 7, 24, -1).sum(axis=1, dtype=np.float64)[..., list(columns)].sum(-1)
    posts = grid_posts.reshape(k, 7, 24).sum(axis=1, dtype=np.float64)
    total = posts.sum(axis=1)
    overall = np.divide(by_hour.sum(axis=1), total, out=np.zeros(k), where=total > 0)
    share = np.divide(by_hour, posts, out=np.zeros_like(by_hour), where=posts > 0)
    return (posts >= min_posts) & (share >= lift * overall[:, None]) & (overall[:, None] > 0)


def prediction_columns(path: Path, options: ProfileOptions) -> tuple[list[str], list[str]]:
    """(locations, the columns to read) of a predictions file, after checking the options."""
    if options.min_posts < 1:
        raise SemlocError("min_posts must be at least 1")
    bad_formats = sorted(set(options.formats) - {"csv", "parquet"})
    if bad_formats:
        raise SemlocError(f"unknown table format(s) {bad_formats}; use csv and/or parquet")
    if options.timezone is not None:
        from semloc.data.timestamps import resolve_timezone

        resolve_timezone(options.timezone)
    if not path.is_file():
        raise SemlocError(f"predictions file {path} does not exist")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SemlocError(f"{path}: unknown format; use one of {', '.join(FORMATS)}")
    columns = columns_of(path, fmt)
    labels = [c[2:] for c in columns if c.startswith("p_")]
    if not labels:
        raise SemlocError(f"{path} has no p_<location> probability columns")
    if options.group and options.group not in columns:
        raise SemlocError(
            f"--group column {options.group!r} is not in {path} (columns: {', '.join(columns)})"
        )
    wanted = [c for c in ("user", "created_at", options.group) if c and c in columns]
    return labels, wanted + [f"p_{lab}" for lab in labels]


def check_accumulated(acc: ProfileAccumulator, source: str) -> None:
    """Every bad time, named, in one error; an empty profile is an error too."""
    if acc.bad_times:
        raise DataError(
            f"{source}: {len(acc.bad_times)} row(s) with a bad created_at",
            [f"row {r}: created_at {v!r}: {why}" for r, v, why in acc.bad_times],
        )
    if acc.population.n == 0:
        raise SemlocError(f"{source} has no predicted rows to profile")


def profile_predictions(
    predictions: str | Path,
    out_dir: str | Path,
    options: ProfileOptions | None = None,
    *,
    dev: DevConfusion | None = None,
    run: str | Path | None = None,
    progress: bool = False,
) -> ProfileResult:
    """Profile a predictions table into `out_dir` (tables, heat-maps, report.md/.html,
    profile.json). `run` (a run directory) supplies the dev confusion from its calibration.json
    for the adjusted estimators; or pass `dev` directly. Nothing is written when a time is bad."""
    from tqdm.auto import tqdm

    options = options or ProfileOptions()
    predictions = Path(predictions)
    labels, wanted = prediction_columns(predictions, options)
    if run is not None and dev is None:
        dev = dev_confusion_of(run, labels)
    acc = ProfileAccumulator(labels, options)
    with tqdm(desc="profile", unit="row", unit_scale=True, disable=not progress) as bar:
        for batch in iter_prediction_batches(predictions, wanted, options.batch_size):
            acc.add_batch(batch)
            bar.update(batch.num_rows)
    check_accumulated(acc, str(predictions))
    return write_profile(acc, out_dir, dev, source=str(predictions))


def dev_confusion_of(run: str | Path, labels: Sequence[str]) -> DevConfusion:
    path = Path(run) / "calibration.json"
    try:
        cal = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SemlocError(
            f"cannot read {path} ({e}); the adjusted estimators need a run trained with "
            "calibration (or call semloc.runs.calibrate_run on it)"
        ) from None
    if list(cal.get("labels", [])) != list(labels):
        raise SemlocError(
            f"{path} is for locations {cal.get('labels')}, the predictions have {list(labels)}"
        )
    return DevConfusion.from_dict(cal["dev_confusion"])


def write_profile(
    acc: ProfileAccumulator, out_dir: str | Path, dev: DevConfusion | None, source: str = ""
) -> ProfileResult:
    """Turn a filled accumulator into tables, heat-maps and a report in `out_dir`."""
    import pyarrow as pa

    opt = acc.options
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = acc.labels
    c = len(labels)
    home = [labels.index(x) for x in opt.home_labels if x in labels]
    work = [labels.index(x) for x in opt.work_labels if x in labels]
    salt = opt.salt if opt.salt is not None else secrets.token_hex(16)

    def written_id(name: str) -> str:
        return pseudonym(name, salt) if opt.pseudonymise else name

    def boot(stats: PredictionStats) -> dict[str, dict[str, np.ndarray]]:
        return estimate_prevalence(
            stats, dev, num_boot=opt.num_boot, confidence=opt.confidence, seed=opt.seed
        )

    prevalence = boot(acc.population)
    population_shares = pa.Table.from_pylist(
        [{**row, "posts": acc.population.n} for row in prevalence_table(prevalence, labels)]
    )
    group_rows = []
    for code, stats in sorted(acc.group_stats.items()):
        group_rows += [
            {"group": acc.groups.names[code], **row, "posts": stats.n}
            for row in prevalence_table(boot(stats), labels)
        ]
    group_shares = pa.Table.from_pylist(group_rows)

    users = acc.users
    k = users.size()
    posts = users.posts[:k]
    eligible = np.flatnonzero(posts >= opt.min_posts)
    ids = [written_id(users.names[u]) for u in eligible]
    n = posts[eligible].astype(np.float64)
    share = users.prob_sum[eligible] / np.maximum(n, 1)[:, None]  # (E, C)
    low, high = wilson_interval(share, np.repeat(n[:, None], c, axis=1), opt.confidence)
    user_shares = pa.table(
        {
            "user": pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(np.arange(len(ids)), c), pa.int32()), pa.array(ids, pa.string())
            ),
            "location": pa.DictionaryArray.from_arrays(
                pa.array(np.tile(np.arange(c), len(ids)), pa.int32()), pa.array(labels)
            ),
            "posts": np.repeat(posts[eligible], c),
            "share": share.ravel(),
            "low": low.ravel(),
            "high": high.ravel(),
            "cc_share": (users.counts[eligible] / np.maximum(n, 1)[:, None]).ravel(),
        }
    )
    routine_cols: dict[str, Any] = {
        "user": ids,
        "posts": posts[eligible],
        "top_location": [labels[j] for j in share.argmax(axis=1)] if len(ids) else [],
    }
    if users.grid is not None and users.grid_posts is not None:
        home_h, work_h, timed = [], [], []
        for start in range(0, len(eligible), 4096):  # chunks keep the float64 copies small
            rows = eligible[start : start + 4096]
            g, gp = users.grid[rows], users.grid_posts[rows]
            hm = like_hours_matrix(g, gp, home, opt.lift, opt.min_hour_posts)
            wm = like_hours_matrix(g, gp, work, opt.lift, opt.min_hour_posts)
            home_h += [format_hours(np.flatnonzero(r).tolist()) for r in hm]
            work_h += [format_hours(np.flatnonzero(r).tolist()) for r in wm]
            timed.append(gp.sum(axis=1))
        routine_cols |= {
            "timed_posts": np.concatenate(timed) if timed else np.zeros(0, np.int64),
            "home_like_hours": home_h,
            "work_like_hours": work_h,
        }
    routines = pa.table(routine_cols)

    files: list[str] = []
    files += write_table(out / "population_shares", population_shares, opt.formats)
    if opt.group:
        files += write_table(out / "group_shares", group_shares, opt.formats)
    if k:
        files += write_table(out / "user_shares", user_shares, opt.formats)
        files += write_table(out / "routines", routines, opt.formats)
    files += write_table(
        out / "activity_population",
        grid_table(acc.grid[None], acc.grid_posts[None], labels),
        opt.formats,
    )
    if opt.group and acc.groups.grid is not None and acc.groups.grid_posts is not None:
        g = acc.groups.size()
        files += write_table(
            out / "activity_groups",
            grid_table(
                acc.groups.grid[:g], acc.groups.grid_posts[:g], labels, "group", acc.groups.names
            ),
            opt.formats,
        )
    if len(ids) and users.grid is not None and users.grid_posts is not None:
        files += write_user_grids(out / "activity_users", users, eligible, ids, labels, opt.formats)

    pop_home = like_hours(acc.grid, acc.grid_posts, home, opt.lift, opt.min_hour_posts)
    pop_work = like_hours(acc.grid, acc.grid_posts, work, opt.lift, opt.min_hour_posts)
    summary = {
        "source": source,
        "labels": labels,
        "rows": acc.rows,
        "predicted_posts": acc.population.n,
        "unpredicted_rows": acc.unpredicted,
        "posts_without_time": acc.untimed,
        "posts_without_user": acc.anonymous,
        "users": int(k),
        "users_profiled": int(eligible.size),
        "users_below_min_posts": int(k - eligible.size),
        "posts_of_users_below_min_posts": int(posts.sum() - posts[eligible].sum()),
        "min_posts": opt.min_posts,
        "pseudonymised": opt.pseudonymise,
        "salt_stored": False,
        "timezone": opt.timezone or "as written (each post's own offset)",
        "estimators": {name: ESTIMATOR_NAMES[name] for name in prevalence},
        "adjusted_estimators": dev is not None,
        "confidence": opt.confidence,
        "num_boot": opt.num_boot,
        "home_labels": [labels[i] for i in home],
        "work_labels": [labels[i] for i in work],
        "home_like_hours": pop_home,
        "work_like_hours": pop_work,
        "groups": acc.groups.names if opt.group else [],
        "group_column": opt.group,
    }
    if opt.plots:
        files.append(
            str(plot_activity(acc.grid, acc.grid_posts, labels, out / "activity_population.png"))
        )
        if opt.group and acc.groups.grid is not None and acc.groups.grid_posts is not None:
            for g, name in enumerate(acc.groups.names):
                path = out / f"activity_group_{_safe(name)}.png"
                grid = acc.groups.grid[g].astype(np.float64)
                title = f"{opt.group} = {name}"
                files.append(
                    str(plot_activity(grid, acc.groups.grid_posts[g], labels, path, title))
                )
    result = ProfileResult(
        labels=labels,
        summary=summary,
        population_shares=population_shares,
        group_shares=group_shares,
        user_shares=user_shares,
        routines=routines,
        accumulator=acc,
        user_ids={uid: int(u) for uid, u in zip(ids, eligible, strict=True)},
        files=files,
    )
    markdown = profile_markdown(result)
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "report.html", markdown_to_html(markdown, "semloc profile"))
    atomic_write_json(out / "profile.json", summary)
    result.files += [str(out / name) for name in ("report.md", "report.html", "profile.json")]
    return result


def grid_table(
    grid: np.ndarray,
    grid_posts: np.ndarray,
    labels: Sequence[str],
    key: str | None = None,
    names: Sequence[str] = (),
    *,
    per_user: bool = False,
) -> Any:
    """Wide table, one row per (key, day, hour): posts, then expected posts per location, then
    (not per user) the share of the slot's posts per location. grid (K, SLOTS, C), grid_posts
    (K, SLOTS). Per user only non-empty slots are written, in float32 (shares = expected /
    posts): that table is as long as the data, so it is kept lean."""
    import pyarrow as pa

    k = len(grid)
    n = grid_posts.reshape(-1)
    keep = np.flatnonzero(n > 0) if per_user else np.arange(k * SLOTS)
    slot = keep % SLOTS
    g = grid.reshape(k * SLOTS, -1)[keep]
    cols: dict[str, Any] = {}
    if key is not None:
        cols[key] = pa.DictionaryArray.from_arrays(
            pa.array(keep // SLOTS, pa.int32()), pa.array(list(names), pa.string())
        )
    cols["day_of_week"] = pa.DictionaryArray.from_arrays(
        pa.array(slot // 24, pa.int8()), pa.array(DAYS, pa.string())
    )
    cols["hour"] = (slot % 24).astype(np.int8)
    posts = n[keep].astype(np.int64)
    cols["posts"] = posts
    for j, lab in enumerate(labels):
        cols[f"expected_{lab}"] = g[:, j].astype(np.float32 if per_user else np.float64)
    if not per_user:
        for j, lab in enumerate(labels):
            share = np.divide(g[:, j], posts, out=np.full(len(keep), np.nan), where=posts > 0)
            cols[f"share_{lab}"] = pa.array(share, from_pandas=True)
    return pa.table(cols)


def write_user_grids(
    stem: Path,
    users: KeyedSums,
    rows: np.ndarray,
    ids: Sequence[str],
    labels: Sequence[str],
    formats: Sequence[str],
    chunk: int = 2048,
) -> list[str]:
    """The per-user grids (non-empty slots only), written chunk by chunk of users so the table
    never exists in memory at once; atomically."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    assert users.grid is not None and users.grid_posts is not None
    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            writer = None
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                table = grid_table(
                    users.grid[part],
                    users.grid_posts[part],
                    labels,
                    "user",
                    ids[start : start + chunk],
                    per_user=True,
                )
                if writer is None:
                    writer = (
                        pacsv.CSVWriter(tmp, table.schema)
                        if fmt == "csv"
                        else pq.ParquetWriter(tmp, table.schema)
                    )
                writer.write_table(table)
            if writer is not None:
                writer.close()
        written.append(str(path))
    return written


def write_table(stem: Path, table: Any, formats: Sequence[str]) -> list[str]:
    """Write a pyarrow Table as STEM.csv and/or STEM.parquet, atomically; returns the paths."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            if fmt == "csv":
                pacsv.write_csv(table, tmp)
            else:
                pq.write_table(table, tmp)
        written.append(str(path))
    return written


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:60] or "_"
