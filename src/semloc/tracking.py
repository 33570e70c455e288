"""Experiment tracking: TensorBoard event files and MLflow runs in a local store, nothing uploaded.

    train.report_to=[tensorboard,mlflow]     # either or both; empty (the default) = neither
    train.tracking_dir=DIR                   # where they write; empty = the run directory

The trainer knows nothing of either: it calls the `TrainCallback` methods it is given
(`on_epoch_end` with the epoch's record, the same dict history.json holds), and `semloc.runs`
calls `on_train_begin` (resolved config) and `on_train_end` (final metrics and the run's files:
plots, metrics.json, history.json, the model card). One run directory is one tracked run; the
experiment runner names each cell's run after its grid coordinates and tags it with them.

Layout under the tracking directory:

    tensorboard/<run name>/   event files (`tensorboard --logdir DIR/tensorboard`)
    mlflow.db                 MLflow's SQLite store (`mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db`)
    mlartifacts/              MLflow's artifacts (config.yaml, metrics.json, plots, README.md)

The run directory's tracking.json remembers the MLflow run id, so `--resume` continues the same
MLflow run instead of starting a second one. TensorBoard and MLflow are optional dependencies
(`pip install 'semloc[tracking]'`); asking for one that is not installed is an error naming it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from semloc.errors import ConfigError, SemlocError
from semloc.io import atomic_write_json

log = logging.getLogger(__name__)

TRACKERS: tuple[str, ...] = ("tensorboard", "mlflow")
TRACKING_STATE = "tracking.json"


class TrainCallback(Protocol):
    """What the trainer and `train_run` call; every method may be a no-op."""

    def on_train_begin(self, config: Mapping[str, Any]) -> None: ...

    def on_epoch_end(self, record: Mapping[str, Any]) -> None: ...

    def on_train_end(self, metrics: Mapping[str, Any], artifacts: Sequence[Path]) -> None: ...

    def close(self, failed: bool = False) -> None: ...


@dataclass(frozen=True)
class TrackedRun:
    """How a run appears in the trackers: MLflow experiment, run name, tags (grid coordinates)."""

    experiment: str = "semloc"
    name: str | None = None  # default: the run directory's name
    tags: Mapping[str, Any] = field(default_factory=dict)


def scalar_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a metrics dict (nested dicts flattened with '/'); lists dropped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalar_metrics(value, f"{name}/"))
        elif (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(float(value))
        ):
            out[name] = float(value)
    return out


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`section.key` -> value as text, the shape MLflow params and TensorBoard hparams take."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return out


def _record_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in scalar_metrics(record).items() if k != "epoch"}


# ----------------------------------------------------------------------------------------------
# TensorBoard


class TensorBoardTracker:
    """Scalars per epoch (step = epoch), the config as text, final metrics, plots as images."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SemlocError(
                "train.report_to includes tensorboard, which is not installed: "
                "pip install 'semloc[tracking]'"
            ) from None
        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.last_epoch = 0

    def on_train_begin(self, config: Mapping[str, Any]) -> None:
        import yaml

        text = yaml.safe_dump(dict(config), sort_keys=False)
        # TensorBoard renders text as markdown: indent by four spaces to keep it verbatim
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        step = int(record["epoch"])
        for name, value in _record_metrics(record).items():
            self.writer.add_scalar(name, value, step)
        self.last_epoch = step
        self.writer.flush()

    def on_train_end(self, metrics: Mapping[str, Any], artifacts: Sequence[Path]) -> None:
        for name, value in scalar_metrics(metrics, "final/").items():
            self.writer.add_scalar(name, value, self.last_epoch)
        for path in artifacts:
            if path.suffix == ".png" and path.is_file():
                import numpy as np
                from PIL import Image

                with Image.open(path) as img:
                    pixels = np.asarray(img.convert("RGB"))
                self.writer.add_image(f"plots/{path.stem}", pixels, dataformats="HWC")
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()


# ----------------------------------------------------------------------------------------------
# MLflow


def mlflow_uri(tracking_dir: Path) -> str:
    """The local SQLite store MLflow writes (its file store is deprecated and refused by 3.x)."""
    return f"sqlite:///{(tracking_dir / 'mlflow.db').resolve()}"


