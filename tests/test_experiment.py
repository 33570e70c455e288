"""Experiment grids: the shipped grid files train, the runner resumes without redoing finished
cells, and the table's mean ± std is exactly the per-cell metrics' mean and sample std."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

import semloc.plots
import semloc.runs
from semloc.cli import main
from semloc.errors import ConfigError, SemlocError
from semloc.experiment import cell_config, grid_cells, load_grid, run_grid
from semloc.features.synthetic import make_random_store
from semloc.models import MODEL_NAMES

try:
    from test_baselines import fake_encode_texts
except ImportError:  # collected with tests/ as a package
    from tests.test_probes import fake_encode_texts

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
TINY = [
    "train.epochs=1",
    "train.batch_size=16",
    "train.progress=false",
    "model.dim=16",
    "model.num_heads=2",
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return [
        make_random_store(root / f"feats-{i}", 60, shard_size=64, seed=i, signal=1.0 - 0.5 * i)
        for i in range(2)
    ]


@pytest.fixture
def no_training_plots(monkeypatch):
    """Training curves cost more than a tiny model's epoch; plots are tested on their own."""
    monkeypatch.setattr(semloc.plots, "plot_training_curves", lambda *a, **k: None)


@pytest.fixture
def count_training(monkeypatch):
    """Record every call of train_run (the runner imports it at call time)."""
    calls: list[dict] = []
    real = semloc.runs.train_run

    def counting(store_path, cfg, out_dir, **kwargs):
        calls.append({"out": Path(out_dir), **kwargs})
        return real(store_path, cfg, out_dir, **kwargs)

    monkeypatch.setattr(semloc.runs, "train_run", counting)
    return calls


def small_grid(store, **extra) -> dict:
    return {
        "name": "tiny",
        "store": str(store.root),
        "seeds": 2,
        "overrides": TINY,
        "models": [
            "text_mlp",
            {"name": "fusion-small", "model": "concat_mlp", "overrides": ["model.dim=8"]},
            {"name": "probe", "kind": "linear_probe", "Cs": [0.1, 1.0]},
            {"name": "zeroshot", "kind": "zeroshot", "modality": "both"},
        ],
        **extra,
    }


# ----------------------------------------------------------------------------------------------
# the shipped grid files


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
def test_grid_files_parse(name):
    grid = load_grid(EXPERIMENTS / f"{name}.yaml")
    assert grid.models and grid.seeds
    for cell in grid_cells(grid, "out"):
        if cell.model.kind == "train":
            assert cell_config(grid, cell).model.name in MODEL_NAMES


def test_every_ablation_trains_one_epoch_through_the_cli(stores, tmp_path, no_training_plots):
    grid = load_grid(EXPERIMENTS / "ablations.yaml", store=stores[0].root)
    switches = set()
    for model in grid.models:
        # one SIM layer unless the variant sets its own count
        overrides = [*grid.overrides, "model.sim_layers=1", *model.overrides, *TINY]
        out = tmp_path / model.name
        assert main(["train", str(stores[0].root), "--out", str(out), *overrides]) == 0
        assert (out / "best.pt").exists()
        switches |= {o.split("=")[0] for o in model.overrides}
    assert {
        "model.coarse_similarity",
        "model.fine_similarity",
        "model.sim_layers",
        "model.fusion",
        "model.similarity_weighting",
    } <= switches


# ----------------------------------------------------------------------------------------------
# running, resuming, aggregating


