"""Prediction: posts or a feature store in, a predictions table out — the one path.

`predict_store` and `predict_posts` both end in `semloc.outputs.model_outputs` (the loop every
prediction in semloc goes through: trainer, CLI, Ray, server, Python API), and
`prediction_columns` + `write_predictions` are the one way predictions become a table or a file
(CSV, JSONL or Parquet, by suffix; written atomically).

Posts are featurised on the fly with the CLIP a run was trained on. The backbone comes from the checkpoint (`backbone_path`, or an explicit override for a moved
directory) and must be the same model with the same preprocessing as the training features —
checked against the checkpoint's feature header, so a prediction never silently mixes CLIPs.
Features go through exactly the extraction code and are rounded through the store dtype, so
predicting a posts file gives the same numbers as extracting it and predicting the store.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semloc.config import DataConfig, ExtractConfig, flatten_dict
from semloc.errors import SemlocError
from semloc.io import atomic_write_bytes, atomic_write_text, output_file
from semloc.outputs import Predictions, model_outputs
from semloc.runs import LoadedRun

if TYPE_CHECKING:
    from semloc.clip.extract import PostOutcome
    from semloc.data.records import PostTable
    from semloc.features.store import FeatureStore


def header_differences(actual: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What differs between a backbone's feature header and the one a run was trained on.

    The weights and preprocessing are a CLIP's identity; its name is a label (a moved or
    renamed directory is the same model), so names never differ (`LABEL_KEYS`)."""
    from semloc.features.store import LABEL_KEYS

    diffs = []
    for key in ("backbone", "preprocessing", "dims"):
        a, e = flatten_dict(actual.get(key), key), flatten_dict(expected.get(key), key)
        for k in sorted(set(a) | set(e)):
            if k in LABEL_KEYS:
                continue
            if a.get(k) != e.get(k):
                diffs.append(f"{k}: run has {e.get(k)!r}, this CLIP gives {a.get(k)!r}")
    return diffs


def recorded_backbone_locations(run: LoadedRun) -> list[str]:
    """Where the run's CLIP was loaded from at extraction: the checkpoint's own header when it
    records a path, else the feature store the run was trained on, else the recorded name (a
    hub id, found in the local cache only)."""
    found: list[str] = []
    header = run.feature_header
    if run.meta.get("backbone_path"):
        found.append(str(run.meta["backbone_path"]))
    if header.get("backbone_path"):
        found.append(str(header["backbone_path"]))
    store = run.meta.get("store_path")
    if store:
        for name in ("manifest.json", "header.json"):
            try:
                data = json.loads((Path(store) / name).read_text())
            except (OSError, json.JSONDecodeError):
                continue
            for value in (
                data.get("backbone_path"),
                data.get("extraction", {}).get("backbone_path"),
            ):
                if value:
                    found.append(str(value))
    name = header.get("backbone", {}).get("name")
    if name:
        found.append(str(name))
    return list(dict.fromkeys(found))


def load_run_backbone(
    run: LoadedRun, override: str | None = "", device: str = "cpu", *, allow_network: bool = False
) -> Any:
    """The CLIP the run's features came from, checked against the checkpoint's feature header
    (weights hash, preprocessing, widths). A different CLIP is refused, never used."""
    from semloc.clip.backbone import load_backbone

    header = run.feature_header
    bf16 = header.get("backbone", {}).get("compute_dtype") == "bfloat16"
    candidates = [override] if override else recorded_backbone_locations(run)
    tried = []
    for where in candidates:
        try:
            backbone = load_backbone(where, allow_network=allow_network, device=device, bf16=bf16)
        except SemlocError as e:
            tried.append(f"  - {where}: {e}")
            continue
        diffs = header_differences(backbone.header(header["dtype"]), header)
        if not diffs:
            return backbone
        tried.append(f"  - {where}: a different CLIP than the run's features came from:")
        tried += [f"      {d}" for d in diffs]
    expected = header.get("backbone", {})
    raise SemlocError(
        f"cannot serve run {run.path}: no usable copy of the CLIP backbone "
        f"{expected.get('name')!r} (weights sha256 {expected.get('weights_sha256')}) it was "
        "trained on. Tried:\n" + ("\n".join(tried) or "  (no location recorded)") + "\n"
        "Pass --backbone DIR with that CLIP's directory."
    )


# ---------------------------------------------------------------------------------------------
# a feature store in


