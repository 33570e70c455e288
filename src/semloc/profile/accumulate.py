"""The profile's sums: mergeable accumulators over record batches (users, groups, grids)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semloc.errors import SemlocError
from semloc.prevalence import PredictionStats
from semloc.profile.read import time_slots

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

SLOTS = 7 * 24  # slot = day_of_week * 24 + hour, Monday = 0


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


@dataclass
class KeyedSums:
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

    def merge(self, other: KeyedSums) -> np.ndarray:
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
        self.users = KeyedSums(c, grids=options.per_user_grids)
        self.groups = KeyedSums(c, grids=True)
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


def hour_profile(grid: np.ndarray, grid_posts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(expected posts per hour and location (24, C), posts per hour (24,)) from a 168-slot grid."""
    return grid.reshape(7, 24, -1).sum(axis=0), grid_posts.reshape(7, 24).sum(axis=0)