def test_grid_runs_resumes_and_aggregates(stores, tmp_path, count_training, no_training_plots):
    out = tmp_path / "exp"
    results = run_grid(small_grid(stores[0]), out, encode_texts=fake_encode_texts, plots=False)
    key = stores[0].root.name
    trained = list(count_training)
    assert len(trained) == 4  # 2 trained models x 2 seeds; the probe and zero-shot run once
    assert {c["out"] for c in trained} == {
        out / key / name / f"seed-{s}" for name in ("text_mlp", "fusion-small") for s in (0, 1)
    }
    for f in ("results.md", "results.csv", "results.json", "results.png"):
        assert (out / f).exists()

    # the table is the mean and sample std of the per-cell metrics files
    for name in ("text_mlp", "fusion-small"):
        per_cell = [
            json.loads((out / key / name / f"seed-{s}" / "eval-test" / "metrics.json").read_text())
            for s in (0, 1)
        ]
        row = results.row(name)
        assert row["runs"] == 2
        for metric in ("macro_f1", "accuracy", "weighted_f1"):
            values = [m[metric] for m in per_cell]
            assert row[metric]["mean"] == pytest.approx(statistics.mean(values))
            assert row[metric]["std"] == pytest.approx(statistics.stdev(values))
        assert row["num_params"] == per_cell[0]["num_params"] > 0
    small = json.loads((out / key / "fusion-small" / "seed-0" / "run.json").read_text())
    assert small["model_name"] == "concat_mlp"
    probe = results.row("probe")
    assert probe["runs"] == 1 and (out / key / "probe" / "run" / "probe.json").exists()
    with open(out / "results.csv") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert float(rows["text_mlp"]["macro_f1_mean"]) == pytest.approx(
        results.row("text_mlp")["macro_f1"]["mean"]
    )
    assert rows["probe"]["macro_f1_std"] == ""  # one run has no sample std
    table = (out / "results.md").read_text()
    assert "| text_mlp | 2 |" in table and " ± " in table

    # a second run finds every cell finished: nothing is trained or rewritten
    metrics = sorted(out.glob("*/*/*/eval-test/metrics.json"))
    stamps = [p.stat().st_mtime_ns for p in metrics]
    count_training.clear()
    again = run_grid(small_grid(stores[0]), out, encode_texts=fake_encode_texts, plots=False)
    assert count_training == []
    assert [p.stat().st_mtime_ns for p in metrics] == stamps
    assert again.row("text_mlp")["macro_f1"] == results.row("text_mlp")["macro_f1"]

    # a cell interrupted after training resumes from its last.pt; the others stay untouched
    cell = out / key / "text_mlp" / "seed-1"
    (cell / "eval-test" / "metrics.json").unlink()
    run_grid(small_grid(stores[0]), out, encode_texts=fake_encode_texts, plots=False)
    assert [(c["out"], c["resume"]) for c in count_training] == [(cell, True)]

    # a changed grid is refused, not mixed into the old table
    changed = small_grid(stores[0], overrides=[*TINY, "train.lr=0.01"])
    with pytest.raises(SemlocError, match=r"train\.lr"):
        run_grid(changed, out, encode_texts=fake_encode_texts, plots=False)


def test_noise_study(stores, tmp_path, no_training_plots):
    grid = {
        "name": "noise",
        "x_label": "unrelated-image fraction",
        "stores": [
            {"x": 0.0, "store": str(stores[0].root)},
            {"x": 0.5, "store": str(stores[1].root)},
        ],
        "seeds": [0, 1],
        "overrides": TINY,
        "models": ["text_linear", {"name": "probe", "kind": "linear_probe", "Cs": [1.0]}],
    }
    results = run_grid(grid, tmp_path, plots=False)
    assert {(r["model"], r["x"]) for r in results.rows} == {
        (m, x) for m in ("text_linear", "probe") for x in (0.0, 0.5)
    }
    assert (tmp_path / "noise.png").exists() and not (tmp_path / "results.png").exists()
    assert (tmp_path / "x-0.5" / "text_linear" / "seed-1" / "eval-test" / "metrics.json").exists()
    table = (tmp_path / "results.md").read_text()
    assert "| model | 0 | 0.5 | change 0 → 0.5 |" in table  # macro-F1 against x
    # the change column is the difference of the two means, in points
    f1 = {r["x"]: r["macro_f1"]["mean"] for r in results.rows if r["model"] == "text_linear"}
    row = next(line for line in table.splitlines() if line.startswith("| text_linear | "))
    assert float(row.strip("| ").split("|")[-1]) == pytest.approx(
        100 * (f1[0.5] - f1[0.0]), abs=0.006
    )


