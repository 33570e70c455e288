"""Baselines: every trained one accepts SG-MFT's batch, ignores a missing image's slots and trains
through `semloc train`; zero-shot finds known answers; the linear probe picks C on dev only."""

from __future__ import annotations

import dataclasses
import json
import zlib

import numpy as np
import pytest
import torch

import semloc.plots
import semloc.probes.linear_probe as linear_probe
from semloc.cli import main
from semloc.config import ModelConfig
from semloc.errors import SemlocError
from semloc.features.store import FeatureStore, FeatureStoreWriter, ShardData
from semloc.features.synthetic import make_random_store
from semloc.models import MODEL_NAMES, build_model
from semloc.models.base import ModelOutput
from semloc.models.baselines import BASELINES
from semloc.probes.zeroshot import (
    Prompts,
    build_zero_shot_classifier,
    evaluate_zero_shot,
    load_prompts,
)

try:
    from helpers_model import TINY_DIMS, VIT_B32_DIMS, random_batch
except ImportError:  # collected with tests/ as a package
    from tests.helpers_model import TINY_DIMS, VIT_B32_DIMS, random_batch

TINY = ModelConfig(dim=16, num_heads=2, sim_layers=1)
TRAIN_ARGS = [
    "train.epochs=1",
    "train.batch_size=16",
    "train.progress=false",
    "model.dim=16",
    "model.num_heads=2",
    "model.sim_layers=1",
]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return make_random_store(tmp_path_factory.mktemp("store") / "feats", 80, shard_size=64)


def tiny(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(TINY, name=name), TINY_DIMS, 5).eval()


# ----------------------------------------------------------------------------------------------
# trained baselines


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", list(BASELINES))
def test_missing_image_ignores_image_slots(name):
    batch = random_batch(8, missing_image=0.5, seed=1)
    absent = ~batch.image_present
    assert absent.any() and batch.image_present.any()
    model = tiny(name)
    out = model(batch)
    assert isinstance(out, ModelOutput) and out.logits.shape == (8, 5)
    garbage = dataclasses.replace(
        batch, image_tokens=batch.image_tokens.clone(), image_embed=batch.image_embed.clone()
    )
    garbage.image_tokens[absent] = 1e4 * torch.randn_like(garbage.image_tokens[absent])
    garbage.image_embed[absent] = float("nan")
    out2 = model(garbage)
    assert torch.isfinite(out2.logits).all()
    torch.testing.assert_close(out2.logits, out.logits, atol=1e-6, rtol=0)
    if out.modality_weights is not None:  # a missing image weighs nothing
        torch.testing.assert_close(out.modality_weights[absent, 1], torch.zeros(int(absent.sum())))


@pytest.mark.parametrize("name", list(BASELINES))
def test_forward_backward_any_widths(name):
    batch = random_batch(4, missing_image=0.25, seed=2)
    model = tiny(name).train()
    model(batch).logits.logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_image_only_models_give_the_prior_without_image():
    batch = random_batch(6, missing_image=0.5, seed=3)
    absent = ~batch.image_present
    for name in ("image_linear", "image_mlp", "image_transformer"):
        logits = tiny(name)(batch).logits[absent]
        torch.testing.assert_close(logits, logits[:1].expand_as(logits))  # same for every such row


def test_parameter_counts_at_vit_b32_widths():
    def count(name: str) -> int:
        with torch.device("meta"):
            model = build_model(ModelConfig(name=name), VIT_B32_DIMS, 8)
        return sum(p.numel() for p in model.parameters())

    sgmft = count("sgmft")
    assert abs(count("cross_transformer") - sgmft) < 0.05 * sgmft  # same size, no guidance
    for name in BASELINES:
        assert count(name) <= sgmft, name  # no baseline wins by size alone


@pytest.mark.parametrize("name", list(BASELINES))
def test_trains_one_epoch_through_the_cli(tiny_store, tmp_path, name, capsys, monkeypatch):
    # training curves cost more than a tiny model's epoch; plots are tested on their own
    monkeypatch.setattr(semloc.plots, "plot_training_curves", lambda *a, **k: None)
    out = tmp_path / name
    assert (
        main(["train", str(tiny_store.root), "--out", str(out), "--model", name, *TRAIN_ARGS]) == 0
    )
    assert (out / "best.pt").exists()
    assert "dev macro-F1" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# zero-shot


def fake_encode_texts(texts: list[str]) -> np.ndarray:
    """A deterministic 'text tower': each distinct string gets its own random direction."""
    return np.stack(
        [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(16) for t in texts]
    ).astype(np.float32)


def write_store(root, text_embed, image_embed, present, labels, splits) -> FeatureStore:
    n, p = text_embed.shape
    writer = FeatureStoreWriter(
        root,
        {
            "backbone": {"name": "fake-clip", "weights_sha256": "none"},
            "preprocessing": {"kind": "test"},
            "dtype": "float32",
            "dims": {"text_width": 4, "vision_width": 4, "embed_dim": p, "num_image_tokens": 2},
        },
    )
    writer.write_shard(
        0,
        ShardData(
            ids=[f"p{i}" for i in range(n)],
            labels=list(labels),
            splits=list(splits),
            text_tokens=[np.ones((2, 4), np.float32)] * n,
            image_tokens=np.zeros((n, 2, 4), np.float32),
            text_embed=text_embed,
            image_embed=image_embed,
            image_present=present,
        ),
    )
    writer.finalize()
    return FeatureStore(root)


