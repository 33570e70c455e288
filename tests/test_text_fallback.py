"""SG-MFT's similarity-aware text fallback (`model.text_fallback`): the mixture it outputs, the
picture-match probability r, what r learns from, missing pictures, and the trainer's terms with
targets of their own. Golden numbers and the shared behaviour tests (batch order, padding,
missing image, parameter count) run it as the VARIANTS entry "text_fallback=True" of
tests/test_model.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from semloc.config import ModelConfig, load_config
from semloc.models import SGMFT, build_model
from semloc.models.base import AuxiliaryLogits, ModelOutput
from semloc.runs import LEGACY_MODEL_SETTINGS
from semloc.training.trainer import auxiliary_loss

try:
    from helpers_model import TINY_DIMS, random_batch
except ImportError:  # collected with tests/ as a package
    from tests.helpers_model import TINY_DIMS, random_batch

TINY = ModelConfig(dim=32, num_heads=4, dropout=0.0, text_fallback=True, unimodal_supervision=0.0)
NUM_CLASSES = 5


def tiny_model(seed: int = 0, **changes) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(TINY, **changes), TINY_DIMS, NUM_CLASSES)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # zero-initialised blocks would hide their terms
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def fused_and_text(model: SGMFT, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's fused logits (its fallback taken out) and its text classifier's logits."""
    fallback, model.fallback = model.fallback, None
    try:
        fused = model(batch).logits
    finally:
        model.fallback = fallback
    u = nn.functional.normalize(batch.text_embed, dim=-1)
    return fused, fallback.text_head(u * u.shape[-1] ** 0.5)


def test_output_is_the_mixture_of_fused_and_text():
    batch = random_batch(8, missing_image=0.25, seed=4)
    model = tiny_model().eval()
    with torch.no_grad():
        out = model(batch)
        fused, text = fused_and_text(model, batch)
    r = out.picture_match
    assert out.logits.shape == (8, NUM_CLASSES) and r.shape == (8,)
    expected = r[:, None] * fused.softmax(-1) + (1 - r[:, None]) * text.softmax(-1)
    torch.testing.assert_close(out.logits.exp(), expected, atol=1e-6, rtol=0)
    # log-probabilities: softmax gives the mixture back, so calibration and prediction need
    # nothing new
    torch.testing.assert_close(out.logits.softmax(-1), expected, atol=1e-6, rtol=0)
    present = batch.image_present
    assert ((r > 0) & (r < 1))[present].all() and (r[~present] == 0).all()


def test_missing_picture_gives_the_text_classifier_alone():
    batch = random_batch(8, missing_image=0.5, seed=5)
    absent = ~batch.image_present
    assert absent.any() and (~absent).any()
    model = tiny_model().eval()
    with torch.no_grad():
        out = model(batch)
        _, text = fused_and_text(model, batch)
        garbage = dataclasses.replace(
            batch,
            image_tokens=torch.where(absent[:, None, None], 1e4, batch.image_tokens),
            image_embed=torch.where(absent[:, None], -7.0, batch.image_embed),
        )
        again = model(garbage)
    torch.testing.assert_close(out.logits[absent], text.log_softmax(-1)[absent])
    torch.testing.assert_close(again.logits, out.logits, atol=0, rtol=0)


def test_match_learns_only_from_the_mismatches():
    # r is detached from the classification: the main loss moves the text classifier and the
    # fused path, never the match MLP; the match terms move the match MLP alone
    batch = random_batch(8, missing_image=0.25, seed=6)
    model = tiny_model().train()
    out = model(batch)
    nn.functional.cross_entropy(out.logits, batch.labels).backward()
    fallback = model.fallback
    assert all(p.grad is None for p in fallback.match.parameters())
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in fallback.text_head.parameters()
    )
    model.zero_grad(set_to_none=True)
    out = model(batch)
    _, positive, negative = out.auxiliary
    (positive.logits.sum() + negative.logits.sum()).backward()
    assert all(p.grad is not None for p in fallback.match.parameters())
    assert all(p.grad is None for p in fallback.text_head.parameters())