def test_cli_prints_the_table(stores, tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("models: [text_linear]\nseeds: 1\n")
    out = tmp_path / "out"
    args = ["experiment", str(grid), "--store", str(stores[0].root), "--out", str(out), *TINY]
    assert main([*args, "--dry-run"]) == 0
    assert not (out / "results.md").exists()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| text_linear | 1 |" in printed and str(out / "results.md") in printed


@pytest.mark.parametrize(
    ("grid", "needle"),
    [
        ({"models": ["sgmft"]}, "exactly one of 'store'"),
        ({"store": "x", "models": ["sgmft"], "sedes": 3}, "unknown key"),
        ({"store": "x", "models": ["sgmft", "sgmft"]}, "distinct"),
        ({"store": "x", "models": [{"name": "a", "kind": "magic"}]}, "kind"),
        ({"store": "x", "models": [{"name": "z", "kind": "zeroshot", "modality": "x"}]}, "modal"),
        ({"store": "x", "models": ["sgmft"], "seeds": 0}, "seeds"),
        ({"stores": [{"x": 0, "store": "a"}, {"store": "b"}], "models": ["sgmft"]}, "x value"),
        ({"store": "x", "models": [{"name": "../up"}]}, "directory name"),
        ({"store": "x", "models": ["sgmft"], "split": "tset"}, "'split' must be one of"),
        ({"store": "x", "models": ["sgmft"], "split": ["dev"]}, "'split' must be one of"),
        ({"store": "x", "models": ["sgmft"], "name": ["a"]}, "'name' must be a non-empty string"),
        ({"store": "x", "models": ["sgmft"], "x_label": {"a": 1}}, "'x_label' must be"),
        ({"store": "x", "models": ["sgmft"], "config": 5}, "'config' must be a non-empty string"),
        (
            {"store": "x", "models": [{"name": "p", "kind": "linear_probe", "max_iter": 0}]},
            "max_it",
        ),
        (
            {"store": "x", "models": [{"name": "p", "kind": "linear_probe", "max_iter": 2.5}]},
            "max_",
        ),
        ({"store": "x", "models": [{"name": "z", "kind": "zeroshot", "prompts": 3}]}, "prompts"),
        (
            {"store": "x", "models": [{"name": "z", "kind": "zeroshot", "prompts": "nope.yaml"}]},
            r"models\[0\] \(z\): cannot read prompts file",
        ),
    ],
)
def test_bad_grids_are_refused_with_the_key(grid, needle):
    with pytest.raises(ConfigError, match=needle):
        load_grid(grid)


def test_split_option_evaluates_the_grid_on_another_split(stores, tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("models: [text_linear]\nseeds: 1\nsplit: test\n")
    out = tmp_path / "out"
    args = ["experiment", str(grid), "--store", str(stores[0].root), "--out", str(out), *TINY]
    assert main([*args, "--split", "dev"]) == 0
    assert "Split `dev`" in capsys.readouterr().out
    cell = out / stores[0].root.name / "text_linear" / "seed-0"
    assert (cell / "eval-dev" / "metrics.json").exists()
    assert not (cell / "eval-test").exists()
    with pytest.raises(ConfigError, match=r"grid --split: .split. must be one of"):
        load_grid(grid, store=stores[0].root, split="tset")
    # an empty split is the default, test
    assert load_grid({"store": "x", "models": ["sgmft"], "split": None}).split == "test"


def test_bad_model_config_fails_before_training(stores, tmp_path, count_training):
    grid = small_grid(
        stores[0], models=[{"name": "bad", "model": "gmu", "overrides": ["model.dim=-1"]}]
    )
    with pytest.raises(ConfigError, match="bad"):
        run_grid(grid, tmp_path, plots=False)
    assert count_training == []
