"""The feature-level study world: its knobs do what they say, and per-slice diagnostics on it."""

import csv
import json

import numpy as np
import pytest

from semloc.config import load_config
from semloc.errors import SemlocError
from semloc.features.study import StudyConfig, make_study_world
from semloc.probes.pooled import normalize_rows, read_pooled

SMALL_DIMS = {"text_width": 24, "vision_width": 32, "embed_dim": 16, "num_image_tokens": 5}


def small(**kw):
    return StudyConfig(num_posts=kw.pop("num_posts", 2000), dims=dict(SMALL_DIMS), **kw)


def read_slices(world):
    with open(world.slices_file, newline="") as f:
        return {r["id"]: r["slice"] for r in csv.DictReader(f)}


def measured_auroc(world):
    from sklearn.metrics import roc_auc_score

    store = world.store
    idx = np.arange(len(store))
    pooled = read_pooled(store, idx)
    slices = read_slices(world)
    cos = np.sum(normalize_rows(pooled.text_embed) * normalize_rows(pooled.image_embed), axis=1)
    unrelated = np.array(["unrelated_image" in slices[store.ids[i]] for i in idx])
    keep = pooled.image_present
    return roc_auc_score(~unrelated[keep], cos[keep])


@pytest.mark.parametrize("target", [0.6, 0.8, 0.95, 0.98])
def test_similarity_auroc_is_what_was_asked(tmp_path, target):
    world = make_study_world(tmp_path / "w", small(similarity_auroc=target, seed=3))
    # measured from the written store (float16 features), not from the generator's own numbers
    assert measured_auroc(world) == pytest.approx(target, abs=0.03)
    assert world.info["measured"]["similarity_auroc"] == pytest.approx(target, abs=0.005)


def test_rates_are_what_was_asked_and_slices_match_the_store(tmp_path):
    cfg = small(unrelated_image_rate=0.4, uninformative_text_rate=0.3, no_image_rate=0.2)
    world = make_study_world(tmp_path / "w", cfg)
    store = world.store
    slices = read_slices(world)
    assert list(slices) == list(store.ids)
    pooled = read_pooled(store, np.arange(len(store)))
    no_image = np.array(["no_image" in slices[i] for i in store.ids])
    assert np.array_equal(no_image, ~pooled.image_present)
    n = len(store)
    se = lambda p, m: 3 * np.sqrt(p * (1 - p) / m)  # noqa: E731
    assert no_image.mean() == pytest.approx(0.2, abs=se(0.2, n))
    unrelated = np.array(["unrelated_image" in slices[i] for i in store.ids])[~no_image]
    assert unrelated.mean() == pytest.approx(0.4, abs=se(0.4, len(unrelated)))
    uninformative = np.array(["uninformative_text" in slices[i] for i in store.ids])
    assert uninformative.mean() == pytest.approx(0.3, abs=se(0.3, n))
    assert set(store.labels) == {f"class_{k}" for k in range(8)}


def test_pooled_embeddings_are_a_projection_of_one_token(tmp_path):
    world = make_study_world(tmp_path / "w", small(num_posts=400))
    store = world.store
    b = store.batch(np.arange(len(store)))
    last = b.text_mask.sum(1) - 1
    eos = b.text_tokens[np.arange(len(store)), last].double().numpy()
    cls = b.image_tokens[:, 0].double().numpy()
    present = b.image_present.numpy()
    for tokens, pooled in (
        (eos, b.text_embed.double().numpy()),
        (cls[present], b.image_embed.double().numpy()[present]),
    ):
        proj, *_ = np.linalg.lstsq(tokens, pooled, rcond=None)
        residual = np.abs(tokens @ proj - pooled).max() / np.abs(pooled).max()
        assert residual < 0.01  # exact up to float16 storage
        # and not of another token: the first word token is not that projection
    words = b.text_tokens[:, 0].double().numpy()
    proj, *_ = np.linalg.lstsq(words, b.text_embed.double().numpy(), rcond=None)
    assert np.abs(words @ proj - b.text_embed.double().numpy()).max() > 0.1


def test_same_config_same_world_and_bad_settings_are_named(tmp_path):
    a = make_study_world(tmp_path / "a", small(num_posts=200))
    b = make_study_world(tmp_path / "b", small(num_posts=200))
    assert a.store.manifest["shards"] == b.store.manifest["shards"]
    with pytest.raises(SemlocError, match="similarity_auroc"):
        make_study_world(tmp_path / "c", small(similarity_auroc=1.2))
    with pytest.raises(SemlocError, match="no_image_rate"):
        make_study_world(tmp_path / "d", small(no_image_rate=-0.1))
    with pytest.raises(SemlocError, match="already holds"):
        make_study_world(tmp_path / "a", small(num_posts=200))


