"""Prediction on raw posts: features computed on the fly with the CLIP a run was trained on.

The backbone comes from the checkpoint (`backbone_path`, or an explicit override for a moved
directory) and must be the same model with the same preprocessing as the training features —
checked against the checkpoint's feature header, so a prediction never silently mixes CLIPs.
Features go through exactly the extraction code and are rounded through the store dtype, so
predicting a posts file gives the same numbers as extracting it and predicting the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from semloc.config import ExtractConfig
from semloc.errors import SemlocError, StoreMismatchError
from semloc.features.store import FINGERPRINT_KEYS, _diff
from semloc.workflow import LoadedRun


def load_backbone_for_run(
    run: LoadedRun,
    name_or_dir: str | None = None,
    *,
    allow_network: bool = False,
    device: str = "cpu",
) -> Any:
    """The CLIP backbone of `run`'s features, verified against its feature header."""
    from semloc.clip.backbone import load_backbone

    header = run.feature_header
    source = name_or_dir or run.meta.get("backbone_path") or header["backbone"].get("name")
    if not source:
        raise SemlocError(f"run {run.path} records no backbone; pass --backbone DIR_OR_HUB_ID")
    bf16 = header["backbone"].get("compute_dtype") == "bfloat16"
    backbone = load_backbone(source, allow_network=allow_network, device=device, bf16=bf16)
    diff = _diff(backbone.header(header["dtype"]), header, FINGERPRINT_KEYS)
    diff = [d for d in diff if not d.lstrip().startswith("backbone.name")]  # a moved dir is fine
    if diff:
        raise StoreMismatchError(
            f"backbone {source!r} is not the CLIP run {run.path} was trained with:\n"
            + "\n".join(diff)
        )
    return backbone


def predict_posts_file(
    run: LoadedRun,
    posts_path: str | Path,
    output: str | Path,
    *,
    extract_cfg: ExtractConfig | None = None,
    backbone_override: str | None = None,
    batch_size: int = 256,
    device: str = "cpu",
) -> dict[str, int]:
    """Predict every post of a CSV/JSONL/Parquet file; writes the predictions CSV atomically.

    Posts whose image is unusable follow `extract_cfg.image_policy` (text-only by default: the
    prediction uses the text alone and the CSV says why in `image_outcome`; skip: the post is
    listed with an empty label; fail: nothing is written)."""
    import torch

    from semloc.cli.predict import write_predictions
    from semloc.clip.extract import featurize_posts
    from semloc.data.records import read_posts
    from semloc.features.batch import FeatureBatch

    cfg = extract_cfg or ExtractConfig()
    table = read_posts(posts_path)
    backbone = load_backbone_for_run(
        run, backbone_override, allow_network=cfg.allow_network, device=device
    )
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
        output, [p.id for p in table.records], probs, run.labels, extras, outcomes=statuses
    )
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return counts
