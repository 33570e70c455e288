"""From posts to people: location shares, weekly activity grids and routines from predictions.

    result = profile_predictions("preds.parquet", "profile/", ProfileOptions(min_posts=20))

Input: a predictions table as `semloc predict` writes it (CSV, JSONL or Parquet): ``id``,
optional ``user`` and ``created_at`` (canonical ISO 8601 with offset; other forms semloc
reads are accepted too), ``label`` and one calibrated probability column ``p_<location>`` per
location; any further column can be a ``--group``. Rows without probabilities (posts the image
policy skipped) are counted and left out.

What it computes, streaming record batches (pyarrow), so memory does not grow with the number of
rows — it grows with the number of distinct users (``users x 168 x locations`` float32 for the
per-user grids; 50,000 users x 8 locations = 270 MB) and stays put however many posts they wrote:

- population (and per group) location shares by every prevalence estimator the inputs allow,
  with bootstrap intervals (`semloc.prevalence`; the adjusted ones need ``--run`` for the dev
  confusion);
- per user with at least ``min_posts`` posts: the share of each location (mean calibrated
  probability) with a Wilson interval and the number of posts behind it; users below the
  threshold appear in no per-user output, only in the count of users left out;
- an hour-of-day x day-of-week grid per location (expected posts = summed probabilities, and
  the share of the slot's posts), for the population, each group and each user;
- home-like and work-like hours: hours of day whose posts are at least ``lift`` times as likely
  as the average post to be at a home (or work) location.

Hours and days are the poster's wall clock: the offset each ``created_at`` carries (which
``data.timezone`` supplied for naive and epoch times when the posts were read), unless
``timezone`` names one zone to convert every instant to.

Privacy: ``pseudonymise`` replaces every user id in every output by a salted SHA-256 digest; the
salt is never written. Nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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

log = logging.getLogger(__name__)

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SLOTS = 7 * 24  # slot = day_of_week * 24 + hour, Monday = 0
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
PRIVACY_NOTE = (
    "Inferring where people are from what they post is sensitive: it can reveal homes, "
    "workplaces and daily routines. Use these outputs only for aggregate research you are "
    "allowed to do, keep per-user tables private, pseudonymise user ids, and do not try to "
    "re-identify anyone. semloc computes everything on this machine and uploads nothing."
)


@dataclass
class ProfileOptions:
    """Settings of one profile (the `semloc profile` flags map one to one)."""

    min_posts: int = 20  # per-user outputs only for users with at least this many posts
    group: str | None = None  # a column of the predictions table to compare groups by
    timezone: str | None = None  # convert every time to this zone (None: each post's own offset)
    pseudonymise: bool = False  # salted SHA-256 of every user id in every output
    salt: str | None = None  # None with pseudonymise: a random salt, never written
    home_labels: tuple[str, ...] = ("home",)
    work_labels: tuple[str, ...] = ("office", "school", "work")
    lift: float = 1.2  # home-like hour: P(home | hour) >= lift * P(home)
    min_hour_posts: int = 3  # an hour needs this many posts to be called home-/work-like
    formats: tuple[str, ...] = ("csv",)  # table formats: csv, parquet
    per_user_grids: bool = True  # per-user hour x day grids (the users x 168 x C memory)
    num_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0
    batch_size: int = 262_144  # rows per record batch
    plots: bool = True


# ----------------------------------------------------------------------------------------------
# reading predictions in record batches


def _columns_of(path: Path, fmt: str) -> list[str]:
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    if fmt == "csv":
        import csv

        return next(csv.reader([first]), [])
    try:
        return list(json.loads(first)) if first.strip() else []
    except json.JSONDecodeError:
        raise SemlocError(f"{path}: first line is not a JSON object") from None


def iter_prediction_batches(
    path: str | Path, columns: Sequence[str], batch_size: int = 262_144
) -> Iterator[Any]:
    """pyarrow RecordBatches of `columns` (strings for user/created_at/group), streamed."""
    import pyarrow as pa

    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SemlocError(f"{path}: unknown predictions format; use one of {', '.join(FORMATS)}")
    text_cols = [c for c in columns if not c.startswith("p_")]
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size, columns=list(columns)):
                yield _as_strings(batch, text_cols)
        elif fmt == "csv":
            import pyarrow.csv as pacsv

            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 24),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(columns),
                    column_types={c: pa.string() for c in text_cols}
                    | {c: pa.float64() for c in columns if c.startswith("p_")},
                    strings_can_be_null=True,
                ),
            )
            for batch in reader:
                yield batch
        else:
            yield from _jsonl_batches(path, columns, batch_size)
    except (OSError, pa.ArrowException) as e:
        raise SemlocError(f"cannot read predictions {path}: {e}") from None


def _as_strings(batch: Any, text_cols: Sequence[str]) -> Any:
    import pyarrow as pa

    arrays = [
        batch.column(name).cast(pa.string())
        if name in text_cols and batch.column(name).type != pa.string()
        else batch.column(name)
        for name in batch.schema.names
    ]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _jsonl_batches(path: Path, columns: Sequence[str], batch_size: int) -> Iterator[Any]:
    import pyarrow as pa

    rows: list[dict[str, Any]] = []

    def flush() -> Any:
        data = {
            c: [
                None if r.get(c) in (None, "") else (r[c] if c.startswith("p_") else str(r[c]))
                for r in rows
            ]
            for c in columns
        }
        types = {c: pa.float64() if c.startswith("p_") else pa.string() for c in columns}
        return pa.RecordBatch.from_pydict({c: pa.array(v, type=types[c]) for c, v in data.items()})

    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SemlocError(f"{path}: line {line_no} is not valid JSON ({e.msg})") from None
            if len(rows) >= batch_size:
                yield flush()
                rows = []
    if rows:
        yield flush()


# ----------------------------------------------------------------------------------------------
# time slots


def time_slots(values: Any, zone: str | None, row_offset: int = 0) -> tuple[np.ndarray, list]:
    """(slot per row, -1 where no time; bad values as (row, value, reason)) for a string array.

    Canonical values are split by pyarrow kernels (no per-row Python); anything else goes once
    through `semloc.data.timestamps.parse_timestamp` (naive times as UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from semloc.data.timestamps import CANONICAL, canonical_timestamp

    n = len(values)
    present = pc.fill_null(pc.greater(pc.utf8_length(values), 0), False)
    canonical = pc.fill_null(pc.match_substring_regex(values, CANONICAL.pattern), False)
    odd = np.flatnonzero(
        present.to_numpy(zero_copy_only=False) & ~canonical.to_numpy(zero_copy_only=False)
    )
    bad: list[tuple[int, Any, str]] = []
    if odd.size:
        from datetime import UTC

        fixed = values.to_pylist()
        for i in odd:
            try:
                fixed[i] = canonical_timestamp(fixed[i], UTC)
            except ValueError as e:
                bad.append((row_offset + int(i) + 1, fixed[i], str(e)))
                fixed[i] = None
        values = pa.array(fixed, type=pa.string())
        present = pc.fill_null(pc.greater(pc.utf8_length(values), 0), False)
    wall = pc.strptime(
        pc.utf8_slice_codeunits(values, 0, 19),
        format="%Y-%m-%dT%H:%M:%S",
        unit="s",
        error_is_null=True,
    )
    ok = present.to_numpy(zero_copy_only=False) & pc.is_valid(wall).to_numpy(zero_copy_only=False)
    secs = pc.fill_null(wall.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    if zone is not None:
        sign = np.where(
            pc.fill_null(pc.utf8_slice_codeunits(values, 19, 20), "+").to_numpy(
                zero_copy_only=False
            )
            == "-",
            -1,
            1,
        )
        hh = _int_slice(values, 20, 22)
        mm = _int_slice(values, 23, 25)
        utc = secs - sign * (hh * 3600 + mm * 60)
        local = pa.array(utc, type=pa.timestamp("s", tz=zone))
        hour = pc.hour(local).to_numpy(zero_copy_only=False)
        dow = pc.day_of_week(local).to_numpy(zero_copy_only=False)
    else:  # the wall clock as written: 1970-01-01 was a Thursday (Monday = 0)
        hour = (secs % 86_400) // 3600
        dow = (secs // 86_400 + 3) % 7
    slot = np.where(ok, dow * 24 + hour, -1).astype(np.int64)
    return (slot if n else np.zeros(0, np.int64)), bad


def _int_slice(values: Any, start: int, stop: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    part = pc.utf8_slice_codeunits(values, start, stop)
    digits = pc.fill_null(pc.if_else(pc.utf8_is_digit(part), part, "0"), "0")
    return digits.cast(pa.int64()).to_numpy(zero_copy_only=False)


# ----------------------------------------------------------------------------------------------
# the accumulator (mergeable, so Ray Data or any other engine can reduce partial profiles)


@dataclass
class _Groups:
    """Per-key statistics with a growing code table (users or groups)."""

    num_classes: int
    grids: bool
    codes: dict[str, int] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    posts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prob_sum: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    grid: np.ndarray | None = None  # (K, SLOTS, C) float32 summed probabilities
    grid_posts: np.ndarray | None = None  # (K, SLOTS) int32

    def encode(self, keys: Any) -> np.ndarray:
        """Global codes for a string array (-1 for null/empty), growing the tables."""
        import pyarrow.compute as pc

        enc = pc.dictionary_encode(keys)
        local_names = enc.dictionary.to_pylist()
        mapping = np.empty(len(local_names), np.int64)
        for i, name in enumerate(local_names):
            if name is None or name == "":
                mapping[i] = -1
                continue
            code = self.codes.get(name)
            if code is None:
                code = self.codes[name] = len(self.names)
                self.names.append(name)
            mapping[i] = code
        self._grow(len(self.names))
        valid = enc.indices.is_valid().to_numpy(zero_copy_only=False)
        if not mapping.size:
            return np.full(len(keys), -1, np.int64)
        idx = pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        return np.where(valid, mapping[idx], -1)

    def _grow(self, size: int) -> None:
        have = len(self.posts)
        if size <= have:
            return
        new = max(size, 2 * have, 1024)
        c = self.num_classes

        def grow(a: np.ndarray | None, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            out = np.zeros((new, *shape), dtype)
            if a is not None and len(a):
                out[:have] = a[:have]
            return out

        self.posts = grow(self.posts, (), np.int64)
        self.prob_sum = grow(self.prob_sum if self.prob_sum.size else None, (c,), np.float64)
        self.counts = grow(self.counts if self.counts.size else None, (c,), np.int64)
        if self.grids:
            self.grid = grow(self.grid, (SLOTS, c), np.float32)
            self.grid_posts = grow(self.grid_posts, (SLOTS,), np.int32)

    def add(self, code: np.ndarray, p: np.ndarray, slot: np.ndarray) -> None:
        keep = code >= 0
        code, p, slot = code[keep], p[keep], slot[keep]
        k, c = len(self.posts), self.num_classes
        self.posts += np.bincount(code, minlength=k)
        for j in range(c):
            self.prob_sum[:, j] += np.bincount(code, weights=p[:, j], minlength=k)
        self.counts += np.bincount(code * c + p.argmax(axis=1), minlength=k * c).reshape(k, c)
        if self.grids and self.grid is not None and self.grid_posts is not None:
            timed = slot >= 0
            # sum within the batch's distinct (key, slot) cells first: a bincount over every
            # cell of every key would cost keys x 168 per batch, however few rows it holds
            cells, inverse = np.unique(code[timed] * SLOTS + slot[timed], return_inverse=True)
            pt = p[timed]
            sums = np.empty((len(cells), c), np.float64)
            for j in range(c):
                sums[:, j] = np.bincount(inverse, weights=pt[:, j], minlength=len(cells))
            flat = self.grid.reshape(k * SLOTS, c)
            flat[cells] += sums.astype(np.float32)
            self.grid_posts.reshape(-1)[cells] += np.bincount(inverse).astype(np.int32)

    def size(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict[str, Any]:
        # shipped between processes (Ray Data partials): the grids go as their non-empty cells,
        # so a partial costs what its rows touched, not keys x 168 x C
        state = self.__dict__.copy()
        if self.grid is not None and self.grid_posts is not None:
            k = self.size()
            posts = self.grid_posts[:k].reshape(-1)
            cells = np.flatnonzero(posts)
            state["grid"] = (cells, self.grid[:k].reshape(k * SLOTS, -1)[cells])
            state["grid_posts"] = posts[cells]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("grid"), tuple):
            cells, values = state["grid"]
            c = state["num_classes"]
            cap = len(state["posts"])
            grid = np.zeros((cap * SLOTS, c), np.float32)
            grid[cells] = values
            posts = np.zeros(cap * SLOTS, np.int32)
            posts[cells] = state["grid_posts"]
            state["grid"] = grid.reshape(cap, SLOTS, c)
            state["grid_posts"] = posts.reshape(cap, SLOTS)
        self.__dict__.update(state)

    def merge(self, other: _Groups) -> np.ndarray:
        """Add `other`'s sums into these (keys matched by name); returns other's code map."""
        mapping = np.empty(other.size(), np.int64)
        for i, name in enumerate(other.names):
            code = self.codes.get(name)
            if code is None:
                code = self.codes[name] = len(self.names)
                self.names.append(name)
            mapping[i] = code
        self._grow(len(self.names))
        m = other.size()
        np.add.at(self.posts, mapping, other.posts[:m])
        np.add.at(self.prob_sum, mapping, other.prob_sum[:m])
        np.add.at(self.counts, mapping, other.counts[:m])
        if self.grids and other.grid is not None and other.grid_posts is not None:
            assert self.grid is not None and self.grid_posts is not None
            np.add.at(self.grid, mapping, other.grid[:m])
            np.add.at(self.grid_posts, mapping, other.grid_posts[:m])
        return mapping


class ProfileAccumulator:
    """Everything a profile needs, summed over record batches; `merge` adds another one."""

    def __init__(self, labels: Sequence[str], options: ProfileOptions) -> None:
        self.labels = list(labels)
        self.options = options
        c = len(self.labels)
        self.population = PredictionStats(c)
        self.grid = np.zeros((SLOTS, c))
        self.grid_posts = np.zeros(SLOTS, np.int64)
        self.users = _Groups(c, grids=options.per_user_grids)
        self.groups = _Groups(c, grids=True)
        self.group_stats: dict[int, PredictionStats] = {}
        self.rows = self.unpredicted = self.untimed = self.anonymous = 0
        self.bad_times: list[tuple[int, Any, str]] = []

    def merge(self, other: ProfileAccumulator) -> None:
        """Add a partial profile of other rows (another block, file or worker)."""
        if other.labels != self.labels:
            raise SemlocError(f"cannot merge profiles of {other.labels} into {self.labels}")
        self.population.merge(other.population)
        self.grid += other.grid
        self.grid_posts += other.grid_posts
        self.users.merge(other.users)
        group_map = self.groups.merge(other.groups)
        for code, stats in other.group_stats.items():
            mine = self.group_stats.setdefault(
                int(group_map[code]), PredictionStats(len(self.labels))
            )
            mine.merge(stats)
        self.bad_times += [(self.rows + r, v, why) for r, v, why in other.bad_times]
        self.rows += other.rows
        self.unpredicted += other.unpredicted
        self.untimed += other.untimed
        self.anonymous += other.anonymous

    def add_batch(self, batch: Any) -> None:
        import pyarrow as pa

        n = batch.num_rows
        names = batch.schema.names
        # nulls (posts without a prediction) become NaN in a float column's numpy view
        p = np.column_stack(
            [batch.column(f"p_{lab}").to_numpy(zero_copy_only=False) for lab in self.labels]
        ).astype(np.float64)
        nulls = pa.nulls(n, pa.string())
        times = batch.column("created_at") if "created_at" in names else nulls
        slot, bad = time_slots(times, self.options.timezone, self.rows)
        self.bad_times.extend(bad)
        self.rows += n
        predicted = ~np.isnan(p).any(axis=1)
        self.unpredicted += int((~predicted).sum())
        p, slot = p[predicted], slot[predicted]
        self.untimed += int((slot < 0).sum())
        mask = pa.array(predicted)
        self.population.add(p)
        timed = slot >= 0
        for j in range(len(self.labels)):
            self.grid[:, j] += np.bincount(slot[timed], weights=p[timed, j], minlength=SLOTS)
        self.grid_posts += np.bincount(slot[timed], minlength=SLOTS)
        if "user" in names:
            codes = self.users.encode(batch.column("user").filter(mask))
            self.anonymous += int((codes < 0).sum())
            self.users.add(codes, p, slot)
        else:
            self.anonymous += len(p)
        group = self.options.group
        if group:
            codes = self.groups.encode(batch.column(group).filter(mask))
            self.groups.add(codes, p, slot)
            for code in np.unique(codes[codes >= 0]):
                stats = self.group_stats.setdefault(int(code), PredictionStats(len(self.labels)))
                stats.add(p[codes == code])


# ----------------------------------------------------------------------------------------------
# summaries


def hour_profile(grid: np.ndarray, grid_posts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(expected posts per hour and location (24, C), posts per hour (24,)) from a 168-slot grid."""
    return grid.reshape(7, 24, -1).sum(axis=0), grid_posts.reshape(7, 24).sum(axis=0)


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


def format_hours(hours: Sequence[int]) -> str:
    """[6, 7, 8, 18, 19] -> '06-09h, 18-20h' (runs of consecutive hours, end exclusive)."""
    if not hours:
        return "-"
    runs, start, prev = [], hours[0], hours[0]
    for h in [*list(hours[1:]), None]:
        if h is not None and h == prev + 1:
            prev = h
            continue
        runs.append(f"{start:02d}-{prev + 1:02d}h")
        if h is not None:
            start = prev = h
    return ", ".join(runs)


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
    columns = _columns_of(path, fmt)
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
    users: _Groups,
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


# ----------------------------------------------------------------------------------------------
# plots and the report


def plot_activity(
    grid: np.ndarray,
    grid_posts: np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    title: str = "population",
) -> Path:
    """One heat-map per location: share of the slot's posts at that location (day x hour);
    slots with no posts are blank."""
    from semloc.plots import plt, save_figure

    c = len(labels)
    cols = min(4, c)
    rows = (c + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 1.9 * rows + 0.6), squeeze=False)
    posts = grid_posts.reshape(7, 24).astype(np.float64)
    for j, lab in enumerate(labels):
        ax = axes[j // cols][j % cols]
        share = np.divide(
            grid[:, j].reshape(7, 24),
            posts,
            out=np.full((7, 24), np.nan),
            where=posts > 0,
        )
        im = ax.imshow(
            share,
            aspect="auto",
            cmap="viridis",
            vmin=0,
            vmax=max(0.05, np.nanmax(share) if np.isfinite(share).any() else 1.0),
        )
        ax.set_title(lab, fontsize=9)
        ax.set_yticks(range(7), DAYS, fontsize=6)
        ax.set_xticks(range(0, 24, 6), [f"{h:02d}h" for h in range(0, 24, 6)], fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    for j in range(c, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"share of posts at each location by day and hour — {title}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def profile_markdown(result: ProfileResult, max_users: int = 20) -> str:
    """A short human report: privacy note, counts, shares by estimator, hours, top users."""
    s = result.summary
    labels = result.labels
    est = list(s["estimators"])
    pct = round(s["confidence"] * 100)
    by = {(r["estimator"], r["location"]): r for r in result.population_shares.to_pylist()}
    group_shares = result.group_shares.to_pylist()
    order = np.argsort(-result.routines.column("posts").to_numpy(), kind="stable")[:max_users]
    top = result.routines.take(order).to_pylist() if result.routines.num_rows else []
    lines = [
        "# Profile: where and when posts are written",
        "",
        f"> **Privacy.** {PRIVACY_NOTE}",
        "",
        f"Source: `{s['source']}`. {s['predicted_posts']:,} predicted posts "
        f"({s['unpredicted_rows']:,} rows without a prediction, {s['posts_without_time']:,} "
        f"without a time, {s['posts_without_user']:,} without a user). Times: {s['timezone']}.",
        f"Users: {s['users']:,}; profiled (>= {s['min_posts']} posts): {s['users_profiled']:,}; "
        f"left out below the threshold: {s['users_below_min_posts']:,} "
        f"({s['posts_of_users_below_min_posts']:,} posts, still counted in the population)."
        + (
            " User ids are pseudonymised (salted SHA-256, salt not stored)."
            if s["pseudonymised"]
            else ""
        ),
        "",
        f"## Population shares ({pct}% bootstrap intervals)",
        "",
        _md_table(
            ["location", *est],
            [
                [
                    lab,
                    *[
                        f"{by[(e, lab)]['share']:.3f} [{by[(e, lab)]['low']:.3f}, "
                        f"{by[(e, lab)]['high']:.3f}]"
                        for e in est
                    ],
                ]
                for lab in labels
            ],
        ),
        "",
        "Estimators: "
        + "; ".join(f"`{k}` {v}" for k, v in s["estimators"].items())
        + ". "
        + (
            "Prefer `pacc` (or `acc`) when the posts' location mix may differ from the dev "
            "split's; `pcc` when they come from the same population as dev; `cc` is shown for "
            "comparison only."
            if s["adjusted_estimators"]
            else "No dev confusion was given (`--run`), so the adjusted estimators are missing: "
            "`pcc` is the better of the two when the probabilities are calibrated."
        ),
        "",
        "## Daily rhythm",
        "",
        f"Home-like hours ({', '.join(s['home_labels']) or 'no home location'}): "
        f"{format_hours(s['home_like_hours'])}. "
        f"Work-like hours ({', '.join(s['work_labels']) or 'no work location'}): "
        f"{format_hours(s['work_like_hours'])}.",
        "",
        "![activity](activity_population.png)",
        "",
    ]
    if group_shares:
        groups = sorted({r["group"] for r in group_shares})
        best = "pacc" if "pacc" in est else "pcc"
        gby = {(r["group"], r["location"]): r for r in group_shares if r["estimator"] == best}
        lines += [
            f"## Groups by `{s['group_column']}` (`{best}`)",
            "",
            _md_table(
                ["group", "posts", *labels],
                [
                    [
                        g,
                        gby[(g, labels[0])]["posts"],
                        *[f"{gby[(g, lab)]['share']:.3f}" for lab in labels],
                    ]
                    for g in groups
                ],
            ),
            "",
        ]
    if top:
        lines += [
            f"## Users (the {len(top)} with most posts; all in routines.csv)",
            "",
            _md_table(
                ["user", "posts", "top location", "home-like hours", "work-like hours"],
                [
                    [
                        r["user"],
                        r["posts"],
                        r["top_location"],
                        r.get("home_like_hours") or "-",
                        r.get("work_like_hours") or "-",
                    ]
                    for r in top
                ],
            ),
            "",
        ]
    return "\n".join(lines) + "\n"


def markdown_to_html(markdown: str, title: str) -> str:
    """A dependency-free rendering of the report's small Markdown subset (headings, tables,
    images, quotes, paragraphs)."""
    import html
    import re

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        return re.sub(r"!\[(.*?)\]\((.+?)\)", r'<img alt="\1" src="\2">', text)

    out, table = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body]
            out.append("</table>")
            table = []
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{inline(line[2:])}</blockquote>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "blockquote{background:#fff4e0;padding:.5em 1em}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )
