"""`semloc predict RUN posts.jsonl`: features on the fly equal the extracted store's."""

import csv

import numpy as np
import pytest

from clip_fixtures import tiny_clip_dir, write_posts  # noqa: F401
from semloc.cli import main

FAST = ["model.dim=32", "model.num_heads=2", "train.progress=false", "train.epochs=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_clip_dir):  # noqa: F811
    d = tmp_path_factory.mktemp("pp")
    posts = write_posts(d, 48, image_every=2, special={5: "img/missing.jpg"})
    store, run = d / "store", d / "run"
    assert (
        main(
            [
                "extract",
                str(posts),
                "--backbone",
                str(tiny_clip_dir),
                "--out",
                str(store),
                "extract.progress=false",
                "extract.num_workers=0",
            ]
        )
        == 0
    )
    assert main(["train", str(store), "--out", str(run), *FAST]) == 0
    return d, posts, store, run


def read(path):
    return {r["id"]: r for r in csv.DictReader(open(path))}


def test_posts_file_prediction_equals_store_prediction(trained):
    d, posts, store, run = trained
    assert main(["predict", str(run), str(store), "-o", str(d / "from_store.csv")]) == 0
    assert main(["predict", str(run), str(posts), "-o", str(d / "from_posts.csv")]) == 0
    a, b = read(d / "from_store.csv"), read(d / "from_posts.csv")
    assert a.keys() == b.keys() and len(a) == 48
    cols = [c for c in next(iter(a.values())) if c.startswith("p_")]
    for pid in a:
        pa = np.array([float(a[pid][c]) for c in cols])
        pb = np.array([float(b[pid][c]) for c in cols])
        np.testing.assert_allclose(pa, pb, atol=1e-5)
        assert a[pid]["predicted_label"] == b[pid]["predicted_label"]
        assert a[pid]["label"] == b[pid]["label"] != ""  # the gold label travels along
    assert b["p005"]["status"] == "text_only"
    assert b["p005"]["image_outcome"] == "missing"
    assert b["p000"]["status"] == "ok" and b["p000"]["image_outcome"] == "present"
    assert b["p001"]["image_outcome"] == "no_image"  # no picture given: said, not "ok"


def test_skip_policy_lists_the_post_without_a_label(trained):
    d, posts, _, run = trained
    out = d / "skip.csv"
    assert main(["predict", str(run), str(posts), "-o", str(out), "--image-policy", "skip"]) == 0
    rows = read(out)
    assert len(rows) == 48 and rows["p005"]["predicted_label"] == ""
    assert (
        rows["p005"]["status"] == "skipped"
        and rows["p005"]["p_" + rows["p000"]["predicted_label"]] == ""
    )


def test_fail_policy_writes_nothing(trained, capsys):
    d, posts, _, run = trained
    out = d / "fail.csv"
    assert main(["predict", str(run), str(posts), "-o", str(out), "--image-policy", "fail"]) == 2
    assert "p005" in capsys.readouterr().err
    assert not out.exists()


def test_a_different_backbone_is_refused(trained, tmp_path, capsys):
    from clip_fixtures import TINY_CLIP_KWARGS, TOKENIZER_TEXTS
    from semloc.clip.tiny import build_clip_from_scratch

    other = build_clip_from_scratch(
        tmp_path / "other", TOKENIZER_TEXTS, **{**TINY_CLIP_KWARGS, "seed": 1}
    )
    _, posts, _, run = trained
    argv = [
        "predict",
        str(run),
        str(posts),
        "-o",
        str(tmp_path / "x.csv"),
        "--backbone",
        str(other),
    ]
    assert main(argv) == 2
    assert "weights_sha256" in capsys.readouterr().err