def test_command_line_writes_a_world(tmp_path, capsys):
    from semloc.features.study import main

    assert main([str(tmp_path / "w"), "--posts", "300", "--similarity-auroc", "0.7"]) == 0
    assert "similarity AUROC 0.70" in capsys.readouterr().out
    info = json.loads((tmp_path / "w" / "world.json").read_text())
    assert info["config"]["similarity_auroc"] == 0.7
    assert main([str(tmp_path / "x"), "--unrelated-images", "2"]) == 2
    assert "unrelated_image_rate" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from semloc.runs import train_run

    root = tmp_path_factory.mktemp("study")
    world = make_study_world(root / "w", small(num_posts=600, similarity_auroc=0.9))
    cfg = load_config(
        None,
        [
            "model.name=sgmft",
            "model.dim=16",
            "model.num_heads=2",
            "model.sim_layers=1",
            "train.epochs=1",
            "train.progress=false",
        ],
    )
    train_run(world.store.root, cfg, root / "run")
    return world, root / "run"


def test_diagnose_reads_slices_from_a_file(trained, capsys):
    from semloc.demo.diagnose import main as diagnose

    world, run = trained
    args = ["--slices", str(world.slices_file), "--store", str(world.store.root), "--split", "dev"]
    assert diagnose([*args, str(run)]) == 0
    out = capsys.readouterr().out
    auc = float(out.split("ROC AUC of the cosine: ")[1].split()[0])
    assert auc == pytest.approx(0.9, abs=0.08)  # the dev split only: a smaller sample
    assert "| related |" in out and "| unrelated |" in out
    assert "| sgmft `run` |" in out and "π_image" in out


def test_text_path_withholds_every_picture(trained, capsys):
    from semloc.demo.diagnose import main as diagnose
    from semloc.features.store import FeatureStore
    from semloc.prediction import predict_store
    from semloc.runs import load_run

    world, run = trained
    store, loaded = FeatureStore(world.store.root), load_run(run)
    both = predict_store(loaded, store)
    text = predict_store(loaded, store, withhold_images=True)
    # the text path: no picture's weight and no gate anywhere
    assert np.all(text.extras["modality_weights"][:, 1] == 0)
    assert np.all(text.extras["gate"] == 0)
    assert np.any(both.extras["modality_weights"][:, 1] > 0)
    # posts without a picture score the same either way; the others do not
    no_pic = both.extras["modality_weights"][:, 1] == 0
    assert no_pic.any() and (~no_pic).any()
    np.testing.assert_allclose(text.logits[no_pic], both.logits[no_pic], atol=1e-5)
    assert not np.allclose(text.logits[~no_pic], both.logits[~no_pic], atol=1e-3)

    args = ["--slices", str(world.slices_file), "--store", str(world.store.root), "--split", "dev"]
    assert diagnose([*args, "--text-path", str(run)]) == 0
    out = capsys.readouterr().out
    table = out.split("Text path alone (every picture withheld)")[1]
    row = next(line for line in table.splitlines() if line.startswith("| sgmft `run` |"))
    first = out.split("Accuracy (%) per slice of the split:")[1]
    row_both = next(line for line in first.splitlines() if line.startswith("| sgmft `run` |"))
    # the no_image column (last) is the same post set scored the same way
    assert row.split("|")[-2] == row_both.split("|")[-2]


def test_diagnose_names_bad_slice_rows(trained, tmp_path, capsys):
    from semloc.demo.diagnose import main as diagnose

    world, _ = trained
    bad = tmp_path / "posts.jsonl"
    ids = list(world.store.ids)
    rows = [{"id": i, "noise": "clean"} for i in ids]
    rows[7]["noise"] = "blurry_image"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = ["--store", str(world.store.root)]
    assert diagnose(["--slices", str(bad), "--slice-column", "noise", *store]) == 2
    err = capsys.readouterr().err
    assert "data row 8" in err and "blurry_image" in err
    assert diagnose(["--slices", str(bad), *store]) == 2
    assert "no column 'slice'" in capsys.readouterr().err
    short = tmp_path / "short.csv"
    short.write_text("id,slice\n" + "".join(f"{i},clean\n" for i in ids[:5]))
    assert diagnose(["--slices", str(short), *store]) == 2
    assert "not in the slice file" in capsys.readouterr().err


def test_training_fills_the_similarity_statistics_from_the_train_split(trained):
    from semloc.runs import load_run, pair_cosine_stats

    world, run = trained
    cfg = load_run(run).config.model
    store = world.store
    median, std = pair_cosine_stats(store, store.indices("train"))
    assert cfg.gate_bias_init == pytest.approx(median, abs=1e-5)
    assert cfg.similarity_std == pytest.approx(std, abs=1e-5) and std > 0
