"""Compose store + model + trainer into runs: train, load, evaluate, predict.

A *run directory* holds everything about one trained model::

    config.yaml      the resolved config (every default filled in)
    run.json         the feature store it was trained on, its fingerprint, parameter count
    best.pt          the checkpoint selected on dev macro-F1 (self-describing: see below)
    last.pt          the latest epoch with optimizer state, for --resume
    history.json     per-epoch losses and dev metrics; training_curves.png
    metrics.json     dev metrics of the best epoch
    calibration.json the temperature fitted on dev after training, ECE/Brier before and after,
                     the dev confusion the adjusted prevalence estimators use; reliability.png
    README.md        the model card (semloc.model_card): data, labels, metrics, use and limits
    tensorboard/, mlflow.db, tracking.json   with train.report_to (semloc.tracking)
    eval-SPLIT/      written by evaluate: metrics.json, confusion.png, per_class_f1.png,
                     reliability.png

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
from semloc.clip.families import backbone_gate, similarity_of_header
from semloc.config import (
    Config,
    ModelConfig,
    check_device_available,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    flatten_dict,
    resolve_device,
    validate_config,
)
from semloc.errors import SemlocError
from semloc.features.batch import FeatureDims
from semloc.features.loader import make_loader
from semloc.features.store import FINGERPRINT_KEYS, FeatureStore
from semloc.io import (
    atomic_write_json,
    atomic_write_text,
    output_dir,
    remove_stale_temporaries,
)
from semloc.models import build_model
from semloc.tracking import TRACKING_STATE, TrackedRun, check_report_to, make_trackers
from semloc.training.trainer import Trainer, TrainResult, seed_everything

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


def fill_gate_init(model: ModelConfig, store: FeatureStore, train_idx: np.ndarray) -> None:
    """Fill SG-MFT's data-dependent settings in place: similarity_std (the train split's std of
    the pair cosine) and the gate's start. gate_init=data: b = the train-split median (also the
    centre s is standardised around). gate_init=backbone: k, b from the similarity the store's
    header records (`clip.families.backbone_gate`), so a starts as the backbone's own pair
    probability, and the median goes to similarity_center."""
    backbone = model.gate_init == "backbone"
    if model.gate_bias_init is not None and model.similarity_std is not None and not backbone:
        return
    median, std = pair_cosine_stats(store, train_idx)
    if model.similarity_std is None:
        model.similarity_std = round(std, 6)
    if backbone:
        similarity = similarity_of_header(store.manifest)
        model.gate_scale_init, model.gate_bias_init = backbone_gate(
            similarity, model.similarity_std
        )
        if model.similarity_center is None:
            model.similarity_center = round(median, 6)
    elif model.gate_bias_init is None:
        model.gate_bias_init = round(median, 6)


def require_split(store: FeatureStore, split: str, why: str) -> np.ndarray:
    idx = store.indices(split)
    if idx.size == 0:
        raise SemlocError(f"feature store {store.root} has no '{split}' posts; {why}")
    return idx


RUN_FILES = [
    "best.pt",
    "last.pt",
    "history.json",
    "metrics.json",
    "run.json",
    "config.yaml",
    "training_curves.png",
    "README.md",
    "calibration.json",
    "reliability.png",
    TRACKING_STATE,
]
# settings a resumed run may change: where and how fast it runs, never what it computes
_RESUMABLE_KEYS = {
    "train.device",
    "train.num_workers",
    "train.progress",
    "train.eval_batch_size",
    "train.num_threads",
    "train.report_to",
    "train.tracking_dir",
}


def read_resume_checkpoint(path: Path) -> dict[str, Any]:
    """last.pt as a dict with what --resume needs, or SemlocError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, empty, or not a torch file: say so, not an OSError
        raise SemlocError(
            f"cannot resume from {path}: it is damaged or truncated ({type(e).__name__}: {e}); "
            "start over with --overwrite"
        ) from None
    need = ("config", "model_state", "optimizer_state", "scheduler_state", "epoch", "history")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SemlocError(f"cannot resume from {path}: it is not a semloc checkpoint")
    missing = [k for k in need if k not in state]
    if missing:
        raise SemlocError(f"cannot resume from {path}: it lacks {', '.join(missing)}")
    return state


def resume_config_changes(saved: Config, wanted: Config) -> list[str]:
    """'key: run has X, asked Y' for every setting that differs (resume-neutral keys aside)."""
    a, b = flatten_dict(config_to_dict(saved)), flatten_dict(config_to_dict(wanted))
    return [
        f"{k}: run has {a.get(k)!r}, asked {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and k not in _RESUMABLE_KEYS and k not in _data_filled_keys(b)
    ]