def test_zero_shot_classifier_averages_normalised_prompts():
    prompts = Prompts(templates=["a photo of a {}.", "i am at the {}."], classes={"gym": ["gym"]})
    got = build_zero_shot_classifier(fake_encode_texts, ["gym", "home"], prompts)
    raw = fake_encode_texts(["a photo of a gym.", "i am at the gym."])
    want = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).mean(0)
    np.testing.assert_allclose(got[0], want / np.linalg.norm(want), rtol=1e-5)
    # a label without phrases reads as its own name
    raw = fake_encode_texts(["a photo of a home.", "i am at the home."])
    assert np.dot(got[1], raw[0] / np.linalg.norm(raw[0])) > 0.5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_zero_shot_finds_known_answers(tmp_path):
    labels = ["home", "office", "park", "gym"]
    prompts = load_prompts()
    classes = build_zero_shot_classifier(fake_encode_texts, labels, prompts)  # (4, 16)
    rng = np.random.default_rng(0)
    y = np.arange(40) % 4
    image = classes[y] * 3.0 + 0.05 * rng.standard_normal((40, 16))  # scale must not matter
    text = rng.standard_normal((40, 16))  # uninformative
    present = np.ones(40, bool)
    present[:4] = False  # these posts' text names their class instead
    text[:4] = classes[y[:4]]
    image[:4] = rng.standard_normal((4, 16))  # garbage in the slots of a missing image
    store = write_store(
        tmp_path / "zs", text.astype(np.float32), image.astype(np.float32), present,
        [labels[c] for c in y], ["test"] * 40,
    )  # fmt: skip
    m = evaluate_zero_shot(
        store, modality="image", encode_texts=fake_encode_texts, out_dir=tmp_path
    )
    assert m["accuracy"] == 1.0 and m["num_params"] == 0
    assert (tmp_path / "eval-test" / "metrics.json").exists()
    text_only = evaluate_zero_shot(store, modality="text", encode_texts=fake_encode_texts)
    assert (
        text_only["accuracy"] < 0.7
    )  # random text embeddings: near chance beyond the 4 clear ones
    both = evaluate_zero_shot(store, modality="both", encode_texts=fake_encode_texts)
    assert both["accuracy"] >= text_only["accuracy"]


def test_zero_shot_uses_the_store_backbone(tmp_path, tiny_clip_dir):
    """End to end with a real (tiny, random) CLIP: a post whose text is exactly its class
    prompt is classified by the text tower that extraction used, found from the manifest."""
    from semloc.clip.extract import extract_to_store
    from semloc.config import ExtractConfig

    labels = ["cafe", "park", "gym"]
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "text": lab, "label": lab, "split": "test"}) + "\n"
            for i, lab in enumerate(labels * 2)
        )
    )
    cfg = ExtractConfig(backbone=str(tiny_clip_dir), dtype="float32", num_workers=0, progress=False)
    extract_to_store(posts, tmp_path / "feats", cfg)
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("templates: ['{}']\nclasses: {}\n")  # the prompt is the label itself
    for modality in ("text", "image"):  # no images: the image modality falls back to text
        m = evaluate_zero_shot(tmp_path / "feats", modality=modality, prompts=prompts)
        assert m["accuracy"] == 1.0, modality


def test_zero_shot_refuses_without_the_store_backbone(tiny_store):
    with pytest.raises(SemlocError, match=r"synthetic|backbone"):
        evaluate_zero_shot(tiny_store)  # the synthetic store's "CLIP" does not exist


def test_prompts_file_errors(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("templates: ['no placeholder']\nclasses: {}\n")
    with pytest.raises(SemlocError, match="exactly one"):
        load_prompts(bad)
    bad.write_text("templates: ['a {}']\nclasses: {home: []}\n")
    with pytest.raises(SemlocError, match="home"):
        load_prompts(bad)


# ----------------------------------------------------------------------------------------------
# linear probe


def test_linear_probe_separable_and_selects_on_dev_only(tmp_path, monkeypatch):
    store = make_random_store(tmp_path / "sep", 300, signal=3.0, seed=1)
    test_idx = set(store.indices("test").tolist())
    reads: list[set[int]] = []
    real_read = linear_probe.read_pooled

    def spy(store_, indices, *args, **kwargs):
        reads.append(set(np.asarray(indices).tolist()))
        return real_read(store_, indices, *args, **kwargs)

    monkeypatch.setattr(linear_probe, "read_pooled", spy)
    probe = linear_probe.fit_linear_probe(store, Cs=[1e-3, 1e-2, 0.1, 1.0])
    assert reads and all(not (r & test_idx) for r in reads)  # fitting never saw a test post
    assert reads[0] == set(store.indices("train").tolist())
    assert reads[1] == set(store.indices("dev").tolist())
    best = max(probe.dev_scores.values())
    chosen = min(c for c, s in probe.dev_scores.items() if s == best)
    assert chosen == probe.C
    m = linear_probe.evaluate_linear_probe(probe, store)
    assert reads[-1] == test_idx
    assert m["accuracy"] >= 0.95
    assert probe.num_params == 4 * (2 * 16 + 1) + 4
