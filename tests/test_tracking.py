"""train.report_to: the TensorBoard events and the MLflow run hold the numbers the run reports
(history.json, metrics.json), its config and its files; the experiment runner tracks each cell
with its grid coordinates. And the model card every run writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from semloc.cli import main
from semloc.config import load_config
from semloc.errors import ConfigError
from semloc.evaluation import evaluate_runs
from semloc.features.synthetic import make_random_store
from semloc.runs import train_run

FAST = [
    "model.dim=16",
    "model.num_heads=2",
    "model.sim_layers=1",
    "train.progress=false",
    "train.epochs=2",
    "train.patience=0",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_random_store(tmp_path_factory.mktemp("s") / "store", 100, num_classes=3, signal=0.8)


def mlflow_client(tracking_dir: Path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from semloc.tracking import mlflow_uri

    return MlflowClient(tracking_uri=mlflow_uri(tracking_dir))


def tensorboard_scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]} | {
        "_images": acc.Tags()["images"],
        "_text": acc.Tags().get("tensors", []),
    }


@pytest.fixture(scope="module")
def tracked_run(store, tmp_path_factory):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    run = tmp_path_factory.mktemp("tracked") / "run"
    code = main(
        ["train", str(store.root), "--out", str(run), *FAST, "train.report_to=[tensorboard,mlflow]"]
    )
    assert code == 0
    return run


def test_tensorboard_holds_the_history(tracked_run):
    history = json.loads((tracked_run / "history.json").read_text())
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    scalars = tensorboard_scalars(tracked_run / "tensorboard" / "run")
    for key in ("train_loss", "dev_loss", "dev_macro_f1", "dev_accuracy", "lr"):
        assert scalars[key] == {h["epoch"]: pytest.approx(h[key], rel=1e-6) for h in history}
    assert scalars["final/macro_f1"][len(history)] == pytest.approx(metrics["macro_f1"])
    assert scalars["final/best_epoch"][len(history)] == metrics["best_epoch"]
    assert "plots/training_curves" in scalars["_images"]


def test_mlflow_holds_the_run(tracked_run):
    client = mlflow_client(tracked_run)
    history = json.loads((tracked_run / "history.json").read_text())
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    run_id = json.loads((tracked_run / "tracking.json").read_text())["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run"
    steps = client.get_metric_history(run_id, "dev_macro_f1")
    assert {m.step: m.value for m in steps} == {
        h["epoch"]: pytest.approx(h["dev_macro_f1"]) for h in history
    }
    assert run.data.metrics["final/macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert run.data.metrics["final/best_epoch"] == metrics["best_epoch"]
    assert run.data.params["model.dim"] == "16"
    assert run.data.params["train.report_to"] == '["tensorboard", "mlflow"]'
    files = {f.path for f in client.list_artifacts(run_id)}
    assert {
        "config.yaml",
        "metrics.json",
        "history.json",
        "training_curves.png",
        "README.md",
    } <= files
    logged = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml")).read_text())
    assert logged == yaml.safe_load((tracked_run / "config.yaml").read_text())


def test_evaluation_and_resume_continue_the_same_mlflow_run(store, tmp_path):
    pytest.importorskip("mlflow")
    cfg = load_config(None, [*FAST, "train.epochs=1", "train.report_to=[mlflow]"])
    cfg.train.tracking_dir = str(tmp_path / "tracking")
    run = tmp_path / "run"
    train_run(store.root, cfg, run)
    first = json.loads((run / "tracking.json").read_text())["mlflow_run_id"]
    # resume to 2 epochs: the same MLflow run gets epoch 2
    saved = load_config(run / "config.yaml")
    saved.train.epochs = 2
    from semloc.config import config_to_yaml

    (run / "config.yaml").write_text(config_to_yaml(saved))
    import torch

    last = torch.load(run / "last.pt", weights_only=True)
    last["config"]["train"]["epochs"] = 2
    torch.save(last, run / "last.pt")
    train_run(store.root, None, run, resume=True)  # the run's own config (tracking included)
    assert json.loads((run / "tracking.json").read_text())["mlflow_run_id"] == first
    client = mlflow_client(tmp_path / "tracking")
    steps = [m.step for m in client.get_metric_history(first, "train_loss")]
    assert steps == [1, 2]
    assert not (run / "mlflow.db").exists()  # tracking_dir, not the run dir


def test_experiment_cells_are_tracked_with_their_coordinates(store, tmp_path):
    pytest.importorskip("mlflow")
    from semloc.experiment import run_grid

    grid = {
        "name": "tracked-grid",
        "store": str(store.root),
        "seeds": [0, 1],
        "overrides": [*FAST, "train.epochs=1", "train.report_to=[mlflow]"],
        "models": ["text_linear", {"name": "probe", "kind": "linear_probe", "Cs": [1.0]}],
    }
    out = tmp_path / "grid"
    results = run_grid(grid, out, plots=False)
    client = mlflow_client(out)
    experiment = client.get_experiment_by_name("tracked-grid")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {
        f"{store.root.name}/text_linear/seed-0",
        f"{store.root.name}/text_linear/seed-1",
        f"{store.root.name}/probe/run",
    }
    for cell in results.cells:
        name = f"{cell['store']}/{cell['model']}/" + (
            f"seed-{cell['seed']}" if cell.get("seed") is not None else "run"
        )
        tracked = by_name[name]
        assert tracked.data.tags["model"] == cell["model"]
        assert tracked.data.tags["store"] == cell["store"]
        assert tracked.data.metrics["test/macro_f1"] == pytest.approx(cell["macro_f1"])
        if cell.get("seed") is not None:
            assert tracked.data.tags["seed"] == str(cell["seed"])
            assert "dev_macro_f1" in tracked.data.metrics  # the training's run, continued


def test_unknown_tracker_is_a_config_error():
    with pytest.raises(ConfigError, match="report_to"):
        load_config(None, ["train.report_to=[wandb]"])


def test_model_card_says_what_the_run_is(store, tmp_path):
    run = tmp_path / "run"
    result = train_run(store.root, load_config(None, [*FAST, "train.seed=3"]), run)
    card = (run / "README.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert "sgmft" in card and "seed: 3" in card
    assert f"{metrics['macro_f1']:.4f}" in card  # the dev macro-F1 the run reports
    assert f"best epoch {result.best_epoch}" in card
    for label in store.labels:
        assert f"`{label}`" in card
    assert "sensitive" in card and "Intended use" in card
    temperature = json.loads((run / "calibration.json").read_text())["temperature"]
    assert f"T = {temperature:.4f}, fitted on the dev split" in card
    assert not list(run.glob(".README.md.*"))  # written atomically (no temp file left)
    # evaluating the run adds the split's metrics to the card
    test = evaluate_runs([run], "test", plots=False)["runs"][0]
    card = (run / "README.md").read_text()
    assert f"{test['macro_f1']:.4f}" in card and "| test | 3 |" in card
