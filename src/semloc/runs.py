"""Compose store + model + trainer into runs: train, load, evaluate, predict.

A *run directory* holds everything about one trained model::

    config.yaml      the resolved config (every default filled in)
    run.json         the feature store it was trained on, its fingerprint, parameter count
    best.pt          the checkpoint selected on dev macro-F1 (self-describing: see below)
    last.pt          the latest epoch with optimizer state, for --resume
    history.json     per-epoch losses and dev metrics; training_curves.png
    metrics.json     dev metrics of the best epoch
    eval-SPLIT/      written by evaluate: metrics.json, confusion.png, per_class_f1.png

A checkpoint carries the model name and config, the label list, the feature header (backbone,
weights hash, preprocessing, dtype, widths) and manifest hash, metrics and the code version, so
`predict` and `serve` need nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semloc import __version__
from semloc.config import Config, config_from_dict, config_to_dict, config_to_yaml
from semloc.errors import SemlocError
from semloc.features.batch import FeatureDims
from semloc.features.loader import make_loader
from semloc.features.store import FINGERPRINT_KEYS, FeatureStore, label_map_for
from semloc.io import atomic_write_json, atomic_write_text
from semloc.metrics import aggregate, classification_metrics
from semloc.models import build_model
from semloc.train.trainer import Predictions, Trainer, TrainResult, predict, seed_everything

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "semloc-checkpoint-1"


def median_pair_cosine(store: FeatureStore, indices: np.ndarray, limit: int = 20_000) -> float:
    """Median cosine of (text, image) pooled embeddings over posts that have an image.

    SG-MFT's coarse gate starts centred here so it separates matched from mismatched pairs of
    *this* data from the first step (spec: gate initialisation)."""
    return pair_cosine_stats(store, indices, limit)[0]


def pair_cosine_stats(
    store: FeatureStore, indices: np.ndarray, limit: int = 20_000
) -> tuple[float, float]:
    """Median and standard deviation of the (text, image) pooled cosine over posts with an image
    (SG-MFT standardises its similarity with them; (0, 1) when no post has an image)."""
    indices = np.asarray(indices)
    if len(indices) > limit:  # a fixed sample keeps this O(1) in the store size
        indices = np.random.default_rng(0).choice(indices, limit, replace=False)
    cosines = []
    for start in range(0, len(indices), 2048):
        b = store.batch(np.sort(indices[start : start + 2048]))
        t = nn.functional.normalize(b.text_embed, dim=-1)
        v = nn.functional.normalize(b.image_embed, dim=-1)
        cosines.append(((t * v).sum(-1))[b.image_present].numpy())
    values = np.concatenate(cosines) if cosines else np.zeros(0)
    if values.size == 0:
        return 0.0, 1.0
    std = float(values.std()) if values.size > 1 else 1.0
    return float(np.median(values)), std if std > 1e-6 else 1.0


def _require_split(store: FeatureStore, split: str, why: str) -> np.ndarray:
    idx = store.indices(split)
    if idx.size == 0:
        raise SemlocError(f"feature store {store.root} has no '{split}' posts; {why}")
    return idx


def train_run(
    store_path: str | Path,
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    dist: Any = None,
) -> TrainResult:
    """Train `cfg.model` on the train split of a store, selecting on dev."""
    out_dir = Path(out_dir)
    is_main = dist is None or dist.is_main
    last = out_dir / "last.pt"
    if resume:
        if not last.exists():
            raise SemlocError(f"cannot resume: {last} does not exist")
        saved = torch.load(last, map_location="cpu", weights_only=True)
        cfg = config_from_dict(saved["config"])  # the run continues with its own config
        store_path = saved.get("store_path", store_path)
    elif (out_dir / "best.pt").exists() or last.exists():
        if not overwrite:
            raise SemlocError(
                f"{out_dir} already holds a run; use --resume to continue it, --overwrite to "
                "replace it, or another --out"
            )
        if is_main:
            for name in ("best.pt", "last.pt", "history.json", "metrics.json"):
                (out_dir / name).unlink(missing_ok=True)
    store = FeatureStore(store_path)
    if resume:
        store.check_compatible(saved["feature_header"], what=f"the run in {out_dir}")
    labels = store.labels
    if len(labels) < 2:
        raise SemlocError(f"feature store {store.root} has {len(labels)} label(s); need at least 2")
    train_idx = _require_split(store, "train", "training needs labelled train posts")
    dev_idx = _require_split(store, "dev", "model selection needs a dev split (never test)")
    train_idx = train_idx[store.label_codes[train_idx] >= 0]
    dev_idx = dev_idx[store.label_codes[dev_idx] >= 0]
    if cfg.model.name == "sgmft" and (
        cfg.model.gate_bias_init is None or cfg.model.similarity_std is None
    ):
        median, std = pair_cosine_stats(store, train_idx)
        if cfg.model.gate_bias_init is None:
            cfg.model.gate_bias_init = round(median, 6)
        if cfg.model.similarity_std is None:
            cfg.model.similarity_std = round(std, 6)
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, store.dims, len(labels))
    num_params = sum(p.numel() for p in model.parameters())
    counts = np.bincount(store.label_codes[train_idx], minlength=len(labels))
    # train.batch_size is the global batch: under DDP each rank takes its share of every batch
    batch_size = cfg.train.batch_size
    train_sampler = None
    if dist:
        train_sampler = dist.train_sampler(len(train_idx), cfg.train.seed, batch_size)
        batch_size = dist.local_batch_size(batch_size)
    train_loader = make_loader(
        store,
        train_idx,
        batch_size,
        shuffle=True,
        seed=cfg.train.seed,
        num_workers=cfg.train.num_workers,
        sampler=train_sampler,
    )
    dev_sampler = dist.eval_sampler(len(dev_idx)) if dist else None
    dev_loader = make_loader(
        store, dev_idx, cfg.train.eval_batch_size, num_workers=0, sampler=dev_sampler
    )
    meta = {
        "format": CHECKPOINT_FORMAT,
        "semloc_version": __version__,
        "config": config_to_dict(cfg),
        "model_name": cfg.model.name,
        "labels": labels,
        "dims": {
            "text_width": store.dims.text_width,
            "vision_width": store.dims.vision_width,
            "embed_dim": store.dims.embed_dim,
        },
        "feature_header": {k: store.manifest[k] for k in FINGERPRINT_KEYS},
        "feature_fingerprint": store.fingerprint,
        # where the features' CLIP was loaded from: predict/serve load it again from there
        "backbone_path": store.manifest.get("backbone_path"),
        "feature_manifest_sha256": store.manifest_sha256,
        "store_path": str(Path(store_path).resolve()),
        "num_params": num_params,
    }
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.yaml", config_to_yaml(cfg))
        atomic_write_json(
            out_dir / "run.json",
            {
                k: meta[k]
                for k in (
                    "model_name",
                    "labels",
                    "store_path",
                    "feature_fingerprint",
                    "feature_manifest_sha256",
                    "num_params",
                    "semloc_version",
                )
            }
            | {"train_posts": len(train_idx), "dev_posts": len(dev_idx)},
        )
        log.info(
            "training %s (%s parameters) on %d train / %d dev posts, %d classes",
            cfg.model.name,
            f"{num_params:,}",
            len(train_idx),
            len(dev_idx),
            len(labels),
        )
    trainer = Trainer(
        model,
        cfg.train,
        train_loader,
        dev_loader,
        labels,
        out_dir,
        checkpoint_meta=meta,
        class_counts=counts,
        dist=dist,
    )
    if resume:
        trainer.resume(last)
    result = trainer.fit()
    if is_main:
        atomic_write_json(
            out_dir / "metrics.json",
            {"split": "dev", "best_epoch": result.best_epoch, **result.best_metrics},
        )
        if result.history:
            from semloc.plots import plot_training_curves

            plot_training_curves(
                result.history,
                out_dir / "training_curves.png",
                title=f"{cfg.model.name} (seed {cfg.train.seed})",
            )
    return result


# ---------------------------------------------------------------------------------------------
# loading runs


@dataclass
class LoadedRun:
    model: nn.Module
    labels: list[str]
    config: Config
    meta: dict[str, Any]
    path: Path

    @property
    def feature_header(self) -> dict[str, Any]:
        return self.meta["feature_header"]


def resolve_checkpoint(run: str | Path) -> Path:
    run = Path(run)
    if run.is_file():
        return run
    for name in ("best.pt", "last.pt"):
        if (run / name).is_file():
            return run / name
    raise SemlocError(f"{run} is not a run directory (no best.pt) nor a checkpoint file")


def load_run(run: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a trained model from its checkpoint alone."""
    path = resolve_checkpoint(run)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say so, not a pickle traceback
        raise SemlocError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SemlocError(f"{path} is not a semloc checkpoint")
    cfg = config_from_dict(state["config"])
    d = state["dims"]
    model = build_model(
        cfg.model,
        FeatureDims(d["text_width"], d["vision_width"], d["embed_dim"]),
        len(state["labels"]),
    )
    model.load_state_dict(state["model_state"])
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if not k.endswith("_state")}
    return LoadedRun(
        model=model, labels=list(state["labels"]), config=cfg, meta=meta, path=path.parent
    )