def predict_store(
    run: LoadedRun,
    store: FeatureStore,
    indices: np.ndarray | None = None,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
    withhold_images: bool = False,
) -> Predictions:
    """The run's predictions for `indices` of a store (default: every post), in store order.

    The store must hold the features the run was trained on (same CLIP, preprocessing, dtype);
    a different one is refused with the exact difference. `withhold_images` scores every post as
    if it had no picture: the model's text path alone, what it would say if it fell back to the
    text entirely (a diagnostic; `semloc.demo.diagnose --text-path`)."""
    import torch

    from semloc.features.loader import make_loader
    from semloc.features.store import label_map_for

    store.check_compatible(run.feature_header, what=f"run {run.path}")
    idx = np.arange(len(store)) if indices is None else np.asarray(indices)
    loader = make_loader(store, idx, batch_size, label_map=label_map_for(store, run.labels))
    batches = (
        (replace(b, image_present=torch.zeros_like(b.image_present)) for b in loader)
        if withhold_images
        else loader
    )
    return model_outputs(run.model, batches, device, temperature=run.temperature, progress=progress)


def store_prediction_columns(
    run: LoadedRun, store: FeatureStore, preds: Predictions
) -> dict[str, list[Any]]:
    """The predictions table of `predict_store`'s output: ids and gold labels from the store."""
    gold = [store.raw_labels[i] for i in preds.index]
    # rows of the table are the predicted posts in store order: positions 0..N-1 of `ids`
    local = replace(preds, index=np.arange(len(preds)))
    return prediction_columns(
        [store.ids[i] for i in preds.index],
        local,
        run.labels,
        gold=gold if any(g is not None for g in gold) else None,
        columns=people_columns(
            [store.users[i] for i in preds.index], [store.created_at[i] for i in preds.index]
        ),
    )


def people_columns(
    users: Sequence[str | None], created_at: Sequence[str | None]
) -> dict[str, list[str | None]]:
    """The per-post `user` and `created_at` columns (for `semloc profile`), each only when some
    post has a value."""
    out = {}
    for name, values in (("user", users), ("created_at", created_at)):
        if any(v is not None for v in values):
            out[name] = list(values)
    return out


# ---------------------------------------------------------------------------------------------
# posts in (a file, a DataFrame, a list of dicts)


