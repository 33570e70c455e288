"""Backbone families (CLIP, SigLIP, Chinese-CLIP): a tiny random checkpoint of each, in its real
save_pretrained format, gives transformers' own token and pooled features, goes through
extract -> train -> predict on the command line, and records what differs in the store header."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_fixtures import CHINESE_TEXTS, random_image, write_posts
from semloc.cli import main
from semloc.clip.backbone import load_backbone
from semloc.errors import SemlocError

FAMILIES = ("clip", "siglip", "chinese_clip")
ARCHITECTURES = {"clip": "CLIPModel", "siglip": "SiglipModel", "chinese_clip": "ChineseCLIPModel"}
TEXTS = [
    "a cozy coffee shop",
    "quiet library, exams next week 📚 and a very long tail of words to be truncated here",
    "公园 里 的 狗",
    "",
]


def _hf(directory: Path):
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    arch = ARCHITECTURES[AutoConfig.from_pretrained(directory).model_type]
    model = getattr(transformers, arch).from_pretrained(directory, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
    return model, tokenizer, processor


def _pooled(out):
    return out.pooler_output if hasattr(out, "pooler_output") else out


@pytest.mark.parametrize("family", FAMILIES)
def test_text_features_equal_transformers(family: str, tiny_family_dirs: dict) -> None:
    directory = tiny_family_dirs[family]
    backbone = load_backbone(directory)
    model, tokenizer, _ = _hf(directory)
    tokens, embeds, truncated = backbone.encode_texts(TEXTS)
    assert truncated[1] and not truncated[0] and not truncated[3]  # Chinese bytes may overflow
    # each family's own recipe: SigLIP pads to the full length and is given no mask
    siglip = family == "siglip"
    enc = tokenizer(
        TEXTS,
        padding="max_length" if siglip else True,
        truncation=True,
        max_length=backbone.max_text_tokens,
        return_tensors="pt",
    )
    inputs = {"input_ids": enc["input_ids"]}
    if not siglip:
        inputs["attention_mask"] = enc["attention_mask"]
    with torch.no_grad():
        out = model.get_text_features(**inputs)
    np.testing.assert_allclose(embeds, _pooled(out).numpy(), atol=1e-5)
    hidden = model.text_model(**inputs).last_hidden_state.detach().numpy()
    for i, t in enumerate(tokens):
        n = int(enc["attention_mask"][i].sum())
        assert t.shape == (n, backbone.dims["text_width"])
        np.testing.assert_allclose(t, hidden[i, :n], atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_image_features_equal_transformers(family: str, tiny_family_dirs: dict) -> None:
    directory = tiny_family_dirs[family]
    backbone = load_backbone(directory)
    model, _, processor = _hf(directory)
    images = [random_image(i, (40 + 13 * i, 70 - 9 * i)) for i in range(3)]
    pixels = np.stack([backbone.preprocess_image(im) for im in images])
    want_pixels = processor(images=images, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(pixels, want_pixels)  # the processor's very numbers
    tokens, embeds = backbone.encode_pixels(pixels)
    with torch.no_grad():
        px = torch.from_numpy(want_pixels)
        want_embed = _pooled(model.get_image_features(pixel_values=px)).numpy()
        hidden = model.vision_model(pixel_values=px).last_hidden_state
        if family != "siglip":  # CLIP-style towers norm only the pooled CLS; we norm all tokens
            hidden = model.vision_model.post_layernorm(hidden)
    np.testing.assert_allclose(embeds, want_embed, atol=1e-5)
    np.testing.assert_allclose(tokens, hidden.numpy(), atol=1e-5)
    assert tokens.shape[1] == backbone.dims["num_image_tokens"]
    assert tokens.shape[1] == 16 + (family != "siglip")  # SigLIP has no CLS token


@pytest.mark.parametrize("family", FAMILIES)
def test_extract_train_predict_through_the_cli(
    family: str, tiny_family_dirs: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    posts = write_posts(tmp_path, 24, image_every=2)
    store, run, pred = tmp_path / "store", tmp_path / "run", tmp_path / "pred.csv"
    fast = ["extract.progress=false", "extract.num_workers=0", "extract.shard_size=10"]
    assert (
        main(["extract", str(posts), "--backbone", str(tiny_family_dirs[family]), "--out",
              str(store), *fast])
        == 0
    )  # fmt: skip
    train = ["model.dim=16", "model.num_heads=2", "train.epochs=1", "train.progress=false"]
    assert main(["train", str(store), "--out", str(run), *train]) == 0
    assert main(["predict", str(run), str(posts), "-o", str(pred), "--device", "cpu"]) == 0
    with open(pred) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and all(r["predicted_label"] for r in rows)
    # what differs between families is in the header, and only non-CLIP headers grow
    header = json.loads((store / "manifest.json").read_text())
    backbone = header["backbone"]
    assert backbone["architecture"] == ARCHITECTURES[family]
    if family == "clip":
        assert "family" not in backbone and header["preprocessing"]["features"] == "clip-tokens-v1"
    else:
        assert backbone["family"] == family
        assert header["preprocessing"]["features"] == f"{family}-tokens-v1"
    if family == "siglip":
        assert backbone["similarity"] == {
            "kind": "sigmoid",
            "logit_scale": pytest.approx(10.0),
            "logit_bias": -10.0,
        }
        assert backbone["text_pooling"] == "last" and backbone["image_pooling"] == "attention-pool"
    if family == "chinese_clip":
        assert backbone["text_pooling"] == "first"


def test_zero_shot_uses_the_family_similarity(tiny_family_dirs: dict, tmp_path: Path) -> None:
    from semloc.clip.extract import extract_to_store
    from semloc.config import ExtractConfig
    from semloc.features.store import FeatureStore
    from semloc.probes.pooled import read_pooled
    from semloc.probes.zeroshot import (
        build_zero_shot_classifier,
        evaluate_zero_shot,
        load_prompts,
        text_encoder_for_store,
        zero_shot_logits,
    )

    posts = write_posts(tmp_path, 12, image_every=1)
    cfg = ExtractConfig(
        backbone=str(tiny_family_dirs["siglip"]), progress=False, num_workers=0, shard_size=12
    )
    extract_to_store(posts, tmp_path / "store", cfg)
    store = FeatureStore(tmp_path / "store")
    metrics = evaluate_zero_shot(store, "train", modality="image")
    assert 0.0 <= metrics["accuracy"] <= 1.0
    encoder = text_encoder_for_store(store)
    classifier = build_zero_shot_classifier(encoder, store.labels, load_prompts())
    pooled = read_pooled(store, np.arange(len(store)))
    cosine = zero_shot_logits(classifier, pooled, "image") / 100.0  # the CLIP default: x 100
    siglip = zero_shot_logits(classifier, pooled, "image", store.manifest["backbone"]["similarity"])
    np.testing.assert_allclose(siglip, cosine * 10.0 - 10.0, rtol=1e-5, atol=1e-5)


def test_pretraining_refuses_other_families(tiny_family_dirs: dict, tmp_path: Path, capsys) -> None:
    pairs = tmp_path / "pairs.csv"
    random_image(0).save(tmp_path / "a.jpg")
    pairs.write_text("image,caption\na.jpg,a dog in a park\n")
    rc = main(["pretrain-clip", str(pairs), "--out", str(tmp_path / "out"), "--init",
               str(tiny_family_dirs["siglip"])])  # fmt: skip
    err = capsys.readouterr().err
    assert rc != 0 and "CLIP models only" in err and "SiglipModel" in err, err
    assert "Traceback" not in err


def test_an_unsupported_dual_encoder_is_refused_by_name(
    tiny_family_dirs: dict, tmp_path: Path
) -> None:
    directory = tmp_path / "naflex"
    shutil.copytree(tiny_family_dirs["siglip"], directory)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "siglip2"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(SemlocError, match="NaFlex") as e:
        load_backbone(directory)
    assert "SiglipModel (siglip)" in str(e.value)


def test_a_family_needs_its_own_image_processor(tiny_family_dirs: dict, tmp_path: Path) -> None:
    # a SigLIP directory holding a CLIP image processor config: refused, never used as is
    directory = tmp_path / "mixed"
    shutil.copytree(tiny_family_dirs["siglip"], directory)
    shutil.copy(
        tiny_family_dirs["clip"] / "processor_config.json", directory / "preprocessor_config.json"
    )
    with pytest.raises(SemlocError, match="is not a SiglipModel one"):
        load_backbone(directory)


def test_chinese_text_is_tokenised_by_the_family_tokenizer(tiny_family_dirs: dict) -> None:
    backbone = load_backbone(tiny_family_dirs["chinese_clip"])
    ids, _ = backbone.tokenize(CHINESE_TEXTS[:1])
    unk = backbone.tokenizer.unk_token_id
    assert ids[0][0] == backbone.tokenizer.cls_token_id and unk not in ids[0]


# ----------------------------------------------------------------------------------------------
# SG-MFT's gate start, and serving, per family

TINY_TRAIN = ["model.dim=16", "model.num_heads=2", "train.epochs=1", "train.progress=false"]
FAST_EXTRACT = ["extract.progress=false", "extract.num_workers=0", "extract.shard_size=10"]


@pytest.fixture(scope="module")
def family_runs(tiny_family_dirs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per family: (posts, store, run) of a one-epoch tiny SG-MFT."""
    out = {}
    for family in FAMILIES:
        root = tmp_path_factory.mktemp(f"served-{family}")
        posts = write_posts(root, 24, image_every=2)
        store, run = root / "store", root / "run"
        backbone = str(tiny_family_dirs[family])
        assert main(["extract", str(posts), "--backbone", backbone, "--out", str(store),
                     *FAST_EXTRACT]) == 0  # fmt: skip
        assert main(["train", str(store), "--out", str(run), *TINY_TRAIN]) == 0
        out[family] = (posts, store, run)
    return out