class MlflowTracker:
    """One MLflow run per run directory, through an MlflowClient (no global MLflow state)."""

    def __init__(
        self,
        tracking_dir: Path,
        run_dir: Path,
        *,
        experiment: str,
        run_name: str,
        tags: Mapping[str, Any],
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise SemlocError(
                "train.report_to includes mlflow, which is not installed: "
                "pip install 'semloc[tracking]'"
            ) from None
        logging.getLogger("alembic").setLevel(logging.WARNING)  # schema creation chatter
        tracking_dir.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=mlflow_uri(tracking_dir))
        self.run_dir = run_dir
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            artifacts = (tracking_dir / "mlartifacts").resolve().as_uri()
            experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        self.run_id = self._resumable_run(experiment_id)
        if self.run_id is None:
            run = self.client.create_run(
                experiment_id,
                run_name=run_name,
                tags={k: str(v) for k, v in tags.items()} | {"semloc.run_dir": str(run_dir)},
            )
            self.run_id = run.info.run_id
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                run_dir / TRACKING_STATE,
                {"mlflow_run_id": self.run_id, "mlflow_tracking_uri": mlflow_uri(tracking_dir)},
            )
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def _resumable_run(self, experiment_id: str) -> str | None:
        state = self.run_dir / TRACKING_STATE
        if not state.is_file():
            return None
        run_id = json.loads(state.read_text()).get("mlflow_run_id")
        try:
            run = self.client.get_run(run_id)
        except Exception:  # another store, or the run was deleted: start a new one
            return None
        return run_id if run.info.experiment_id == experiment_id else None

    def on_train_begin(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, v[:6000]) for k, v in flatten_config(config).items()]
        logged = self.client.get_run(self.run_id).data.params
        params = [p for p in params if p.key not in logged]  # a resumed run keeps its params
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        import yaml

        self.client.log_text(
            self.run_id, yaml.safe_dump(dict(config), sort_keys=False), "config.yaml"
        )

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        step, now = int(record["epoch"]), _now_ms()
        metrics = [Metric(mlflow_key(k), v, now, step) for k, v in _record_metrics(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, metrics: Mapping[str, Any], artifacts: Sequence[Path]) -> None:
        self.log_final(metrics)
        for path in artifacts:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))

    def log_final(self, metrics: Mapping[str, Any], prefix: str = "final/") -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        values = [
            Metric(mlflow_key(k), v, now, 0) for k, v in scalar_metrics(metrics, prefix).items()
        ]
        self.client.log_batch(self.run_id, metrics=values)

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def mlflow_key(name: str) -> str:
    """`name` with the characters MLflow refuses in metric names (outside word characters and
    . - / : space) replaced by '_'; label names become part of per-class metric names."""
    return re.sub(r"[^\w.\-/ :]", "_", name)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


# ----------------------------------------------------------------------------------------------
# building them


def check_report_to(report_to: Sequence[str]) -> None:
    unknown = [name for name in report_to if name not in TRACKERS]
    if unknown:
        raise ConfigError(
            f"config key 'train.report_to': {', '.join(map(repr, unknown))} not one of "
            f"{', '.join(TRACKERS)}"
        )


def make_trackers(
    report_to: Sequence[str],
    run_dir: str | Path,
    *,
    tracking_dir: str | Path | None = None,
    run: TrackedRun | None = None,
) -> list[TrainCallback]:
    """The trackers `report_to` names, writing under `tracking_dir` (default: the run dir)."""
    check_report_to(report_to)
    run = run or TrackedRun()
    run_dir = Path(run_dir)
    where = Path(tracking_dir) if tracking_dir else run_dir
    name = run.name or run_dir.name
    trackers: list[TrainCallback] = []
    for kind in dict.fromkeys(report_to):  # each once, in the order given
        if kind == "tensorboard":
            trackers.append(TensorBoardTracker(where / "tensorboard" / name))
        else:
            trackers.append(
                MlflowTracker(
                    where, run_dir, experiment=run.experiment, run_name=name, tags=run.tags
                )
            )
    return trackers


def log_evaluation(
    report_to: Sequence[str],
    run_dir: str | Path,
    metrics: Mapping[str, Any],
    *,
    split: str,
    tracking_dir: str | Path | None = None,
    run: TrackedRun | None = None,
) -> None:
    """Add a split's evaluation metrics (prefix `SPLIT/`) to the run's tracked run: the one its
    training opened (continued through tracking.json), or a new one for a training-free cell."""
    for tracker in make_trackers(report_to, run_dir, tracking_dir=tracking_dir, run=run):
        try:
            if isinstance(tracker, MlflowTracker):
                tracker.log_final(metrics, prefix=f"{split}/")
            elif isinstance(tracker, TensorBoardTracker):
                for name, value in scalar_metrics(metrics, f"{split}/").items():
                    tracker.writer.add_scalar(name, value, 0)
        finally:
            tracker.close()