# the SG-MFT settings `fill_gate_init` fills from the train split when left unset, and those it
# sets from the store's header with model.gate_init=backbone
DATA_FILLED_MODEL_KEYS = ("gate_bias_init", "similarity_center")
BACKBONE_FILLED_MODEL_KEYS = ("gate_scale_init", "gate_bias_init")


def _data_filled_keys(flat_model: dict[str, Any], prefix: str = "model.") -> set[str]:
    """The SG-MFT settings the training command fills from the data (or the store's header)
    because the asked config leaves them to it; runs differing only in these are the same ask."""
    keys = {f"{prefix}{k}" for k in DATA_FILLED_MODEL_KEYS
            if flat_model.get(f"{prefix}{k}") is None}  # fmt: skip
    if flat_model.get(f"{prefix}gate_init") == "backbone":
        keys |= {f"{prefix}{k}" for k in BACKBONE_FILLED_MODEL_KEYS}
    return keys


def train_run(
    store_path: str | Path,
    cfg: Config | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    dist: Any = None,
    tracked: TrackedRun | None = None,
) -> TrainResult:
    """Train `cfg.model` on the train split of a store, selecting on dev.

    With `cfg.train.report_to`, the run is tracked (semloc.tracking); `tracked` names it (MLflow
    experiment, run name, tags). The model card RUN/README.md is written when training ends.

    resume: continue RUN/last.pt with the run's own config; `cfg` may be None then, and when
    given it must not change what the run computes (only where and how fast it runs:
    train.device, num_workers, progress, eval_batch_size).
    A run stopped before its first last.pt starts over on a plain re-run."""
    out_dir = Path(out_dir)
    is_main = dist is None or dist.is_main
    if out_dir.exists() and not out_dir.is_dir():
        raise SemlocError(f"run directory {out_dir} is an existing file, not a directory")
    if is_main:
        remove_stale_temporaries(out_dir, RUN_FILES)  # a kill mid-write leaves .NAME.*.tmp
    last = out_dir / "last.pt"
    if resume:
        if not last.exists():
            if (out_dir / "best.pt").exists():
                raise SemlocError(
                    f"cannot resume: {out_dir} has best.pt but no last.pt (it was stopped during "
                    "its first epoch); run the same command without --resume to start it over"
                )
            raise SemlocError(f"cannot resume: {last} does not exist")
        saved = read_resume_checkpoint(last)
        saved_cfg = saved_config(saved)
        if cfg is not None:
            changed = resume_config_changes(saved_cfg, cfg)
            if changed:
                raise SemlocError(
                    f"--resume continues {out_dir} with the config it was started with; these "
                    "settings differ: " + "; ".join(changed) + ". Drop them, or start a new run "
                    "(another --out, or --overwrite)"
                )
            # settings that do not change results (device, workers, progress) may differ
            for key in _RESUMABLE_KEYS:
                name = key.removeprefix("train.")
                setattr(saved_cfg.train, name, getattr(cfg.train, name))
        cfg = saved_cfg  # the run continues with its own config
        store_path = saved.get("store_path", store_path)
    elif last.exists():
        if not overwrite:
            raise SemlocError(
                f"{out_dir} already holds a run; use --resume to continue it, --overwrite to "
                "replace it, or another --out"
            )
        if is_main:
            for name in ("best.pt", "last.pt", "history.json", "metrics.json", "README.md"):
                (out_dir / name).unlink(missing_ok=True)
            (out_dir / TRACKING_STATE).unlink(missing_ok=True)  # a new run is a new tracked run
    elif (out_dir / "best.pt").exists() and is_main:
        # stopped between the first best.pt and the first last.pt: nothing resumable was
        # written, so this run starts over (one epoch of work is all that is lost)
        log.warning("%s holds no last.pt (stopped during its first epoch): starting over", out_dir)
        for name in ("best.pt", "history.json", "metrics.json"):
            (out_dir / name).unlink(missing_ok=True)
    if cfg is None:
        raise SemlocError("train_run needs a config (or resume=True to use the run's own)")
    validate_config(cfg)
    check_device_available(cfg.train.device, "train.device")
    check_report_to(cfg.train.report_to)
    store = FeatureStore(store_path)
    if resume:
        store.check_compatible(saved["feature_header"], what=f"the run in {out_dir}")
    labels = store.labels
    records = store.manifest.get("extraction", {}).get("records", {})
    label_column = records.get("label_column", "label")
    if len(labels) < 2:
        raise SemlocError(
            f"feature store {store.root} has {len(labels)} label(s); need at least 2. The posts "
            f"were read with their labels in column {label_column!r}"
            + (
                f" (columns ignored then: {', '.join(records['ignored_columns'])}); set "
                "data.label_column=COLUMN when extracting"
                if records.get("ignored_columns")
                else ""
            )
        )
    train_all = require_split(store, "train", "training needs labelled train posts")
    dev_all = require_split(store, "dev", "model selection needs a dev split (never test)")
    train_idx = train_all[store.label_codes[train_all] >= 0]
    dev_idx = dev_all[store.label_codes[dev_all] >= 0]
    unlabelled = {"train": len(train_all) - len(train_idx), "dev": len(dev_all) - len(dev_idx)}
    for split, n in unlabelled.items():
        if n and is_main:
            log.warning(
                "%d of %d %s posts have no label (column %r) and are left out of training%s",
                n,
                n + len(train_idx if split == "train" else dev_idx),
                split,
                label_column,
                "" if split == "train" else " and model selection",
            )
    without_text = records.get("empty_text")
    if is_main and without_text is not None and without_text == records.get("posts"):
        log.warning(
            "none of the %d posts of %s has text (column %r); the model sees images only. "
            "If the texts are in another column, re-extract with data.text_column=COLUMN",
            without_text,
            store.root,
            records.get("text_column", "text"),
        )
    if train_idx.size == 0 or dev_idx.size == 0:
        empty = "train" if train_idx.size == 0 else "dev"
        raise SemlocError(
            f"none of the {empty} posts of {store.root} has a label (column {label_column!r})"
        )
    if cfg.model.name == "sgmft":
        fill_gate_init(cfg.model, store, train_idx)
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
        output_dir(out_dir, "run directory")
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
            | {
                "train_posts": len(train_idx),
                "dev_posts": len(dev_idx),
                # posts of those splits without a label: not trained on, said in the log too
                "train_posts_unlabelled": unlabelled["train"],
                "dev_posts_unlabelled": unlabelled["dev"],
                # what reading the posts found at extraction (empty texts, labels, columns)
                "store_records": records,
            },
        )
        log.info(
            "training %s (%s parameters) on %d train / %d dev posts, %d classes",
            cfg.model.name,
            f"{num_params:,}",
            len(train_idx),
            len(dev_idx),
            len(labels),
        )
    trackers = []
    if is_main and cfg.train.report_to:
        trackers = make_trackers(
            cfg.train.report_to, out_dir, tracking_dir=cfg.train.tracking_dir, run=tracked
        )
    failed = True
    try:
        for tracker in trackers:
            tracker.on_train_begin(config_to_dict(cfg))
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
            callbacks=trackers,
        )
        if resume:
            trainer.resume(last)
        result = trainer.fit()
        if is_main:
            _finish_run(out_dir, cfg, result, trainer.meta, trackers, store)
        failed = False
    finally:
        for tracker in trackers:
            tracker.close(failed=failed)
    return result


