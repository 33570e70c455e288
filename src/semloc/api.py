"""The Python API: the pipeline as functions and objects, and an estimator for notebooks.

Functions (each returns an object and raises a `SemlocError` subclass on bad input)::

    backbone = semloc.load_backbone("/models/clip-vit-base-patch32")
    store = semloc.extract(posts_df, "feats/", backbone=backbone)     # a path, DataFrame or dicts
    run = semloc.train(store, "runs/sgmft", model="sgmft", overrides=["train.epochs=10"])
    run.metrics["macro_f1"]                                          # dev metrics of the best epoch
    table = run.predict(new_posts_df)                                # a pandas DataFrame
    report = semloc.evaluate([run], split="test")

The estimator, in the spirit of AutoGluon's `MultiModalPredictor`::

    predictor = semloc.Predictor(backbone="/models/clip-vit-base-patch32", model="sgmft")
    predictor.fit(train_df, tuning_data=dev_df)    # features extracted once, cached by content
    predictor.predict(test_df)                     # pandas Series of predicted labels
    predictor.predict_proba(test_df)               # DataFrame: one column per class
    predictor.evaluate(test_df)                    # macro-F1, accuracy, ...
    predictor.save("my-predictor"); semloc.Predictor.load("my-predictor")

A predictor's saved form is an ordinary run directory: `semloc predict` and `semloc serve` take
it. The CLI verbs are shells over the same functions (`semloc.runs`, `semloc.prediction`,
`semloc.evaluation`, `semloc.clip.extract`), so the two never disagree.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semloc.config import Config, apply_overrides, config_from_dict, config_to_dict, load_config
from semloc.errors import ConfigError, SemlocError

ConfigLike = Config | Mapping[str, Any] | str | Path | None
PREDICTOR_FILE = "predictor.json"


def make_config(config: ConfigLike = None, overrides: Sequence[str] = ()) -> Config:
    """A `Config` from a Config, a nested dict, a YAML/JSON file or None (the defaults), with
    dotted overrides (``"train.lr=3e-4"``) applied last — the same rules as every CLI verb."""
    if config is None or isinstance(config, str | Path):
        return load_config(config, list(overrides))
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, Mapping):
        cfg = config_from_dict(dict(config))
    else:
        raise ConfigError(f"config must be a Config, a dict or a file path, not {type(config)}")
    return apply_overrides(cfg, list(overrides))


# ---------------------------------------------------------------------------------------------
# backbone and feature stores


def load_backbone(
    name_or_dir: str | Path, *, allow_network: bool = False, device: str = "cpu", bf16: bool = False
) -> Any:
    """A CLIP (weights, tokenizer, image processor) from a local directory, or a hub id when
    `allow_network`; see `semloc.clip.backbone.load_backbone`."""
    from semloc.clip.backbone import load_backbone as _load

    return _load(name_or_dir, allow_network=allow_network, device=device, bf16=bf16)


@dataclass
class Store:
    """A feature store on disk (see `semloc.features.store`), opened lazily."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._store: Any = None

    @property
    def features(self) -> Any:
        """The underlying `FeatureStore` (memory-mapped shards, manifest, post table)."""
        if self._store is None:
            from semloc.features.store import FeatureStore

            self._store = FeatureStore(self.path)
        return self._store

    @property
    def manifest(self) -> dict[str, Any]:
        return self.features.manifest

    @property
    def labels(self) -> list[str]:
        return list(self.features.labels)

    def __len__(self) -> int:
        return len(self.features)

    def split_sizes(self) -> dict[str, int]:
        return {s: int(self.features.indices(s).size) for s in ("train", "dev", "test")}

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"


def open_store(path: str | Path) -> Store:
    """An existing feature store; a directory that is not one is refused with the reason."""
    store = Store(Path(path))
    store.features  # noqa: B018 - opening checks the manifest now rather than at first use
    return store


