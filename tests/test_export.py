"""`semloc export --format onnx`: the model and the CLIP towers on onnxruntime equal PyTorch within
1e-4 on the same posts, and predict, evaluate and the server run on the ONNX runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from clip_fixtures import random_image
from semloc.cli import main
from semloc.errors import SemlocError
from semloc.export import export_run
from semloc.features.store import FeatureStore
from semloc.onnx_runtime import load_export
from semloc.prediction import predict_store
from semloc.runs import load_run

try:
    from test_serve import shared_served_run
except ImportError:  # collected with tests/ as a package
    from tests.test_serve import shared_served_run

TOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_backbone):
    """The shared tiny-CLIP SG-MFT run, exported with its towers through the CLI."""
    posts, store, run = shared_served_run(tmp_path_factory, tiny_backbone)
    out = tmp_path_factory.mktemp("export") / "sgmft-onnx"
    code = main(
        ["export", str(run), "--format", "onnx", "--with-backbone", "-o", str(out),
         "--backbone", tiny_backbone.path]
    )  # fmt: skip
    assert code == 0
    return {"posts": posts, "store": store, "run": run, "out": out}


def assert_same_predictions(torch_run, onnx_run, store: FeatureStore) -> None:
    idx = np.arange(len(store))
    a = predict_store(torch_run, store, idx, batch_size=7)  # batches of several sizes
    b = predict_store(onnx_run, store, idx, batch_size=5)
    np.testing.assert_allclose(b.logits, a.logits, atol=TOL, rtol=0)
    assert set(a.extras) == set(b.extras)
    for name in a.extras:
        np.testing.assert_allclose(b.extras[name], a.extras[name], atol=TOL, rtol=0)
    np.testing.assert_array_equal(b.index, a.index)


def test_manifest_describes_the_export(exported):
    manifest = json.loads((exported["out"] / "manifest.json").read_text())
    run = load_run(exported["run"])
    assert manifest["labels"] == run.labels
    assert manifest["dims"] == run.meta["dims"]
    assert manifest["feature_header"] == run.feature_header
    assert manifest["temperature"] == pytest.approx(run.temperature)  # fitted on dev
    model = manifest["graphs"]["model"]
    assert [i["name"] for i in model["inputs"]] == [
        "text_tokens", "text_mask", "image_tokens", "image_present", "text_embed", "image_embed"
    ]  # fmt: skip
    shapes = {i["name"]: i["shape"] for i in model["inputs"]}
    assert shapes["text_tokens"][:2] == ["batch", "text_tokens"]
    assert shapes["image_tokens"][:2] == ["batch", "image_tokens"]
    assert [o["name"] for o in model["outputs"]] == [
        "logits", "similarity", "gate", "modality_weights"
    ]  # fmt: skip
    assert set(manifest["graphs"]) == {"model", "text_tower", "vision_tower"}
    for graph in manifest["graphs"].values():
        assert (exported["out"] / graph["file"]).is_file()
        assert graph["max_abs_difference"] <= TOL
    assert manifest["backbone"]["image_size"] == 32


def test_sgmft_onnx_equals_pytorch_on_the_store(exported):
    store = FeatureStore(exported["store"])
    assert_same_predictions(
        load_run(exported["run"]), load_run(exported["out"], runtime="onnx"), store
    )


@pytest.mark.parametrize(
    ("model", "overrides", "outputs"),
    [
        ("gmu", [], ["logits", "modality_weights"]),
        # a mask built from parameters inside forward (the prefix attention's gate bias)
        (
            "sgmft",
            ["model.coarse_attention=prefix"],
            ["logits", "similarity", "gate", "modality_weights"],
        ),
        # the text fallback's mixture (log of a sum, -inf weight without picture) and its r
        (
            "sgmft",
            ["model.text_fallback=true"],
            ["logits", "similarity", "gate", "modality_weights", "picture_match"],
        ),
    ],
    ids=["gmu", "sgmft-prefix", "sgmft-text-fallback"],
)
def test_other_models_onnx_equal_pytorch(exported, tmp_path, model, overrides, outputs):
    run = tmp_path / model
    args = ["train", str(exported["store"]), "--out", str(run), "--model", model, *overrides]
    assert main([*args, "train.epochs=1", "model.dim=16", "train.progress=false"]) == 0
    manifest = export_run(run)  # default: RUN/onnx
    assert [o["name"] for o in manifest["graphs"]["model"]["outputs"]] == outputs
    # a run directory with onnx/ in it loads on the ONNX runtime too
    assert_same_predictions(
        load_run(run), load_run(run, runtime="onnx"), FeatureStore(exported["store"])
    )


def test_towers_equal_the_backbone_features(exported, tiny_backbone):
    towers = load_export(exported["out"])
    texts = ["a cozy coffee shop", "beach sunset with waves and surfers and dogs", ""]
    ids, _ = tiny_backbone.tokenize(texts)
    want_tokens, want_embed = tiny_backbone.encode_token_ids(ids)
    longest = max(map(len, ids))
    input_ids = np.full((len(ids), longest), tiny_backbone.pad_token_id, dtype=np.int64)
    mask = np.zeros_like(input_ids)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)], mask[i, : len(row)] = row, 1
    tokens, embed = towers.text_tower.run(input_ids, mask)
    np.testing.assert_allclose(embed, want_embed, atol=TOL, rtol=0)
    for i, want in enumerate(want_tokens):
        np.testing.assert_allclose(tokens[i, : len(want)], want, atol=TOL, rtol=0)

    pixels = np.stack([tiny_backbone.preprocess_image(random_image(s)) for s in range(3)])
    want_tokens, want_embed = tiny_backbone.encode_pixels(pixels)
    tokens, embed = towers.vision_tower.run(pixels)
    np.testing.assert_allclose(tokens, want_tokens, atol=TOL, rtol=0)
    np.testing.assert_allclose(embed, want_embed, atol=TOL, rtol=0)


def test_predict_and_evaluate_run_on_onnx(exported, tiny_backbone, tmp_path):
    from semloc.api import load_run as api_load_run
    from semloc.evaluation import evaluate_runs
    from semloc.prediction import predict_posts

    want = predict_posts(load_run(exported["run"]), exported["posts"], backbone=tiny_backbone)
    got = predict_posts(
        load_run(exported["out"], runtime="onnx"), exported["posts"], backbone=tiny_backbone
    )
    np.testing.assert_allclose(
        got.predictions.probabilities, want.predictions.probabilities, atol=TOL, rtol=0
    )
    np.testing.assert_array_equal(got.predictions.index, want.predictions.index)
    # the Python API on the ONNX runtime
    run = api_load_run(exported["out"], runtime="onnx")
    assert run.labels == load_run(exported["run"]).labels

    onnx_dir = tmp_path / "deployed"
    shutil.copytree(exported["out"], onnx_dir)  # an export directory alone evaluates
    result = evaluate_runs(
        [onnx_dir], "test", store_path=exported["store"], plots=False, runtime="onnx"
    )
    want = evaluate_runs(
        [exported["run"]], "test", store_path=exported["store"], plots=False, out_name="e2"
    )
    assert result["runs"][0]["macro_f1"] == pytest.approx(want["runs"][0]["macro_f1"])
    assert (onnx_dir / "eval-test" / "metrics.json").is_file()


def test_server_runs_on_onnx(exported, tiny_backbone):
    from fastapi.testclient import TestClient

    from semloc.config import ServeConfig
    from semloc.serve.app import create_app

    replies = {}
    for runtime in ("torch", "onnx"):
        cfg = ServeConfig(device="cpu", runtime=runtime)
        where = exported["out"] if runtime == "onnx" else exported["run"]
        with TestClient(create_app(where, cfg, backbone=tiny_backbone)) as client:
            r = client.post("/predict", data={"text": "beach sunset with waves"})
            assert r.status_code == 200, r.text
            replies[runtime] = r.json()
    a, b = replies["torch"], replies["onnx"]
    assert a["label"] == b["label"]
    pa, pb = a["probabilities"], b["probabilities"]
    assert pa.keys() == pb.keys()
    assert all(abs(pa[k] - pb[k]) <= TOL for k in pa)


def test_temperature_travels_into_the_manifest(exported, tmp_path):
    run = tmp_path / "calibrated"
    shutil.copytree(exported["run"], run, ignore=shutil.ignore_patterns("onnx", "eval-*"))
    state = torch.load(run / "best.pt", weights_only=True)
    state["temperature"] = 1.7
    torch.save(state, run / "best.pt")
    manifest = export_run(run, tmp_path / "out")
    assert manifest["temperature"] == 1.7
    assert load_run(tmp_path / "out", runtime="onnx").meta["temperature"] == 1.7


def test_clear_errors(exported, tmp_path):
    with pytest.raises(SemlocError, match="semloc export"):
        load_run(exported["run"].parent / "nothing-here", runtime="onnx")
    with pytest.raises(SemlocError, match="unknown runtime"):
        load_run(exported["run"], runtime="tensorrt")
    with pytest.raises(SemlocError, match="cannot be trained"):
        load_run(exported["out"], runtime="onnx").model.train()
    broken = tmp_path / "broken"
    shutil.copytree(exported["out"], broken)
    (broken / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(SemlocError, match="cannot load ONNX model"):
        load_run(broken, runtime="onnx")
    assert main(["export", str(tmp_path / "missing"), "--format", "onnx"]) == 2
