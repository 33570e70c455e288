"""Prediction on raw posts: features computed on the fly with the CLIP a run was trained on.

The backbone comes from the checkpoint (`backbone_path`, or an explicit override for a moved
directory) and must be the same model with the same preprocessing as the training features —
checked against the checkpoint's feature header, so a prediction never silently mixes CLIPs.
Features go through exactly the extraction code and are rounded through the store dtype, so
predicting a posts file gives the same numbers as extracting it and predicting the store.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from semloc.config import DataConfig, ExtractConfig
from semloc.errors import SemlocError
from semloc.io import atomic_write_text
from semloc.runs import LoadedRun


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def header_differences(actual: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What differs between a backbone's feature header and the one a run was trained on."""
    diffs = []
    for key in ("backbone", "preprocessing", "dims"):
        a, e = _flatten(actual.get(key), key), _flatten(expected.get(key), key)
        for k in sorted(set(a) | set(e)):
            if a.get(k) != e.get(k):
                diffs.append(f"{k}: run has {e.get(k)!r}, this CLIP gives {a.get(k)!r}")
    return diffs


def _recorded_backbone_locations(run: LoadedRun) -> list[str]:
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
    candidates = [override] if override else _recorded_backbone_locations(run)
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


def predict_posts_file(
    run: LoadedRun,
    posts_path: str | Path,
    output: str | Path,
    *,
    extract_cfg: ExtractConfig | None = None,
    backbone_override: str | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    data_cfg: DataConfig | None = None,
) -> dict[str, int]:
    """Predict every post of a CSV/JSONL/Parquet file; writes the predictions CSV atomically.

    Posts whose image is unusable follow `extract_cfg.image_policy` (text-only by default: the
    prediction uses the text alone and the CSV says why in `image_outcome`; skip: the post is
    listed with an empty label; fail: nothing is written)."""
    import torch

    from semloc.clip.extract import featurize_posts
    from semloc.data.records import read_posts
    from semloc.features.batch import FeatureBatch

    cfg = extract_cfg or ExtractConfig()
    table = read_posts(posts_path, data_cfg=data_cfg)
    backbone = load_run_backbone(run, backbone_override, device, allow_network=cfg.allow_network)
    batch, outcomes = featurize_posts(
        table.records, table.base_dir, backbone, cfg, dtype=run.feature_header["dtype"]
    )
    num_classes = len(run.labels)
    probs = np.full((len(table.records), num_classes), np.nan, dtype=np.float64)
    extras: dict[str, np.ndarray] = {}
    kept = batch.index.numpy() if len(batch) else np.zeros(0, dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(kept), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(kept)))
            part: FeatureBatch = batch.select(rows).to(device)
            out = run.model(part)
            p = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
            probs[kept[rows.numpy()]] = p
            for name in ("similarity", "gate", "modality_weights"):
                value = getattr(out, name)
                if value is not None:
                    full = extras.setdefault(
                        name, np.full((len(table.records), *value.shape[1:]), np.nan)
                    )
                    full[kept[rows.numpy()]] = value.float().cpu().numpy()
    statuses = [o.status + (f" ({o.reason})" if o.reason else "") for o in outcomes]
    write_predictions(
        output,
        [p.id for p in table.records],
        probs,
        run.labels,
        extras,
        outcomes=statuses,
        columns=people_columns(
            [p.user for p in table.records], [p.created_at for p in table.records]
        ),
    )
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return counts


def people_columns(
    users: list[str | None], created_at: list[str | None]
) -> dict[str, list[str | None]]:
    """The per-post `user` and `created_at` columns, each only when some post has a value."""
    out = {}
    for name, values in (("user", users), ("created_at", created_at)):
        if any(v is not None for v in values):
            out[name] = values
    return out


def write_predictions(
    path: str | Path,
    ids: list[str],
    probabilities: np.ndarray,
    labels: list[str],
    extras: dict[str, np.ndarray] | None = None,
    outcomes: list[str] | None = None,
    columns: dict[str, list[str | None]] | None = None,
) -> None:
    """CSV: id, then `columns` (per-post values carried from the posts, e.g. user and
    created_at), label, p_<class> for every class, then explanation columns when the model has
    them (similarity, gate, weight_text, weight_image) and the image outcome when known."""
    extras = extras or {}
    columns = columns or {}
    cols = ["id", *columns, "label", *[f"p_{lab}" for lab in labels]]
    extra_cols: list[tuple[str, np.ndarray]] = []
    for name in ("similarity", "gate"):
        if name in extras:
            extra_cols.append((name, extras[name]))
    if "modality_weights" in extras:
        extra_cols += [
            ("weight_text", extras["modality_weights"][:, 0]),
            ("weight_image", extras["modality_weights"][:, 1]),
        ]
    cols += [c for c, _ in extra_cols]
    if outcomes is not None:
        cols.append("image_outcome")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for i, pid in enumerate(ids):
        p = probabilities[i]
        carried = ["" if v[i] is None else v[i] for v in columns.values()]
        if np.isnan(p).any():  # a post the image policy skipped: listed, never dropped
            row = [pid, *carried, "", *[""] * len(labels), *[""] * len(extra_cols)]
        else:
            row = [pid, *carried, labels[int(p.argmax())], *[f"{x:.6f}" for x in p]]
            row += [f"{float(v[i]):.6f}" for _, v in extra_cols]
        if outcomes is not None:
            row.append(outcomes[i])
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())
