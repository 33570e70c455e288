"""`semloc profile` on Ray Data: many files, many machines, one profile.

    result = profile_with_ray(["s3-mounted/preds-*.parquet"], "profile/", ProfileOptions())

Each Ray Data block is summed into a partial `ProfileAccumulator` by a Ray task (the same
`add_batch` the local path runs); partials travel back as their non-empty cells (a partial costs
what its rows touched) and the driver merges them (`ProfileAccumulator.merge`) and writes the
same outputs as `semloc.profile.profile_predictions`. Sums are order-independent, so the result
equals the local one up to float rounding. Input: Parquet files (CSV with ``.csv`` paths);
every node must see them at the same paths.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semloc.errors import SemlocError
from semloc.prevalence import DevConfusion
from semloc.profile import (
    ProfileAccumulator,
    ProfileOptions,
    ProfileResult,
    check_accumulated,
    dev_confusion_of,
    prediction_columns,
    write_profile,
)
from semloc.scale.ray_extract import ray_session


def profile_with_ray(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    options: ProfileOptions | None = None,
    *,
    dev: DevConfusion | None = None,
    run: str | Path | None = None,
    address: str = "",
) -> ProfileResult:
    """Profile predictions files on a Ray cluster (`address`; empty: a local Ray instance)."""
    import ray

    options = options or ProfileOptions()
    files = [str(p) for p in paths]
    if not files:
        raise SemlocError("no predictions files given")
    labels, wanted = prediction_columns(Path(files[0]), options)
    if run is not None and dev is None:
        dev = dev_confusion_of(run, labels)
    text_cols = [c for c in wanted if not c.startswith("p_")]

    def partial(table: Any) -> dict[str, list[bytes]]:
        import pyarrow as pa

        acc = ProfileAccumulator(labels, options)
        for batch in table.select(wanted).to_batches():
            arrays = [
                batch.column(n).cast(pa.string()) if n in text_cols else batch.column(n)
                for n in batch.schema.names
            ]
            acc.add_batch(pa.RecordBatch.from_arrays(arrays, names=batch.schema.names))
        return {"partial": [pickle.dumps(acc)]}

    with ray_session(address):
        if all(f.endswith(".csv") for f in files):
            ds = ray.data.read_csv(files)
        else:
            ds = ray.data.read_parquet(files).select_columns(wanted)
        parts = ds.map_batches(partial, batch_format="pyarrow", batch_size=options.batch_size)
        total = ProfileAccumulator(labels, options)
        for row in parts.iter_rows():
            total.merge(pickle.loads(row["partial"]))
    check_accumulated(total, ", ".join(files))
    return write_profile(total, out_dir, dev, source=", ".join(files))