def _posts_file_for(table: Any, path: Path) -> Path:
    """Write validated in-memory posts as a JSONL file extraction can read (image paths made
    absolute), so a store made from a DataFrame has a posts file behind it like any other."""
    from dataclasses import asdict

    from semloc.io import atomic_write_text

    lines = []
    for post in table.records:
        rec = {k: v for k, v in asdict(post).items() if k != "row" and v is not None}
        if post.image:
            rec["image"] = str(post.image_path(table.base_dir).resolve())
        if table.split_assigned:
            rec.pop("split", None)  # made by the seeded split: extraction makes the same one
        lines.append(json.dumps(rec, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


def extract(
    posts: Any,
    out: str | Path,
    *,
    backbone: Any = None,
    config: ConfigLike = None,
    overrides: Sequence[str] = (),
    base_dir: str | Path | None = None,
) -> Store:
    """Extract frozen CLIP features of `posts` (a posts file, a pandas DataFrame, a list of
    dicts) into the store `out`; resumable, and a finished store is returned as it is.

    `backbone`: a loaded backbone or a CLIP directory / hub id (default `extract.backbone` of the
    config). In-memory posts are validated like a file and written next to the store as
    `OUT.posts.jsonl` (the store's provenance records it)."""
    from semloc.clip.extract import extract_to_store
    from semloc.data.records import read_posts

    cfg = make_config(config, overrides)
    loaded = None
    if isinstance(backbone, str | Path):
        cfg.extract.backbone = str(backbone)
    elif backbone is not None:
        loaded, cfg.extract.backbone = backbone, str(backbone.path)
    if not cfg.extract.backbone:
        raise ConfigError("no backbone: pass backbone=DIR_OR_HUB_ID (or set extract.backbone)")
    out = Path(out)
    if not isinstance(posts, str | Path):
        table = read_posts(posts, data_cfg=cfg.data, base_dir=base_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        posts = _posts_file_for(table, out.with_name(out.name + ".posts.jsonl"))
    extract_to_store(posts, out, cfg.extract, data_cfg=cfg.data, backbone=loaded)
    return open_store(out)


# ---------------------------------------------------------------------------------------------
# runs


class Run:
    """A trained run directory: its model, labels, config and metrics, and what it can do."""

    def __init__(self, path: str | Path, *, device: str = "cpu", runtime: str = "torch") -> None:
        from semloc.runs import load_run as _load_run

        # runtime="onnx": the model of `semloc export` on onnxruntime (same predictions)
        self.loaded = _load_run(path, device, runtime=runtime)
        self.path = self.loaded.path
        self.device = device
        self._backbone: Any = None

    @property
    def labels(self) -> list[str]:
        return list(self.loaded.labels)

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def model_name(self) -> str:
        return str(self.loaded.meta["model_name"])

    @property
    def metrics(self) -> dict[str, Any]:
        """Dev-split metrics of the selected epoch (what the checkpoint was chosen on)."""
        return dict(self.loaded.meta.get("metrics") or {})

    @property
    def temperature(self) -> float:
        return self.loaded.temperature

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.model_name!r}, labels={self.labels})"

    def backbone(self, override: str | Path | None = None, *, allow_network: bool = False) -> Any:
        """The CLIP this run's features came from (checked against the checkpoint), cached."""
        if self._backbone is None or override:
            from semloc.prediction import load_run_backbone

            self._backbone = load_run_backbone(
                self.loaded,
                str(override) if override else None,
                self.device,
                allow_network=allow_network,
            )
        return self._backbone

    def predict(
        self,
        data: Any,
        *,
        base_dir: str | Path | None = None,
        backbone: str | Path | None = None,
        config: ConfigLike = None,
        overrides: Sequence[str] = (),
        batch_size: int = 256,
        progress: bool = False,
    ) -> Any:
        """Predictions as a pandas DataFrame, one row per post in input order: id,
        predicted_label, p_<class> (calibrated), similarity, gate, weight_text, weight_image
        (when the model has them), status and image_outcome, and label when the input has one.

        `data`: a posts file, a DataFrame, a list of dicts, or a `Store` (features already
        extracted with this run's CLIP)."""
        import pandas as pd

        from semloc.data.records import PostTable, read_posts
        from semloc.prediction import (
            predict_posts,
            predict_store,
            store_prediction_columns,
        )

        if isinstance(data, Store):
            preds = predict_store(
                self.loaded, data.features, batch_size=batch_size, device=self.device
            )
            return pd.DataFrame(store_prediction_columns(self.loaded, data.features, preds))
        cfg = make_config(config, overrides)
        table = (
            data
            if isinstance(data, PostTable)
            else read_posts(data, data_cfg=cfg.data, base_dir=base_dir)
        )
        result = predict_posts(
            self.loaded,
            table,
            backbone=self.backbone(backbone, allow_network=cfg.extract.allow_network),
            extract_cfg=cfg.extract,
            batch_size=batch_size,
            device=self.device,
            progress=progress,
        )
        return result.to_frame()

    def predict_proba(self, data: Any, **kwargs: Any) -> Any:
        """Class probabilities (calibrated), a DataFrame indexed by post id, one column per class;
        a post the image policy skipped has a row of NaN."""
        table = self.predict(data, **kwargs)
        probs = table[[f"p_{lab}" for lab in self.labels]].astype(float)
        probs.columns = self.labels
        probs.index = table["id"].rename("id")
        return probs

    def evaluate(self, split: str = "test", *, store: str | Path | Store | None = None) -> dict:
        """Metrics on a split of the run's store (or `store`), written to RUN/eval-SPLIT/."""
        report = evaluate([self], split, store=store)
        return report["runs"][0]


def train(
    store: str | Path | Store,
    out: str | Path,
    *,
    model: str | None = None,
    config: ConfigLike = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
) -> Run:
    """Train a model on a store's train split (selection on dev; test is never read) into the
    run directory `out`, and return the run. `model` sets `model.name`."""
    from semloc.runs import train_run

    cfg = make_config(config, overrides)
    if model is not None:
        cfg.model.name = model
    path = store.path if isinstance(store, Store) else Path(store)
    train_run(path, cfg, out, resume=resume, overwrite=overwrite)
    return Run(out)


def load_run(path: str | Path, *, device: str = "cpu", runtime: str = "torch") -> Run:
    """A trained run directory (or checkpoint file); runtime="onnx" runs its ONNX export."""
    return Run(path, device=device, runtime=runtime)


def evaluate(
    runs: Sequence[str | Path | Run] | str | Path | Run,
    split: str = "test",
    *,
    store: str | Path | Store | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Evaluate runs on a split of their store: per-run metrics and mean ± std over runs."""
    from semloc.evaluation import evaluate_runs

    if isinstance(runs, str | Path | Run):
        runs = [runs]
    paths = [r.path if isinstance(r, Run) else Path(r) for r in runs]
    store_path = store.path if isinstance(store, Store) else store
    return evaluate_runs(paths, split, store_path=store_path, plots=plots)


def predict(run: str | Path | Run, data: Any, **kwargs: Any) -> Any:
    """`Run.predict` for a run given by its path: a DataFrame of predictions."""
    return (run if isinstance(run, Run) else Run(run)).predict(data, **kwargs)


# ---------------------------------------------------------------------------------------------
# the estimator


def _content_key(posts_file: Path, cfg: Config) -> str:
    """What a cached store depends on: the posts (and each image's size and mtime), the CLIP
    and the extraction and split settings."""
    data = posts_file.read_bytes()
    h = hashlib.sha256(data)
    for line in data.decode("utf-8").splitlines():
        image = json.loads(line).get("image")
        if image:
            try:
                st = Path(image).stat()
                h.update(f"{image}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{image}:missing".encode())
    settings = {"extract": config_to_dict(cfg.extract), "data": config_to_dict(cfg.data)}
    for volatile in ("progress", "num_workers", "engine", "ray_address", "ray_decode"):
        settings["extract"].pop(volatile, None)
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


class Predictor:
    """Fit / predict / evaluate / save / load over frozen CLIP features, with semloc's trainer.

    `backbone`: a CLIP directory (or hub id with `allow_network=True`); `model`: any of
    `semloc.models.MODEL_NAMES`; `path`: the run directory to train into (default
    ``semloc-runs/MODEL-TIMESTAMP``); `cache_dir`: where extracted features are cached by
    content (default ``PATH/../.semloc-cache``); `config` and `overrides` as for every verb."""

    def __init__(
        self,
        backbone: str | Path | None = None,
        model: str = "sgmft",
        *,
        path: str | Path | None = None,
        config: ConfigLike = None,
        overrides: Sequence[str] = (),
        cache_dir: str | Path | None = None,
        allow_network: bool = False,
        device: str = "cpu",
    ) -> None:
        self.config = make_config(config, overrides)
        self.config.model.name = model
        if backbone is not None:
            self.config.extract.backbone = str(backbone)
        self.config.extract.allow_network = allow_network
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = Path(path) if path is not None else Path("semloc-runs") / f"{model}-{stamp}"
        self.cache_dir = Path(cache_dir) if cache_dir else self.path.parent / ".semloc-cache"
        self.device = device
        self._run: Run | None = None

    @property
    def run(self) -> Run:
        if self._run is None:
            raise SemlocError("this Predictor is not fitted yet: call fit() or Predictor.load()")
        return self._run

    @property
    def labels(self) -> list[str]:
        return self.run.labels

    def _training_table(self, train_data: Any, tuning_data: Any, base_dir: Any) -> Any:
        from semloc.config import DataConfig
        from semloc.data.records import assign_splits, read_posts

        data_cfg = self.config.data
        train = read_posts(train_data, require_labels=True, data_cfg=data_cfg, base_dir=base_dir)
        if tuning_data is not None:
            tune = read_posts(
                tuning_data, require_labels=True, data_cfg=data_cfg, base_dir=base_dir
            )
            seen = {p.id for p in train.records}
            clash = [p.id for p in tune.records if p.id in seen]
            if clash:
                raise SemlocError(
                    f"{len(clash)} post id(s) are in both train_data and tuning_data, e.g. "
                    f"{clash[0]!r}; a post cannot be trained on and selected on"
                )
            for p in train.records:
                p.split = "train"
            for p in tune.records:
                p.split = "dev"
                if p.image:  # relative to the tuning data's own base directory
                    p.image = str(p.image_path(tune.base_dir).resolve())
            train.records += tune.records
        else:
            given = {p.split for p in train.records}
            if train.split_assigned or "dev" not in given:
                # no tuning data: a seeded stratified dev split of train_data (no test split)
                assign_splits(
                    train.records,
                    DataConfig(
                        dev_fraction=data_cfg.dev_fraction or 0.1,
                        test_fraction=0.0,
                        split_seed=data_cfg.split_seed,
                    ),
                )
        train.split_assigned = False
        return train

    def fit(
        self,
        train_data: Any,
        tuning_data: Any = None,
        *,
        base_dir: str | Path | None = None,
        overwrite: bool = False,
    ) -> Predictor:
        """Extract features (cached by content: a second fit on the same posts and CLIP
        extracts nothing), then train with selection on `tuning_data` (or a seeded dev split
        of `train_data`). Returns self."""
        if not self.config.extract.backbone:
            raise ConfigError("Predictor needs a backbone: Predictor(backbone=CLIP_DIR, ...)")
        table = self._training_table(train_data, tuning_data, base_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = self.cache_dir / f".posts-{time.time_ns()}.jsonl"
        _posts_file_for(table, staging)
        key = _content_key(staging, self.config)
        posts_file = self.cache_dir / f"posts-{key}.jsonl"
        staging.replace(posts_file)
        store = extract(posts_file, self.cache_dir / f"store-{key}", config=self.config)
        self._run = train(store, self.path, config=self.config, overwrite=overwrite)
        self._run.device = self.device
        self._write_predictor_file(self.path)
        return self

    def _write_predictor_file(self, path: Path) -> None:
        from semloc.io import atomic_write_json

        atomic_write_json(
            path / PREDICTOR_FILE,
            {
                "backbone": self.config.extract.backbone,
                "model": self.config.model.name,
                "labels": self.labels,
            },
        )

    def predict_table(self, data: Any, **kwargs: Any) -> Any:
        """The full predictions DataFrame (see `Run.predict`)."""
        return self.run.predict(data, config=self.config, **kwargs)

    def predict(self, data: Any, **kwargs: Any) -> Any:
        """Predicted labels, a pandas Series indexed by post id (None for a skipped post)."""
        table = self.predict_table(data, **kwargs)
        return table.set_index("id")["predicted_label"]

    def predict_proba(self, data: Any, **kwargs: Any) -> Any:
        """Calibrated class probabilities, a DataFrame indexed by post id."""
        return self.run.predict_proba(data, config=self.config, **kwargs)

    def evaluate(self, data: Any, **kwargs: Any) -> dict[str, Any]:
        """Metrics (macro_f1, accuracy, weighted_f1, per class, confusion matrix) on labelled
        posts; a label the model does not know is an error naming the post."""
        from semloc.data.records import read_posts
        from semloc.metrics import classification_metrics

        table = read_posts(
            data,
            require_labels=True,
            labels=self.labels,
            data_cfg=self.config.data,
            base_dir=kwargs.pop("base_dir", None),
        )
        frame = self.predict_table(table, **kwargs)
        kept = frame["predicted_label"].notna()
        index = {lab: i for i, lab in enumerate(self.labels)}
        gold = [index[x] for x in frame.loc[kept, "label"]]
        pred = [index[x] for x in frame.loc[kept, "predicted_label"]]
        metrics = classification_metrics(gold, pred, self.labels)
        metrics["num_skipped"] = int((~kept).sum())
        return metrics

    def save(self, path: str | Path) -> Path:
        """Copy the run directory to `path` (an ordinary run directory) and return it."""
        path = Path(path)
        if path.resolve() != self.run.path.resolve():
            if path.exists():
                raise SemlocError(f"{path} already exists; save to a new directory")
            shutil.copytree(self.run.path, path)
        self._write_predictor_file(path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> Predictor:
        """A predictor from a directory written by `save` (or any run directory)."""
        run = Run(path, device=device)
        predictor = cls(
            backbone=run.config.extract.backbone or None,
            model=run.model_name,
            path=run.path,
            config=run.config,
            device=device,
        )
        predictor.config.model.name = run.model_name
        predictor._run = run
        return predictor

    def __repr__(self) -> str:
        state = f"fitted, {len(self.labels)} labels" if self._run else "not fitted"
        return f"Predictor(model={self.config.model.name!r}, path={str(self.path)!r}, {state})"


__all__ = [
    "Predictor",
    "Run",
    "Store",
    "evaluate",
    "extract",
    "load_backbone",
    "load_run",
    "make_config",
    "open_store",
    "predict",
    "train",
]