def test_training_terms():
    batch = random_batch(8, missing_image=0.25, seed=7)
    present = batch.image_present
    model = tiny_model().train()
    torch.manual_seed(3)
    out = model(batch)
    text, positive, negative = out.auxiliary
    assert text.targets is None and text.mask.all() and text.weight == 1.0
    assert text.logits.shape == (8, NUM_CLASSES)
    for term, target in ((positive, 1), (negative, 0)):
        assert term.logits.shape == (8, 2) and (term.logits[:, 0] == 0).all()
        assert torch.equal(term.mask, present) and term.weight == 0.5
        assert (term.targets == target).all()
    # each negative is the post's text with another post's picture: its logit is the match
    # MLP's at that pair's cosine, and no post keeps its own picture
    u = nn.functional.normalize(batch.text_embed, dim=-1)
    w = nn.functional.normalize(batch.image_embed, dim=-1)
    rows = present.nonzero().squeeze(1)
    cosines = u[rows] @ w[rows].T  # (P, P)
    match_at = []
    confidence = model.fallback.text_head(u * u.shape[-1] ** 0.5).log_softmax(-1).amax(-1)
    for i, row in enumerate(rows):
        x = torch.stack([model.standardise(cosines[i]), confidence[row].expand(len(rows))], -1)
        match_at.append(model.fallback.match_gain * model.fallback.match(x).squeeze(-1))
    for i, row in enumerate(rows):
        own = (match_at[i] - positive.logits[row, 1]).abs().argmin()
        other = (match_at[i] - negative.logits[row, 1]).abs().argmin()
        assert own == i and other != i
    assert model.eval()(batch).auxiliary is None


@pytest.mark.parametrize("pictures", [0, 1])
def test_fewer_than_two_pictures_have_no_mismatch_to_learn_from(pictures):
    batch = random_batch(4, missing_image=0.0, seed=8)
    batch.image_present[pictures:] = False
    batch.image_embed[pictures:] = 0.0
    model = tiny_model().train()
    out = model(batch)
    text, positive, negative = out.auxiliary
    assert text.mask.all() and not positive.mask.any() and not negative.mask.any()
    # the match terms add nothing, yet every parameter takes part in the step (DDP needs it)
    loss = auxiliary_loss(out, batch.labels, nn.CrossEntropyLoss())
    nn.functional.cross_entropy(out.logits, batch.labels).add(loss).backward()
    assert all(p.grad is not None for p in model.fallback.match.parameters())
    assert all((p.grad == 0).all() for p in model.fallback.match.parameters())


def test_auxiliary_loss_with_targets_of_its_own():
    labels = torch.tensor([0, 2, 1, 2])
    logits = torch.randn(4, 2)
    targets = torch.tensor([1, 0, 1, 1])
    mask = torch.tensor([True, True, False, True])
    term = AuxiliaryLogits(logits, mask, 0.5, targets)
    out = ModelOutput(logits=torch.zeros(4, 3), auxiliary=(term,))
    plain = nn.CrossEntropyLoss()
    per_row = nn.functional.cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(auxiliary_loss(out, labels, plain), 0.5 * per_row[mask].sum() / 4)
    # class weights weigh each post as the main loss does; label smoothing is the labels' own
    weights = torch.tensor([1.0, 2.0, 3.0])
    weighted = nn.CrossEntropyLoss(weight=weights, label_smoothing=0.2)
    expected = 0.5 * (per_row * weights[labels])[mask].sum() / weights[labels].sum()
    torch.testing.assert_close(auxiliary_loss(out, labels, weighted), expected)


def test_switch_defaults_and_other_models():
    assert ModelConfig().text_fallback is False
    assert LEGACY_MODEL_SETTINGS["text_fallback"] is False
    assert load_config(None, ["model.text_fallback=true"]).model.text_fallback is True
    batch = random_batch(6, missing_image=0.3, seed=2)
    # the unguided transformer has no similarity to fall back by: the switch does not reach it
    cross = tiny_model(name="cross_transformer").eval()
    assert cross.fallback is None and cross(batch).picture_match is None
    assert tiny_model(text_fallback=False).eval()(batch).picture_match is None


@pytest.mark.parametrize("missing", [0.0, 1.0])
def test_all_or_no_pictures_are_finite(missing):
    batch = random_batch(5, missing_image=missing, seed=9)
    model = tiny_model().train()
    out = model(batch)
    loss = nn.functional.cross_entropy(out.logits, batch.labels)
    loss = loss + auxiliary_loss(out, batch.labels, nn.CrossEntropyLoss())
    loss.backward()
    assert torch.isfinite(out.logits).all() and torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
