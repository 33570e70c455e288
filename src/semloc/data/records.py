"""Post records: reading CSV, JSONL and Parquet files of posts, validating every row.

One record per post: ``id`` (unique, non-empty), ``text`` (may be empty), ``image`` (path relative
to the data file, or absent), ``label`` (class name; absent for prediction), ``split``
(train/dev/test; optional — without it a seeded stratified split is made); optionally ``user``
(author id, any string) and ``created_at`` (ISO 8601 with offset, naive ISO in
``data.timezone``, or epoch seconds; see `semloc.data.timestamps`).

Validation collects *every* bad row with its row number and reason and raises one `DataError`;
nothing is dropped silently. Row numbers are 1-based positions of the record in the file
(the CSV header is not a record).
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semloc.config import DataConfig
from semloc.data.timestamps import canonical_timestamp, resolve_timezone
from semloc.errors import DataError, SemlocError

COLUMNS = ("id", "text", "image", "label", "split", "user", "created_at")
SPLITS = ("train", "dev", "test")
log = logging.getLogger(__name__)
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass
class Post:
    id: str
    text: str
    image: str | None  # as written in the file, relative to the data file's directory
    label: str | None
    split: str | None
    row: int  # 1-based record number in the file
    user: str | None = None  # author id, as written
    created_at: str | None = None  # canonical ISO 8601 with offset (semloc.data.timestamps)

    def image_path(self, base_dir: str | Path) -> Path | None:
        if not self.image:
            return None
        p = Path(self.image)
        return p if p.is_absolute() else Path(base_dir) / p


@dataclass
class PostTable:
    records: list[Post]
    path: Path
    base_dir: Path
    split_assigned: bool  # True when splits were made by the seeded stratified split

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> list[str]:
        return sorted({p.label for p in self.records if p.label is not None})


def _cell(value: Any) -> str | None:
    """Normalise a raw cell: None/NaN/empty → None, everything else → stripped string."""
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value) if not isinstance(value, str) else value
    return text if text.strip() != "" else None


def _read_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (row number, record dict) or (row number, error string) for unparsable rows."""
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            row = 0
            for line in f:
                if not line.strip():
                    continue
                row += 1
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield row, f"not valid JSON ({e.msg} at column {e.colno})"
                    continue
                if not isinstance(obj, dict):
                    yield row, "not a JSON object"
                    continue
                yield row, obj
    elif fmt == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            for row, rec in enumerate(reader, start=1):
                if None in rec:  # more cells than header columns
                    cells = len(reader.fieldnames) + len(rec[None])
                    yield row, f"has {cells} cells, header has {len(reader.fieldnames)}"
                    continue
                yield row, rec
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for row, rec in enumerate(table.to_pylist(), start=1):
            yield row, rec


