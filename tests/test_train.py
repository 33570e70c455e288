"""The generic trainer and the train/evaluate/predict verbs, end to end on small stores."""

import csv
import json

import numpy as np
import pytest
import torch

from semloc.cli import main
from semloc.config import load_config
from semloc.errors import ConfigError, SemlocError
from semloc.features.store import FeatureStore
from semloc.features.synthetic import make_random_store
from semloc.runs import load_run, train_run

FAST = [
    "model.dim=16",
    "model.num_heads=2",
    "model.sim_layers=1",
    "train.progress=false",
    "train.lr=1e-3",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_random_store(tmp_path_factory.mktemp("s") / "store", 160, num_classes=4, signal=0.6)


def cfg(*extra):
    return load_config(None, [*FAST, *extra])


def weights(run_dir):
    return torch.load(run_dir / "last.pt", weights_only=True)["model_state"]


def test_same_seed_same_result_and_other_seed_differs(store, tmp_path):
    a = train_run(store.root, cfg("train.epochs=2"), tmp_path / "a")
    b = train_run(store.root, cfg("train.epochs=2"), tmp_path / "b")
    train_run(store.root, cfg("train.epochs=2", "train.seed=1"), tmp_path / "c")
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    wa, wb, wc = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize(
    "extra",
    # 2/3 param groups; swaps and dropped pictures (drawn from one generator)
    [[], ["train.scalar_lr_scale=30"], ["train.swap_pictures=0.5", "train.drop_pictures=0.3"]],
)
def test_resume_continues_exactly(store, tmp_path, extra):
    full = train_run(store.root, cfg("train.epochs=3", *extra), tmp_path / "full")
    # an interruption after epoch 1 of 3: run the first epoch only (same schedule), then resume
    interrupted = tmp_path / "interrupted"
    from semloc.training import trainer as trainer_mod

    original_fit = trainer_mod.Trainer.fit

    def one_epoch(self):
        self.cfg.epochs, total = 1, self.cfg.epochs
        try:
            return original_fit(self)
        finally:
            self.cfg.epochs = total

    trainer_mod.Trainer.fit = one_epoch
    try:
        train_run(store.root, cfg("train.epochs=3", *extra), interrupted)
    finally:
        trainer_mod.Trainer.fit = original_fit
    assert len(json.loads((interrupted / "history.json").read_text())) == 1
    resumed = train_run(store.root, None, interrupted, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    wf, wr = weights(tmp_path / "full"), weights(interrupted)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)


def test_early_stopping_and_best_checkpoint(store, tmp_path):
    # lr 0 never improves after the first epoch: stops after 1 + patience epochs
    result = train_run(
        store.root, cfg("train.epochs=10", "train.patience=2", "train.lr=0"), tmp_path / "r"
    )
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    assert best["epoch"] == 0


def test_checkpoint_is_self_describing(store, tmp_path):
    train_run(store.root, cfg("train.epochs=1", "train.class_weights=balanced"), tmp_path / "r")
    run = load_run(tmp_path / "r")
    assert run.labels == store.labels
    assert run.config.train.class_weights == "balanced"
    assert run.config.model.gate_bias_init is not None  # filled from the train split
    assert run.meta["feature_fingerprint"] == store.fingerprint
    assert run.meta["feature_header"]["dims"] == store.manifest["dims"]
    assert run.meta["semloc_version"] and run.meta["dev_metrics"]["macro_f1"] >= 0
    assert (tmp_path / "r" / "config.yaml").read_text().count("gate_bias_init") == 1


def test_training_never_reads_test_posts(store, tmp_path, monkeypatch):
    touched = []
    original = FeatureStore.batch

    def spy(self, indices, label_map=None):
        touched.extend(np.asarray(indices).tolist())
        return original(self, indices, label_map)

    monkeypatch.setattr(FeatureStore, "batch", spy)
    train_run(store.root, cfg("train.epochs=2"), tmp_path / "r")
    assert touched and not set(touched) & set(store.indices("test").tolist())


def test_cli_train_evaluate_predict_end_to_end(store, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", str(store.root), "--out", run, "--epochs", "2", *FAST]) == 0
    assert (
        main(
            [
                "train",
                str(store.root),
                "--out",
                str(tmp_path / "run2"),
                "--seed",
                "1",
                "--epochs",
                "1",
                *FAST,
            ]
        )
        == 0
    )
    assert main(["evaluate", run, str(tmp_path / "run2"), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "mean ± std over 2 runs" in out
    metrics = json.loads((tmp_path / "run" / "eval-test" / "metrics.json").read_text())
    assert metrics["num_examples"] == store.indices("test").size
    assert (tmp_path / "run" / "eval-test" / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "run" / "training_curves.png").exists()
    preds = tmp_path / "p.csv"
    assert main(["predict", run, str(store.root), "-o", str(preds), "--split", "test"]) == 0
    rows = list(csv.DictReader(preds.open()))
    assert len(rows) == store.indices("test").size
    probs = np.array([[float(r[f"p_{lab}"]) for lab in store.labels] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert {r["predicted_label"] for r in rows} <= set(store.labels)
    assert {r["label"] for r in rows} <= set(store.labels)  # the store's gold labels


def test_cli_errors_are_one_clear_line(store, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", str(store.root), "--out", run, "--epochs", "1", *FAST]) == 0
    cases = [
        (["train", str(store.root), "--out", run, *FAST], "already holds a run"),
        (["train", str(tmp_path / "nope"), "--out", str(tmp_path / "x")], "not a feature store"),
        (
            ["train", str(store.root), "--out", str(tmp_path / "y"), "model.nope=1"],
            "unknown config key",
        ),
        (["train", str(store.root), "--out", str(tmp_path / "y"), "--model", "nope"], "nope"),
        (["train", str(store.root), "--out", str(tmp_path / "z"), "--resume"], "cannot resume"),
        (["evaluate", str(tmp_path / "missing")], "not a run directory"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert (
        main(
            ["predict", str(tmp_path / "broken.pt"), str(store.root), "-o", str(tmp_path / "o.csv")]
        )
        == 2
    )
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_store_without_dev_split_is_refused(tmp_path):
    s = make_random_store(tmp_path / "s", 40, splits=(1.0, 0.0, 0.0))
    with pytest.raises(Exception, match="no 'dev' posts"):
        train_run(s.root, cfg("train.epochs=1"), tmp_path / "r")


def test_evaluation_with_unknown_labels_lists_them(store, tmp_path):
    train_run(store.root, cfg("train.epochs=1"), tmp_path / "r")
    other = make_random_store(tmp_path / "o", 60, num_classes=5, seed=3)
    header = {k: store.manifest[k] for k in ("backbone", "preprocessing", "dtype", "dims")}
    other.check_compatible(header)
    from semloc.errors import DataError
    from semloc.evaluation import evaluate_runs

    with pytest.raises(DataError, match="class_4"):
        evaluate_runs([tmp_path / "r"], "test", store_path=other.root)


def test_balanced_class_weights():
    from semloc.training.trainer import class_weights

    w = class_weights(np.array([30, 10, 0]))
    np.testing.assert_allclose(w.numpy(), [40 / 90, 40 / 30, 0.0], rtol=1e-6)


def test_a_checkpoint_from_before_the_newer_model_settings_still_loads(store, tmp_path):
    """Checkpoints written before fusion_gate / similarity_prior / pooled_embeddings /
    similarity_std existed were trained without them; they load as exactly that model."""
    from semloc.prediction import predict_store
    from semloc.runs import LEGACY_MODEL_SETTINGS

    legacy = [f"model.{k}={json.dumps(v)}" for k, v in LEGACY_MODEL_SETTINGS.items()]
    train_run(store.root, load_config(None, [*FAST, "train.epochs=1", *legacy]), tmp_path)
    want = predict_store(load_run(tmp_path), store).logits
    best = tmp_path / "best.pt"
    state = torch.load(best, weights_only=True)
    for key in LEGACY_MODEL_SETTINGS:  # what an older semloc wrote: no such keys
        del state["config"]["model"][key]
    torch.save(state, best)
    np.testing.assert_array_equal(predict_store(load_run(tmp_path), store).logits, want)
    state["model_state"] = {k: v for k, v in state["model_state"].items() if "head" not in k}
    torch.save(state, best)
    with pytest.raises(SemlocError, match="do not fit the model"):
        load_run(tmp_path)


@pytest.mark.parametrize("setting", ["swap_pictures=1", "drop_pictures=0.5"])
def test_batch_augmentation_is_checked_seeded_and_reaches_training(tmp_path, setting):
    """Mismatch augmentation and picture dropout: a value out of range is refused by name, the
    draws are seeded, and they change what the model trains on."""
    name = setting.split("=")[0]
    with pytest.raises(ConfigError, match=name):
        load_config(None, [f"train.{name}=1.5"])
    store = make_random_store(tmp_path / "store", 96, num_classes=3, signal=0.6)
    fast = ["model.dim=16", "model.num_heads=2", "train.progress=false", "train.epochs=1"]
    runs = {
        run: train_run(store.root, load_config(None, [*fast, *extra]), tmp_path / run)
        for run, extra in [
            ("off", []),
            ("on", [f"train.{setting}"]),
            ("again", [f"train.{setting}"]),
        ]
    }
    loss = {run: r.history[-1]["train_loss"] for run, r in runs.items()}
    assert loss["on"] == loss["again"]  # seeded
    assert loss["on"] != loss["off"]  # the augmented batches reach the model