def _finish_run(
    out_dir: Path,
    cfg: Config,
    result: TrainResult,
    meta: dict[str, Any],
    trackers: list[Any],
    store: FeatureStore,
) -> None:
    """metrics.json, the training curves, the dev-fitted temperature, the model card; then hand
    them to the trackers."""
    from semloc.model_card import write_model_card

    metrics = {"split": "dev", "best_epoch": result.best_epoch, **result.best_metrics}
    atomic_write_json(out_dir / "metrics.json", metrics)
    files = [out_dir / "metrics.json", out_dir / "history.json", out_dir / "config.yaml"]
    if result.history:
        from semloc.plots import plot_training_curves

        files.append(
            plot_training_curves(
                result.history,
                out_dir / "training_curves.png",
                title=f"{cfg.model.name} (seed {cfg.train.seed})",
            )
        )
    if (out_dir / "best.pt").exists():
        summary = calibrate_run(out_dir, store, device=cfg.train.device)
        meta = {**meta, "temperature": summary["temperature"]}
        files += [out_dir / "calibration.json", out_dir / "reliability.png"]
    files.append(write_model_card(out_dir, meta))
    final = {k: v for k, v in metrics.items() if k != "split"}
    for tracker in trackers:
        tracker.on_train_end(final, files)


def calibrate_run(
    run_dir: str | Path, store: FeatureStore | None = None, *, device: str = "auto"
) -> dict[str, Any]:
    """Fit the run's temperature on the dev split (never test) and store it in best.pt
    (key ``temperature``) and calibration.json; also draws the dev reliability diagram.
    Safe to call again (on an older run, say): the result depends only on best.pt and dev."""
    from semloc.calibration import calibration_summary, plot_reliability
    from semloc.evaluation import open_run_store
    from semloc.prediction import predict_store
    from semloc.training.trainer import save_checkpoint

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    store = store or open_run_store(run, None)
    dev_idx = require_split(store, "dev", "the temperature is fitted on dev (never test)")
    dev_idx = dev_idx[store.label_codes[dev_idx] >= 0]
    preds = predict_store(run, store, dev_idx, device=resolve_device(device, "train.device"))
    run.model.to("cpu")
    known = preds.labels >= 0
    summary = calibration_summary(preds.logits[known], preds.labels[known], run.labels)
    best = run_dir / "best.pt"
    state = torch.load(best, map_location="cpu", weights_only=True)
    state["temperature"] = summary["temperature"]
    save_checkpoint(best, state)
    atomic_write_json(run_dir / "calibration.json", summary)
    plot_reliability(
        summary["before"],
        summary["after"],
        run_dir / "reliability.png",
        f"{run.meta['model_name']} — dev (temperature fitted here)",
    )
    log.info(
        "temperature %.3f on %d dev posts: ECE %.4f -> %.4f, Brier %.4f -> %.4f",
        summary["temperature"],
        summary["num_posts"],
        summary["before"]["ece"],
        summary["after"]["ece"],
        summary["before"]["brier"],
        summary["after"]["brier"],
    )
    return summary


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

    @property
    def temperature(self) -> float:
        """The calibration temperature learned on dev (1.0: uncalibrated)."""
        return float(self.meta.get("temperature", 1.0))


