"""The learning-rate multiplier of 0-dim parameters (`train.scalar_lr_scale`) and kappa's init
(`model.prior_scale_init`): defaults leave the optimizer and the model as they were."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from semloc.config import ModelConfig, TrainConfig, load_config
from semloc.errors import ConfigError
from semloc.models.sgmft import SGMFT
from semloc.training.trainer import Trainer, weight_decay_groups

try:
    from helpers_model import TINY_DIMS, random_batch
except ImportError:  # collected with tests/ as a package
    from tests.helpers_model import TINY_DIMS, random_batch

TINY = ModelConfig(dim=32, num_heads=4)


def tiny_model(**changes) -> SGMFT:
    torch.manual_seed(0)
    return SGMFT(dataclasses.replace(TINY, **changes), TINY_DIMS, 5)


def scalar_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.ndim == 0}


def test_sgmft_scalars_are_the_gate_and_the_prior():
    assert scalar_names(tiny_model()) == {"gate_scale", "gate_bias", "fusion.prior_scale"}


def test_default_groups_are_unchanged():
    model = tiny_model()
    groups = weight_decay_groups(model, 0.01)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert all("lr" not in g for g in groups)  # both at the optimizer's lr
    params = list(model.parameters())
    assert [id(p) for g in groups for p in g["params"]] == [
        *(id(p) for p in params if p.ndim >= 2),
        *(id(p) for p in params if p.ndim < 2),
    ]


def test_scalars_get_their_own_group():
    model = tiny_model()
    decay, no_decay, scalars = weight_decay_groups(model, 0.01, scalar_lr=0.03)
    assert scalars == {"params": scalars["params"], "weight_decay": 0.0, "lr": 0.03}
    assert {id(p) for p in scalars["params"]} == {id(p) for p in model.parameters() if p.ndim == 0}
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert "lr" not in decay and "lr" not in no_decay
    # a model without 0-dim parameters gets no empty third group
    assert len(weight_decay_groups(torch.nn.Linear(3, 2), 0.01, scalar_lr=0.03)) == 2


def trainer(tmp_path, **train) -> Trainer:
    cfg = TrainConfig(epochs=2, progress=False, device="cpu", warmup_fraction=0.25, **train)
    batches = [random_batch(8, seed=i) for i in range(4)]
    return Trainer(
        tiny_model(), cfg, batches, batches, [str(c) for c in range(5)], tmp_path,
        checkpoint_meta={},
    )  # fmt: skip


def group_lrs(t: Trainer) -> list[float]:
    return [g["lr"] for g in t.optimizer.param_groups]


def test_the_multiplier_composes_with_the_schedule(tmp_path):
    t = trainer(tmp_path, lr=1e-3, scalar_lr_scale=30.0)
    assert len(t.optimizer.param_groups) == 3
    for _ in range(6):  # through the warm-up (2 steps) and into the cosine
        lr, lr_no_decay, lr_scalars = group_lrs(t)
        assert lr == lr_no_decay
        assert lr_scalars == pytest.approx(30.0 * lr, rel=1e-12)
        assert lr > 0
        t.optimizer.step()
        t.scheduler.step()
    assert group_lrs(t)[0] < 1e-3  # the schedule did move the lr


def test_default_trainer_has_two_groups(tmp_path):
    t = trainer(tmp_path, lr=1e-3)
    assert len(t.optimizer.param_groups) == 2
    assert group_lrs(t) == [group_lrs(t)[0]] * 2


def test_scaled_scalars_move_further(tmp_path):
    def moved(scale: float) -> float:
        t = trainer(tmp_path / str(scale), lr=1e-3, scalar_lr_scale=scale)
        t.fit()
        return abs(t.model.gate_scale.item() - TINY.gate_scale_init)

    assert moved(30.0) > 5 * moved(1.0)


def test_prior_scale_init():
    assert tiny_model().fusion.prior_scale.item() == 1.0
    assert tiny_model(prior_scale_init=0.0).fusion.prior_scale.item() == 0.0
    assert tiny_model(prior_scale_init=-2.5).fusion.prior_scale.item() == -2.5


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.scalar_lr_scale=-1", "train.scalar_lr_scale"),
        ("train.scalar_lr_scale=.nan", "train.scalar_lr_scale"),
        ("model.prior_scale_init=.inf", "model.prior_scale_init"),
        ("model.prior_scale_init=big", "model.prior_scale_init"),
    ],
)
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [override])


def test_config_defaults():
    cfg = load_config(None, [])
    assert cfg.train.scalar_lr_scale == 1.0 and cfg.model.prior_scale_init == 1.0
    assert load_config(None, ["train.scalar_lr_scale=0"]).train.scalar_lr_scale == 0.0