def read_posts(
    path: str | Path,
    *,
    require_labels: bool = False,
    labels: Sequence[str] | None = None,
    data_cfg: DataConfig | None = None,
) -> PostTable:
    """Read and validate a posts file.

    require_labels: every post must have a label (training/evaluation).
    labels: when given, a label outside this list is an error (evaluation against a model).
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SemlocError(
            f"{path}: unknown posts format {path.suffix!r}; use one of {', '.join(FORMATS)}"
        )
    if not path.is_file():
        raise SemlocError(f"posts file {path} does not exist")
    problems: list[str] = []
    posts: list[Post] = []
    try:
        rows = list(_read_rows(path, fmt))
    except UnicodeDecodeError as e:
        raise SemlocError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise SemlocError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # pyarrow raises many types for a corrupt file
        raise SemlocError(f"cannot read {path} as {fmt}: {e}") from None
    if fmt == "csv" and rows and isinstance(rows[0][1], dict) and "id" not in rows[0][1]:
        raise DataError(f"{path}: missing required column 'id'", [f"columns: {list(rows[0][1])}"])
    known_labels = set(labels) if labels is not None else None
    zone = resolve_timezone((data_cfg or DataConfig()).timezone)
    seen: dict[str, int] = {}
    extra_columns: set[str] = set()
    for row, rec in rows:
        where = f"row {row}"
        if isinstance(rec, str):
            problems.append(f"{where}: {rec}")
            continue
        extra_columns.update(set(rec) - set(COLUMNS))
        pid = _cell(rec.get("id"))
        if pid is None:
            problems.append(f"{where}: missing or empty id")
            continue
        pid = pid.strip()
        if pid in seen:
            problems.append(f"{where}: duplicate id {pid!r} (first seen at row {seen[pid]})")
            continue
        seen[pid] = row
        text = rec.get("text")
        if text is not None and not isinstance(text, str):
            if isinstance(text, float) and np.isnan(text):
                text = ""
            else:
                problems.append(f"{where} (id {pid!r}): text must be a string, got {text!r}")
                continue
        image = _cell(rec.get("image"))
        label = _cell(rec.get("label"))
        split = _cell(rec.get("split"))
        if label is not None:
            label = label.strip()
        if require_labels and label is None:
            problems.append(f"{where} (id {pid!r}): missing label")
            continue
        if known_labels is not None and label is not None and label not in known_labels:
            problems.append(
                f"{where} (id {pid!r}): label {label!r} is not in the label list "
                f"({', '.join(sorted(known_labels))})"
            )
            continue
        if split is not None and split.strip() not in SPLITS:
            problems.append(f"{where} (id {pid!r}): split {split!r} is not one of {SPLITS}")
            continue
        try:
            created_at = canonical_timestamp(rec.get("created_at"), zone)
        except ValueError as e:
            problems.append(f"{where} (id {pid!r}): created_at {rec.get('created_at')!r}: {e}")
            continue
        user = _cell(rec.get("user"))
        posts.append(
            Post(
                id=pid,
                text=text or "",
                image=image,
                label=label,
                split=split.strip() if split else None,
                row=row,
                user=user.strip() if user else None,
                created_at=created_at,
            )
        )
    if not rows:
        raise DataError(f"{path} contains no posts")
    have_split = [p.split is not None for p in posts]
    if any(have_split) and not all(have_split):
        problems.extend(
            f"row {p.row} (id {p.id!r}): missing split (other rows have one)"
            for p in posts
            if p.split is None
        )
    if problems:
        raise DataError(f"{path}: {len(problems)} bad row(s)", problems)
    if extra_columns:
        # extra columns (user, timestamp, ...) are common in real exports: kept out, said once
        log.info("%s: ignoring column(s) %s", path, ", ".join(sorted(extra_columns)))
    split_assigned = False
    if posts and not any(have_split):
        assign_splits(posts, data_cfg or DataConfig())
        split_assigned = True
    return PostTable(
        records=posts, path=path, base_dir=path.parent.resolve(), split_assigned=split_assigned
    )


def assign_splits(posts: list[Post], cfg: DataConfig) -> None:
    """Seeded stratified train/dev/test split (by label; unlabelled posts form their own stratum).

    Each class is shuffled with the seed and cut by the fractions, so every class with at least
    a few posts appears in every split and the result does not depend on the file's row order
    beyond ties.
    """
    if not 0 <= cfg.dev_fraction < 1 or not 0 <= cfg.test_fraction < 1:
        raise SemlocError("data.dev_fraction and data.test_fraction must be in [0, 1)")
    if cfg.dev_fraction + cfg.test_fraction >= 1:
        raise SemlocError("data.dev_fraction + data.test_fraction must be below 1")
    rng = np.random.default_rng(cfg.split_seed)
    by_label: dict[str | None, list[Post]] = {}
    for p in sorted(posts, key=lambda p: p.id):
        by_label.setdefault(p.label, []).append(p)
    for label in sorted(by_label, key=lambda x: (x is None, x or "")):
        group = by_label[label]
        order = rng.permutation(len(group))
        n = len(group)
        n_test = round(n * cfg.test_fraction)
        n_dev = round(n * cfg.dev_fraction)
        if n - n_test - n_dev < 1:  # tiny class: keep at least one training example
            n_test = n_dev = 0
        for rank, i in enumerate(order):
            group[i].split = (
                "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
            )


def split_counts(posts: Sequence[Post]) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for p in posts:
        out.setdefault(p.split or "none", Counter())[p.label or "<none>"] += 1
    return out
