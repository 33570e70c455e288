"""Temperature scaling: fitted on dev after training, never on test; ECE/Brier reported."""

import json

import numpy as np
import pytest
import torch

from semloc.calibration import (
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from semloc.config import load_config
from semloc.evaluation import evaluate_runs
from semloc.features.store import FeatureStore
from semloc.features.synthetic import make_random_store
from semloc.runs import load_run, train_run

# a model that memorises a noisy training set is over-confident on dev: many epochs, high lr,
# no early stopping, no dropout
OVERFIT = [
    "model.name=concat_mlp",
    "model.dim=64",
    "model.dropout=0.0",
    "train.progress=false",
    "train.lr=3e-3",
    "train.epochs=40",
    "train.patience=0",
    "train.weight_decay=0.0",
]


@pytest.fixture(scope="module")
def noisy_store(tmp_path_factory):
    return make_random_store(
        tmp_path_factory.mktemp("cal") / "store", 400, num_classes=4, signal=0.25, seed=3
    )


def test_ece_and_brier_on_known_cases():
    labels = np.array([0, 1, 0, 1])
    perfect = np.eye(2)[labels]
    assert expected_calibration_error(perfect, labels) == pytest.approx(0.0)
    assert brier_score(perfect, labels) == pytest.approx(0.0)
    # always 0.9 confident, right half the time: ECE = |0.5 - 0.9|
    p = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error(p, labels) == pytest.approx(0.4)
    # per post: right (0.1^2 + 0.1^2), wrong (0.9^2 + 0.9^2)
    assert brier_score(p, labels) == pytest.approx((0.02 + 1.62 + 0.02 + 1.62) / 4)


def test_fitted_temperature_undoes_a_known_scaling():
    rng = np.random.default_rng(0)
    true_logits = rng.standard_normal((4000, 5)) * 2
    labels = np.array([rng.choice(5, p=row) for row in softmax(true_logits)])
    # the model reports logits 3x too large: the right temperature is 3
    t = fit_temperature(true_logits * 3, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    before = calibration_metrics(true_logits * 3, labels, 1.0)
    after = calibration_metrics(true_logits * 3, labels, t)
    assert after["ece"] < before["ece"] / 2
    assert after["nll"] < before["nll"]


def test_training_fits_a_temperature_on_dev_only(noisy_store, tmp_path, monkeypatch):
    touched = []
    original = FeatureStore.batch

    def spy(self, indices, label_map=None):
        touched.extend(np.asarray(indices).tolist())
        return original(self, indices, label_map)

    monkeypatch.setattr(FeatureStore, "batch", spy)
    run_dir = tmp_path / "run"
    train_run(noisy_store.root, load_config(None, OVERFIT), run_dir)
    assert touched and not set(touched) & set(noisy_store.indices("test").tolist())
    monkeypatch.undo()

    summary = json.loads((run_dir / "calibration.json").read_text())
    assert summary["split"] == "dev"
    assert summary["num_posts"] == len(noisy_store.indices("dev"))
    # over-confident model: the temperature softens it and the dev ECE drops
    assert summary["temperature"] > 1.0
    assert summary["after"]["ece"] < summary["before"]["ece"]
    assert summary["after"]["brier"] <= summary["before"]["brier"] + 1e-9
    assert (run_dir / "reliability.png").stat().st_size > 0
    state = torch.load(run_dir / "best.pt", weights_only=True)
    assert state["temperature"] == pytest.approx(summary["temperature"])
    run = load_run(run_dir)
    assert run.meta["temperature"] == pytest.approx(summary["temperature"])

    result = evaluate_runs([run_dir], "test")
    cal = result["runs"][0]["calibration"]
    assert cal["temperature"] == pytest.approx(summary["temperature"])
    assert {"ece", "brier", "nll"} <= set(cal["before"]) and "binning" in cal
    assert (run_dir / "eval-test" / "reliability.png").stat().st_size > 0


def test_people_flow_from_store_to_predictions_to_profile(tmp_path, capsys):
    """Users and times reach the predictions table, and profile uses the run's dev confusion."""
    import csv

    from semloc.cli import main

    store = make_random_store(tmp_path / "store", 240, num_classes=3, signal=0.8, num_users=4)
    run = tmp_path / "run"
    fast = ["model.name=concat_mlp", "model.dim=32", "train.progress=false", "train.epochs=3"]
    assert main(["train", str(store.root), "--out", str(run), *fast]) == 0
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    assert "ECE" in capsys.readouterr().out
    preds = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(store.root), "-o", str(preds), "--split", "all"]) == 0
    rows = list(csv.DictReader(preds.open()))
    assert rows[0]["user"] == store.users[0] and rows[0]["created_at"] == store.created_at[0]
    out = tmp_path / "profile"
    code = main(
        [
            "profile",
            str(preds),
            "--out",
            str(out),
            "--run",
            str(run),
            "--min-posts",
            "5",
            "--bootstrap",
            "50",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads((out / "profile.json").read_text())
    assert summary["adjusted_estimators"] and set(summary["estimators"]) == {
        "cc",
        "pcc",
        "acc",
        "pacc",
    }
    assert summary["users"] == 4 and summary["predicted_posts"] == 240