def _initial_gate_run(store: Path, out: Path, *extra: str) -> int:
    # lr=0 keeps every weight at its initial value, so the checkpoint holds the starting gate
    return main(["train", str(store), "--out", str(out), *TINY_TRAIN, "train.lr=0", *extra])


def test_siglip_gate_can_start_as_the_backbones_pair_probability(
    family_runs: dict, tmp_path: Path
) -> None:
    from semloc.features.store import FeatureStore
    from semloc.runs import load_run, pair_cosine_stats

    _, store_dir, _ = family_runs["siglip"]
    assert _initial_gate_run(store_dir, tmp_path / "run", "model.gate_init=backbone") == 0
    store = FeatureStore(store_dir)
    median, std = pair_cosine_stats(store, store.indices("train"))
    run = load_run(tmp_path / "run", device="cpu")
    model = run.config.model
    # the tiny SigLIP records logit_scale 10, logit_bias -10: k = 10 x std, b = 1
    assert model.gate_scale_init == pytest.approx(10.0 * model.similarity_std, rel=1e-6)
    assert model.gate_bias_init == pytest.approx(1.0, abs=1e-6)
    assert model.similarity_center == pytest.approx(median, abs=1e-6)  # s_std stays centred
    assert model.similarity_std == pytest.approx(std, abs=1e-6)
    batch = store.batch(np.arange(len(store)))
    with torch.no_grad():
        out = run.model(batch)
    present = batch.image_present
    cosine = out.similarity[present].double()
    expected = torch.sigmoid(10.0 * cosine - 10.0)
    torch.testing.assert_close(out.gate[present].double(), expected, rtol=0, atol=1e-6)
    assert (out.gate[~present] == 0).all()


