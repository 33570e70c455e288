"""The Python API: functions and the Predictor estimator, through public names only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import semloc
from clip_fixtures import tiny_clip_dir, write_posts  # noqa: F401
from semloc.cli import main

FAST = ["model.dim=32", "model.num_heads=2", "train.epochs=2", "train.progress=false",
        "extract.progress=false", "extract.num_workers=0"]  # fmt: skip


def posts_frame(directory: Path, n: int = 36) -> pd.DataFrame:
    """Posts with images on disk, one missing image, one empty text and one post without image."""
    path = write_posts(directory, n, special={4: "img/missing.jpg"})
    frame = pd.read_json(path, lines=True)
    frame.loc[frame["id"] == "p007", "text"] = ""
    frame.loc[frame["id"] == "p009", "image"] = None
    return frame


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_clip_dir):  # noqa: F811
    d = tmp_path_factory.mktemp("api")
    frame = posts_frame(d)
    train, dev, test = frame.iloc[:24], frame.iloc[24:30], frame.iloc[30:]
    predictor = semloc.Predictor(
        backbone=tiny_clip_dir, model="sgmft", path=d / "run", overrides=FAST
    )
    predictor.fit(train, tuning_data=dev, base_dir=d)
    return d, predictor, frame, test


def test_public_names_resolve_and_nothing_else_is_exported():
    for name in semloc.__all__:
        assert getattr(semloc, name) is not None, name
    with pytest.raises(AttributeError):
        semloc.not_a_public_name  # noqa: B018


def test_import_semloc_is_lazy_about_torch():
    code = "import sys, semloc; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_fit_predict_evaluate_on_dataframes(fitted):
    d, predictor, frame, test = fitted
    labels = predictor.predict(test, base_dir=d)
    assert list(labels.index) == list(test["id"]) and set(labels) <= set(predictor.labels)
    proba = predictor.predict_proba(frame, base_dir=d)
    assert list(proba.columns) == predictor.labels
    np.testing.assert_allclose(proba.to_numpy().sum(1), 1.0, atol=1e-6)
    table = predictor.predict_table(frame, base_dir=d).set_index("id")
    assert table.loc["p004", "status"] == "text_only"  # the missing image: text-only, said so
    assert table.loc["p004", "image_outcome"] == "missing"
    assert table.loc["p009", "image_outcome"] == "no_image"
    assert table.loc["p000", "image_outcome"] == "present"
    assert {"similarity", "gate", "weight_text", "weight_image", "label"} <= set(table.columns)
    metrics = predictor.evaluate(test, base_dir=d)
    assert 0.0 <= metrics["macro_f1"] <= 1.0 and metrics["num_examples"] == len(test)


def test_a_second_fit_on_the_same_posts_extracts_nothing(fitted, tiny_clip_dir):  # noqa: F811
    d, predictor, frame, _ = fitted
    stores = sorted(p.name for p in predictor.cache_dir.glob("store-*"))
    again = semloc.Predictor(
        backbone=tiny_clip_dir, path=d / "run2", cache_dir=predictor.cache_dir, overrides=FAST
    )
    again.fit(frame.iloc[:24], tuning_data=frame.iloc[24:30], base_dir=d)
    assert sorted(p.name for p in predictor.cache_dir.glob("store-*")) == stores


def test_save_load_round_trip_gives_identical_probabilities(fitted, tmp_path):
    d, predictor, frame, _ = fitted
    before = predictor.predict_proba(frame, base_dir=d)
    saved = predictor.save(tmp_path / "saved")
    loaded = semloc.Predictor.load(saved)
    after = loaded.predict_proba(frame, base_dir=d)
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    assert json.loads((saved / "predictor.json").read_text())["model"] == "sgmft"


def test_api_and_cli_agree(fitted, tmp_path):
    d, predictor, _, _ = fitted
    posts = d / "posts.jsonl"  # the same posts as a file, written by write_posts
    out = tmp_path / "cli.csv"
    assert main(["predict", str(predictor.path), str(posts), "-o", str(out)]) == 0
    cli = pd.read_csv(out, keep_default_na=False).set_index("id")
    api = semloc.predict(predictor.path, posts).set_index("id")
    cols = [f"p_{lab}" for lab in predictor.labels] + ["similarity", "gate"]
    np.testing.assert_allclose(cli[cols].to_numpy(float), api[cols].to_numpy(float), atol=1e-5)
    assert (cli["predicted_label"] == api["predicted_label"]).all()


def test_functions_compose_store_train_predict(tmp_path, tiny_clip_dir):  # noqa: F811
    frame = posts_frame(tmp_path, 30)
    backbone = semloc.load_backbone(tiny_clip_dir)
    store = semloc.extract(frame, tmp_path / "feats", backbone=backbone, overrides=FAST,
                           base_dir=tmp_path)  # fmt: skip
    assert len(store) == 30 and set(store.labels) == {"cafe", "park", "gym"}
    assert (tmp_path / "feats.posts.jsonl").is_file()
    run = semloc.train(store, tmp_path / "r", model="concat_mlp", overrides=FAST)
    assert run.model_name == "concat_mlp" and "macro_f1" in run.metrics
    on_store = run.predict(store)
    on_posts = run.predict(frame, base_dir=tmp_path)
    a = on_store.set_index("id").loc[on_posts["id"], [f"p_{x}" for x in run.labels]]
    b = on_posts.set_index("id")[[f"p_{x}" for x in run.labels]]
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), atol=1e-5)
    report = run.evaluate("test")
    assert report["model"] == "concat_mlp"


def test_errors_are_semloc_errors(tmp_path, tiny_clip_dir):  # noqa: F811
    with pytest.raises(semloc.SemlocError, match="not fitted"):
        semloc.Predictor(backbone=tiny_clip_dir).predict([{"id": "a", "text": "x"}])
    with pytest.raises(semloc.DataError, match="missing label"):
        semloc.Predictor(backbone=tiny_clip_dir, path=tmp_path / "r").fit(
            [{"id": "a", "text": "x"}]
        )
    with pytest.raises(semloc.ConfigError):
        semloc.make_config(overrides=["train.not_a_key=1"])