def _open_store_for(run: LoadedRun, store_path: str | Path | None) -> FeatureStore:
    path = store_path or run.meta.get("store_path")
    if not path:
        raise SemlocError(f"run {run.path} records no feature store; pass --features STORE")
    store = FeatureStore(path)
    store.check_compatible(run.feature_header, what=f"the features run {run.path} was trained on")
    return store


def predict_store(
    run: LoadedRun,
    store: FeatureStore,
    indices: np.ndarray,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Predictions:
    loader = make_loader(store, indices, batch_size, label_map=label_map_for(store, run.labels))
    return predict(run.model, loader, device, progress=progress)


def evaluate_runs(
    runs: list[str | Path],
    split: str = "test",
    *,
    store_path: str | Path | None = None,
    out_name: str | None = None,
    plots: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate one or more runs (e.g. seeds) on a split; returns per-run metrics and mean ± std.

    Each run's results go to RUN/eval-SPLIT/. Posts whose label the model does not know are an
    error (listed), not silently skipped."""
    results = []
    for run_path in runs:
        run = load_run(run_path, device)
        store = _open_store_for(run, store_path)
        idx = _require_split(store, split, f"nothing to evaluate on '{split}'")
        idx = idx[np.array([store.raw_labels[i] is not None for i in idx], dtype=bool)]
        if idx.size == 0:
            raise SemlocError(f"the '{split}' posts of {store.root} carry no labels")
        store.check_labels(run.labels, idx, what=f"run {run.path}")
        preds = predict_store(run, store, idx, device=device)
        metrics = classification_metrics(preds.labels, preds.logits.argmax(1), run.labels)
        metrics.update(
            split=split,
            run=str(run.path),
            model=run.meta["model_name"],
            seed=run.config.train.seed,
            num_params=run.meta.get("num_params"),
        )
        out = run.path / (out_name or f"eval-{split}")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", metrics)
        if plots:
            from semloc.plots import plot_confusion, plot_per_class_f1

            title = f"{run.meta['model_name']} — {split}"
            plot_confusion(metrics["confusion_matrix"], run.labels, out / "confusion.png", title)
            plot_per_class_f1(metrics["per_class"], out / "per_class_f1.png", title)
        results.append(metrics)
    return {"split": split, "runs": results, "aggregate": aggregate(results)}