def resolve_checkpoint(run: str | Path) -> Path:
    run = Path(run)
    if run.is_file():
        return run
    for name in ("best.pt", "last.pt"):
        if (run / name).is_file():
            return run / name
    raise SemlocError(f"{run} is not a run directory (no best.pt) nor a checkpoint file")


RUNTIMES = ("torch", "onnx")


# model settings added after checkpoints were first written, with the value that reproduces
# what those checkpoints were trained with (the first SG-MFT reconstruction)
LEGACY_MODEL_SETTINGS = {
    "fusion_gate": False,
    "similarity_prior": False,
    "pooled_embeddings": False,
    "similarity_std": 1.0,
    "unimodal_supervision": 0.0,
    "text_fallback": False,
}


def saved_config(state: dict[str, Any]) -> Config:
    """The config a checkpoint was trained with. A checkpoint written before a model setting
    existed was trained without it: the setting takes its legacy value, so the same model is
    rebuilt."""
    saved = dict(state["config"])
    saved["model"] = {**LEGACY_MODEL_SETTINGS, **(saved.get("model") or {})}
    return config_from_dict(saved)


def load_run(
    run: str | Path, device: str | torch.device = "cpu", *, runtime: str = "torch"
) -> LoadedRun:
    """Rebuild a trained model from its checkpoint alone.

    runtime="onnx": the model of `semloc export RUN --format onnx` on onnxruntime instead
    (`run` is the export directory, or a run directory holding one in onnx/); its `model` has the
    prediction interface of the PyTorch models (semloc.onnx_runtime.OnnxModel)."""
    if runtime not in RUNTIMES:
        raise SemlocError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    if runtime == "onnx":
        return _load_onnx_run(Path(run), device)
    path = resolve_checkpoint(run)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say so, not a pickle traceback
        raise SemlocError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SemlocError(f"{path} is not a semloc checkpoint")
    cfg = saved_config(state)
    d = state["dims"]
    model = build_model(
        cfg.model,
        FeatureDims(d["text_width"], d["vision_width"], d["embed_dim"]),
        len(state["labels"]),
    )
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as e:  # weights of another architecture or version
        first = str(e).splitlines()[0]
        raise SemlocError(
            f"{path}: its weights do not fit the model its config describes ({first}); it was "
            f"written by semloc {state.get('semloc_version', '?')} — retrain the run"
        ) from None
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if not k.endswith("_state")}
    return LoadedRun(
        model=model, labels=list(state["labels"]), config=cfg, meta=meta, path=path.parent
    )


def _load_onnx_run(run: Path, device: str | torch.device) -> LoadedRun:
    from semloc.onnx_runtime import MANIFEST, load_export

    export_dir = run if (run / MANIFEST).is_file() else run / "onnx"
    if not (export_dir / MANIFEST).is_file():
        raise SemlocError(
            f"{run} holds no ONNX export (no {MANIFEST} in it or in {run / 'onnx'}); "
            f"write one with: semloc export {run} --format onnx"
        )
    exported = load_export(export_dir)
    exported.model.to(device)
    # evaluations go into the run directory given, or into the export directory given
    path = run if export_dir != run else export_dir
    return LoadedRun(
        model=exported.model,  # type: ignore[arg-type]
        labels=exported.labels,
        config=config_from_dict(exported.meta["config"]),
        meta=exported.meta,
        path=path,
    )