def test_gate_init_data_is_the_default_and_backbone_needs_a_sigmoid_similarity(
    family_runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from semloc.features.store import FeatureStore
    from semloc.runs import load_run, pair_cosine_stats

    _, clip_store, _ = family_runs["clip"]
    assert _initial_gate_run(clip_store, tmp_path / "clip") == 0
    model = load_run(tmp_path / "clip", device="cpu").config.model
    store = FeatureStore(clip_store)
    median, _ = pair_cosine_stats(store, store.indices("train"))
    assert model.gate_init == "data" and model.similarity_center is None
    assert model.gate_scale_init == 2.0 and model.gate_bias_init == pytest.approx(median, abs=1e-6)
    capsys.readouterr()
    code = _initial_gate_run(clip_store, tmp_path / "bad", "model.gate_init=backbone")
    assert code == 2
    err = capsys.readouterr().err
    assert "model.gate_init=backbone" in err and "'cosine'" in err and "Traceback" not in err


@pytest.mark.parametrize("family", FAMILIES)
def test_serving_answers_what_predict_writes(
    family: str, family_runs: dict, tiny_family_dirs: dict, tmp_path: Path
) -> None:
    """The ASGI app and `semloc predict` give one post the same probabilities, with and
    without a picture, for every family."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from semloc.config import ServeConfig
    from semloc.serve.app import create_app

    posts, _, run = family_runs[family]
    pred = tmp_path / "pred.parquet"
    assert main(["predict", str(run), str(posts), "-o", str(pred), "--device", "cpu"]) == 0
    table = pd.read_parquet(pred).set_index("id")
    records = {r["id"]: r for r in map(json.loads, posts.read_text().splitlines())}
    with_image, without = records["p000"], records["p001"]
    assert "image" in with_image and "image" not in without
    cfg = ServeConfig(device="cpu", backbone=str(tiny_family_dirs[family]))
    with TestClient(create_app(run, cfg)) as client:
        for rec in (with_image, without):
            files = None
            if "image" in rec:
                image = (posts.parent / rec["image"]).read_bytes()
                files = {"image": ("photo.jpg", image, "image/jpeg")}
            r = client.post("/predict", data={"text": rec["text"]}, files=files)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["image"]["outcome"] == ("present" if files else "no_image")
            served = np.array(list(body["probabilities"].values()))
            written = table.loc[rec["id"], [f"p_{lab}" for lab in body["probabilities"]]]
            np.testing.assert_allclose(served, written.to_numpy(float), rtol=0, atol=1e-6)
            assert body["predicted_label"] == table.loc[rec["id"], "predicted_label"]
