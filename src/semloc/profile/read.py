"""Reading predictions tables in record batches, and turning their times into week slots."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semloc.errors import SemlocError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def columns_of(path: Path, fmt: str) -> list[str]:
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