@dataclass
class PostPredictions:
    """Predictions for every input post, in input order (a skipped post has no prediction)."""

    posts: PostTable
    predictions: Predictions  # index = positions in posts.records of the predicted posts
    outcomes: list[PostOutcome]  # one per input post
    labels: list[str]

    def columns(self) -> dict[str, list[Any]]:
        return post_prediction_columns(
            self.posts.records, self.predictions, self.labels, self.outcomes
        )

    def to_frame(self) -> Any:
        """A pandas DataFrame: id, predicted_label, p_<class>…, explanation fields, outcome."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def counts(self) -> dict[str, int]:
        return outcome_counts(self.outcomes)


def post_prediction_columns(
    posts: Sequence[Any],
    preds: Predictions,
    labels: Sequence[str],
    outcomes: Sequence[PostOutcome],
) -> dict[str, list[Any]]:
    """The predictions table of input posts (`preds.index` = positions in `posts`), whichever
    engine computed them: the gold label when the posts have one, user and created_at too."""
    gold = [p.label for p in posts]
    return prediction_columns(
        [p.id for p in posts],
        preds,
        labels,
        outcomes=outcomes,
        gold=gold if any(g is not None for g in gold) else None,
        columns=people_columns([p.user for p in posts], [p.created_at for p in posts]),
    )


def outcome_counts(outcomes: Sequence[PostOutcome]) -> dict[str, int]:
    """Posts per (status, image outcome), for a one-line summary."""
    out: dict[str, int] = {}
    for o in outcomes:
        key = o.status + (f" ({o.reason})" if o.reason else "")
        out[key] = out.get(key, 0) + 1
    return out


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


def predict_posts(
    run: LoadedRun,
    posts: str | Path | PostTable | Any,
    *,
    backbone: Any = None,
    extract_cfg: ExtractConfig | None = None,
    data_cfg: DataConfig | None = None,
    backbone_override: str | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
    chunk_size: int = 4096,
) -> PostPredictions:
    """Predict raw posts: a posts file, a pandas DataFrame, a list of dicts or a `PostTable`.

    Features are computed with the run's own CLIP (checked against the run's feature header;
    pass `backbone` to reuse a loaded one) exactly as extraction computes them, `chunk_size`
    posts at a time so memory does not grow with the input. Posts whose image is unusable follow
    `extract_cfg.image_policy`: text-only (the default: predicted from the text; the outcome says
    why), skip (listed without a prediction) or fail (an error naming the post)."""
    from semloc.clip.extract import featurize_posts
    from semloc.data.records import PostTable, read_posts

    cfg = extract_cfg or ExtractConfig()
    table = posts if isinstance(posts, PostTable) else read_posts(posts, data_cfg=data_cfg)
    if backbone is None:
        backbone = load_run_backbone(
            run, backbone_override, device, allow_network=cfg.allow_network
        )
    dtype = run.feature_header["dtype"]
    records = table.records
    parts: list[Predictions] = []
    outcomes: list[PostOutcome] = []
    from tqdm.auto import tqdm

    with tqdm(total=len(records), desc="predict", unit="post", disable=not progress) as bar:
        for rows in _chunks(len(records), max(1, chunk_size)):
            chunk = records[rows.start : rows.stop]
            batch, chunk_outcomes = featurize_posts(
                chunk, table.base_dir, backbone, cfg, dtype=dtype
            )
            for o in chunk_outcomes:
                o.index += rows.start
            outcomes.extend(chunk_outcomes)
            if len(batch):
                batch.index = batch.index + rows.start
                step = max(1, batch_size)
                pieces = (
                    batch.select(list(range(s, min(s + step, len(batch)))))
                    for s in range(0, len(batch), step)
                )
                parts.append(model_outputs(run.model, pieces, device, temperature=run.temperature))
            bar.update(len(chunk))
    return PostPredictions(
        posts=table,
        predictions=Predictions.concat(parts, temperature=run.temperature),
        outcomes=outcomes,
        labels=list(run.labels),
    )


# ---------------------------------------------------------------------------------------------
# the predictions table and its writer


def image_outcome(outcome: PostOutcome) -> str:
    """One word for what happened to a post's picture: present, no_image, or why it was
    unusable (`semloc.clip.images.IMAGE_REASONS`: missing, empty, truncated, ...)."""
    if outcome.reason:
        return outcome.reason
    return "present" if outcome.image else "no_image"


def prediction_columns(
    ids: Sequence[str],
    preds: Predictions,
    labels: Sequence[str],
    *,
    outcomes: Sequence[PostOutcome] | None = None,
    gold: Sequence[str | None] | None = None,
    columns: dict[str, Sequence[Any]] | None = None,
) -> dict[str, list[Any]]:
    """Predictions as ordered columns, one row per id (`preds.index` = positions in `ids`).

    id, predicted_label, p_<class> for every class (calibrated when the run has a temperature),
    similarity, gate, weight_text, weight_image (when the model has them), status and
    image_outcome (when outcomes are known), label (the gold label, when the input has one),
    then `columns` (e.g. user, created_at) as given. A post without a prediction (skipped by the
    image policy) keeps its row with empty prediction cells: listed, never dropped."""
    n = len(ids)
    row_of = {int(i): r for r, i in enumerate(preds.index)}
    probs = preds.probabilities if len(preds) else np.zeros((0, len(labels)))
    out: dict[str, list[Any]] = {"id": list(ids)}
    out["predicted_label"] = [
        labels[int(probs[row_of[i]].argmax())] if i in row_of else None for i in range(n)
    ]
    for c, lab in enumerate(labels):
        out[f"p_{lab}"] = [float(probs[row_of[i], c]) if i in row_of else None for i in range(n)]

    def extra(values: np.ndarray) -> list[Any]:
        return [float(values[row_of[i]]) if i in row_of else None for i in range(n)]

    for name in ("similarity", "gate", "picture_match"):  # the last: model.text_fallback
        if name in preds.extras:
            out[name] = extra(preds.extras[name])
    if "modality_weights" in preds.extras:
        out["weight_text"] = extra(preds.extras["modality_weights"][:, 0])
        out["weight_image"] = extra(preds.extras["modality_weights"][:, 1])
    if outcomes is not None:
        out["status"] = [o.status for o in outcomes]
        out["image_outcome"] = [image_outcome(o) for o in outcomes]
    if gold is not None:
        out["label"] = list(gold)
    for name, values in (columns or {}).items():
        if name in out:
            raise SemlocError(f"prediction column {name!r} is already in the table")
        if len(values) != n:
            raise SemlocError(f"prediction column {name!r} has {len(values)} values for {n} posts")
        out[name] = list(values)
    return out


PREDICTION_FORMATS = (".csv", ".jsonl", ".parquet")


def _text_cell(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def write_predictions(path: str | Path, columns: dict[str, list[Any]]) -> Path:
    """Write a predictions table as CSV, JSONL or Parquet (by the file's suffix), atomically.

    Text formats round floats to 6 decimals; Parquet keeps them whole. Empty cells (a post
    without a prediction) are empty in CSV, null in JSONL and Parquet."""
    path = output_file(path, "predictions file")
    suffix = path.suffix.lower()
    if suffix not in PREDICTION_FORMATS:
        raise SemlocError(
            f"{path}: unknown predictions format {path.suffix!r}; use one of "
            f"{', '.join(PREDICTION_FORMATS)}"
        )
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v) for k, v in columns.items()})
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        atomic_write_bytes(path, buf.getvalue().to_pybytes())
        return path
    out = io.StringIO()
    if suffix == ".csv":
        w = csv.writer(out)
        w.writerow(names)
        for i in range(n):
            w.writerow(["" if columns[k][i] is None else _text_cell(columns[k][i]) for k in names])
    else:
        for i in range(n):
            out.write(
                json.dumps({k: _text_cell(columns[k][i]) for k in names}, ensure_ascii=False) + "\n"
            )
    atomic_write_text(path, out.getvalue())
    return path
