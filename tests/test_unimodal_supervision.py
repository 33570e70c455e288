"""Deep supervision of SG-MFT's unimodal streams (`model.unimodal_supervision`) and the trainer's
auxiliary terms: shapes, golden numbers, missing image, the loss the trainer adds, checkpoints.

The golden file pins the auxiliary logits of a tiny seeded model; after an intended change,
regenerate it and say why in the commit:

    python tests/test_unimodal_supervision.py --regenerate-golden
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from semloc.config import ModelConfig, load_config
from semloc.errors import ConfigError
from semloc.features.synthetic import make_random_store
from semloc.models import SGMFT, build_model
from semloc.models.base import AuxiliaryLogits, ModelOutput
from semloc.runs import load_run, saved_config, train_run
from semloc.training.trainer import auxiliary_loss

try:
    from helpers_model import TINY_DIMS, random_batch
except ImportError:  # collected with tests/ as a package
    from tests.helpers_model import TINY_DIMS, random_batch

GOLDEN = Path(__file__).parent / "data" / "sgmft_unimodal_golden.json"
TINY = ModelConfig(dim=32, num_heads=4, dropout=0.0, unimodal_supervision=0.5)
NUM_CLASSES = 5


def tiny_model(name: str = "sgmft", seed: int = 0, **changes) -> nn.Module:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(TINY, name=name, **changes)
    return build_model(cfg, TINY_DIMS, NUM_CLASSES)


def nudge(model: nn.Module) -> nn.Module:
    # zero-initialised blocks (FiLM, the weighting MLP's last layer) would hide their terms
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


# ----------------------------------------------------------------------------------------------
# shapes and what the option changes


@pytest.mark.parametrize("name", ["sgmft", "cross_transformer"])
def test_auxiliary_terms_only_in_training(name):
    batch = random_batch(6, missing_image=0.5, seed=2)
    model = tiny_model(name).train()
    out = model(batch)
    assert len(out.auxiliary) == 2
    text, image = out.auxiliary
    for term in out.auxiliary:
        assert isinstance(term, AuxiliaryLogits)
        assert term.logits.shape == (6, NUM_CLASSES) and term.mask.shape == (6,)
        assert term.mask.dtype == torch.bool and term.weight == 0.5
    assert text.mask.all()
    assert torch.equal(image.mask, batch.image_present)  # no image term without a picture
    assert model.eval()(batch).auxiliary is None
    assert tiny_model(name, unimodal_supervision=0.0).train()(batch).auxiliary is None


def test_each_model_has_its_own_default():
    # unset (None): the model's own default, 0 for both since 2026-12-07 (SG-MFT's was 1.0), so
    # SG-MFT and the unguided transformer differ by exactly the similarity guidance
    batch = random_batch(6, missing_image=0.3, seed=2)
    assert ModelConfig().unimodal_supervision is None
    assert load_config(None, []).model.unimodal_supervision is None
    for name in ("sgmft", "cross_transformer"):
        assert tiny_model(name, unimodal_supervision=None).train()(batch).auxiliary is None
        on = tiny_model(name, unimodal_supervision=1.0).train()(batch)
        assert [t.weight for t in on.auxiliary] == [1.0, 1.0]  # set explicitly, it acts


def test_option_adds_no_parameters_and_leaves_inference_alone():
    batch = random_batch(6, missing_image=0.3, seed=2)
    on, off = tiny_model(), tiny_model(unimodal_supervision=0.0)
    assert [n for n, _ in on.named_parameters()] == [n for n, _ in off.named_parameters()]
    nudge(on), nudge(off)
    with torch.no_grad():
        a, b = on.eval()(batch, return_token_similarity=True), off.eval()(batch, True)
    for field in dataclasses.fields(ModelOutput):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert (x is None) == (y is None), field.name
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), field.name


def test_fused_logits_are_the_weighted_unimodal_logits():
    # f = pi_t z_t + pi_v z_v and the head is linear with pi summing to 1, so the fused logits
    # are pi_t head(z_t) + pi_v head(z_v): the auxiliary heads are the fused head's parts
    batch = random_batch(8, missing_image=0.25, seed=4)
    model = nudge(tiny_model()).train()  # dropout is 0: training mode is deterministic
    with torch.no_grad():
        out = model(batch)
    pi = out.modality_weights
    text, image = out.auxiliary
    torch.testing.assert_close(
        out.logits, pi[:, :1] * text.logits + pi[:, 1:] * image.logits, atol=1e-5, rtol=0
    )
    absent = ~batch.image_present
    torch.testing.assert_close(out.logits[absent], text.logits[absent], atol=1e-5, rtol=0)


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf])
def test_bad_weight_is_refused(value):
    with pytest.raises(ConfigError, match=r"model\.unimodal_supervision"):
        SGMFT(dataclasses.replace(TINY, unimodal_supervision=value), TINY_DIMS, NUM_CLASSES)
    with pytest.raises(ConfigError, match=r"model\.unimodal_supervision"):
        load_config(None, [f"model.unimodal_supervision={value}"])


# ----------------------------------------------------------------------------------------------
# golden


def golden_outputs(batch) -> dict[str, dict[str, list]]:
    result = {}
    for name in ("sgmft", "cross_transformer"):
        model = nudge(tiny_model(name)).train()
        with torch.no_grad():
            out = model(batch)
        result[name] = {
            "logits": out.logits.tolist(),
            "text_logits": out.auxiliary[0].logits.tolist(),
            "image_logits": out.auxiliary[1].logits.tolist(),
            "image_mask": out.auxiliary[1].mask.tolist(),
        }
    return result


def golden_batch():
    batch = random_batch(4, text_tokens=7, image_tokens=5, missing_image=0.0, seed=3)
    batch.image_present[1] = False  # one text-only post
    batch.image_tokens[1] = 0.0
    batch.image_embed[1] = 0.0
    return batch


def regenerate_golden() -> None:
    data = {
        "about": "tests/test_unimodal_supervision.py: tiny models, seed 0, nudged, train mode",
        "config": dataclasses.asdict(TINY),
        "outputs": golden_outputs(golden_batch()),
    }
    GOLDEN.write_text(json.dumps(data) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")


def test_golden():
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    # settings added after the file was written, at values that leave the outputs as they were
    newer = {"text_token_dropout": 0.0, "text_fallback": False}
    config = dataclasses.asdict(TINY)
    assert {k: config[k] for k in newer} == newer
    assert data["config"] == {k: v for k, v in config.items() if k not in newer}
    actual = golden_outputs(golden_batch())
    assert actual.keys() == data["outputs"].keys()
    for name, expected in data["outputs"].items():
        for field, values in expected.items():
            torch.testing.assert_close(
                torch.tensor(actual[name][field]),
                torch.tensor(values),
                atol=1e-5,
                rtol=0,
                msg=f"{name}: {field} differs from {GOLDEN.name}",
            )


# ----------------------------------------------------------------------------------------------
# missing image


def test_missing_image_auxiliary_terms_ignore_image_slots():
    batch = random_batch(6, missing_image=0.5, seed=5)
    absent = ~batch.image_present
    assert absent.any() and batch.image_present.any()
    garbage = dataclasses.replace(
        batch, image_tokens=batch.image_tokens.clone(), image_embed=batch.image_embed.clone()
    )
    garbage.image_tokens[absent] = float("nan")
    garbage.image_embed[absent] = float("inf")
    model = tiny_model(dropout=0.1).train()
    loss_fn = nn.CrossEntropyLoss()
    outs, grads = [], []
    for b in (batch, garbage):
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks
        out = model(b)
        auxiliary_loss(out, b.labels, loss_fn).backward()
        outs.append(out)
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for clean, junk in zip(outs[0].auxiliary, outs[1].auxiliary, strict=True):
        assert torch.equal(clean.logits, junk.logits)
    for g_clean, g_junk in zip(*grads, strict=True):
        assert torch.isfinite(g_junk).all()
        assert torch.equal(g_clean, g_junk)


def test_posts_without_picture_get_no_image_term():
    batch = random_batch(6, missing_image=1.0, seed=6)
    assert not batch.image_present.any()
    model = tiny_model().train()
    out = model(batch)
    text_only = dataclasses.replace(out, auxiliary=out.auxiliary[:1])
    loss_fn = nn.CrossEntropyLoss()
    assert torch.equal(
        auxiliary_loss(out, batch.labels, loss_fn), auxiliary_loss(text_only, batch.labels, loss_fn)
    )
    model.zero_grad()
    auxiliary_loss(out, batch.labels, loss_fn).backward()
    # with no picture in the batch, nothing reaches the image projection
    assert all(p.grad is None or not p.grad.any() for p in model.image_proj.parameters())


# ----------------------------------------------------------------------------------------------
# the loss the trainer adds


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_auxiliary_loss_is_the_main_loss_on_its_rows(smoothing, weighted):
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(7, 3, generator=g), torch.randint(0, 3, (7,), generator=g)
    weight = torch.tensor([0.5, 1.0, 2.0]) if weighted else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing)
    full = ModelOutput(logits, auxiliary=(AuxiliaryLogits(logits, torch.ones(7, dtype=bool), 0.3),))
    torch.testing.assert_close(auxiliary_loss(full, labels, loss_fn), 0.3 * loss_fn(logits, labels))
    # a masked-out row adds nothing; the denominator stays the whole batch's (as in the main
    # loss), so DDP's per-rank weighting of the summed loss stays exact
    mask = torch.tensor([True, False, True, True, False, True, False])
    part = ModelOutput(logits, auxiliary=(AuxiliaryLogits(logits, mask, 2.0),))
    per_row = nn.functional.cross_entropy(
        logits, labels, weight=weight, label_smoothing=smoothing, reduction="none"
    )
    denom = weight[labels].sum() if weighted else 7.0
    torch.testing.assert_close(
        auxiliary_loss(part, labels, loss_fn), 2.0 * per_row[mask].sum() / denom
    )
    assert auxiliary_loss(ModelOutput(logits), labels, loss_fn) is None


def test_gradient_reaches_through_the_auxiliary_path():
    batch = random_batch(8, missing_image=0.25, seed=7)
    model = tiny_model(dropout=0.1).train()
    torch.manual_seed(0)
    out = model(batch)
    aux = auxiliary_loss(out, batch.labels, nn.CrossEntropyLoss())
    params = [model.text_proj[0].weight, model.image_proj[0].weight, model.head[1].weight]
    grads = torch.autograd.grad(aux, params)
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_random_store(tmp_path_factory.mktemp("s") / "store", 120, num_classes=4, signal=0.6)


FAST = [
    "model.dim=16",
    "model.num_heads=2",
    "model.sim_layers=1",
    "train.progress=false",
    "train.lr=1e-3",
    "train.epochs=1",
]


def test_trainer_adds_the_term_and_a_checkpoint_with_it_loads_and_predicts(store, tmp_path):
    from semloc.prediction import predict_store

    off = train_run(
        store.root, load_config(None, [*FAST, "model.unimodal_supervision=0"]), tmp_path / "off"
    )
    cfg = load_config(None, [*FAST, "model.unimodal_supervision=1.0"])
    on = train_run(store.root, cfg, tmp_path / "on")
    # same seed, same batches, same first forward pass: the trained objective differs
    assert on.history[0]["train_loss"] > off.history[0]["train_loss"]
    # unset, SG-MFT takes its own default (0 since 2026-12-07): the same run as asking for 0
    default = train_run(store.root, load_config(None, FAST), tmp_path / "default")
    assert default.history == [
        {**h, "seconds": d["seconds"], "train_posts_per_s": d["train_posts_per_s"]}
        for h, d in zip(off.history, default.history, strict=True)
    ]
    run = load_run(tmp_path / "on")
    state = torch.load(tmp_path / "on" / "best.pt", weights_only=True)
    assert saved_config(state).model.unimodal_supervision == 1.0
    preds = predict_store(run, store)
    assert np.isfinite(preds.logits).all() and preds.logits.shape[1] == 4
    # inference uses the fused head only: the model rebuilt without the option predicts the same
    del state["config"]["model"]["unimodal_supervision"]  # what an older semloc wrote
    assert saved_config(state).model.unimodal_supervision == 0.0
    torch.save(state, tmp_path / "on" / "best.pt")
    np.testing.assert_array_equal(
        predict_store(load_run(tmp_path / "on"), store).logits, preds.logits
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--regenerate-golden"]:
        regenerate_golden()
    else:
        sys.exit("usage: python tests/test_unimodal_supervision.py --regenerate-golden")
