"""Picture dropout (`train.drop_pictures`, `semloc.features.drop_pictures`)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from semloc.config import load_config
from semloc.features import drop_pictures
from semloc.models import build_model

try:
    from helpers_model import random_batch
except ImportError:  # collected with tests/ as a package
    from tests.helpers_model import random_batch


def test_only_the_presence_of_dropped_pictures_changes():
    batch = random_batch(32, missing_image=0.25, seed=3)
    before = batch.image_present.clone()
    out = drop_pictures(batch, 1.0, torch.Generator().manual_seed(0))
    assert not out.image_present.any()  # every picture withheld, none added
    for name in ("text_tokens", "text_mask", "image_tokens", "text_embed", "image_embed"):
        assert torch.equal(getattr(out, name), getattr(batch, name)), name
    assert torch.equal(out.labels, batch.labels) and torch.equal(out.index, batch.index)
    assert torch.equal(batch.image_present, before)  # the input batch is not modified in place


def test_the_fraction_is_the_rate_of_dropped_pictures_and_posts_without_stay_without():
    batch = random_batch(64, missing_image=0.25, seed=1)
    had = batch.image_present.bool()
    g = torch.Generator().manual_seed(0)
    dropped = total = 0
    for _ in range(50):
        out = drop_pictures(batch, 0.3, g)
        assert not (out.image_present & ~had).any()  # a post without a picture never gains one
        dropped += int((had & ~out.image_present).sum())
        total += int(had.sum())
    assert abs(dropped / total - 0.3) < 0.03  # ~2,400 draws: sampling std ~0.01


def test_same_generator_seed_same_drops_and_nothing_to_drop_is_unchanged():
    batch = random_batch(16, missing_image=0.0, seed=2)
    a = drop_pictures(batch, 0.5, torch.Generator().manual_seed(7))
    b = drop_pictures(batch, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a.image_present, b.image_present)
    assert 0 < int(a.image_present.sum()) < len(batch)
    assert drop_pictures(batch, 0.0, torch.Generator()) is batch
    no_picture = random_batch(4, missing_image=1.0, seed=0)
    assert drop_pictures(no_picture, 1.0, torch.Generator()) is no_picture
    with pytest.raises(ValueError, match="fraction"):
        drop_pictures(batch, -0.1, torch.Generator())


@pytest.mark.parametrize("name", ["sgmft", "cross_transformer", "gmu", "concat_mlp"])
def test_a_dropped_picture_is_exactly_a_post_without_one(name):
    batch = random_batch(8, missing_image=0.0, seed=4)
    cfg = load_config(None, [f"model.name={name}", "model.dim=16", "model.num_heads=2"])
    model = build_model(cfg.model, batch.dims, 5).eval()
    dropped = drop_pictures(batch, 1.0, torch.Generator().manual_seed(0))
    # the same posts with their image slots garbage and no picture: what a picture-less post is
    garbage = replace(
        dropped,
        image_tokens=torch.full_like(batch.image_tokens, 1e30),
        image_embed=torch.full_like(batch.image_embed, float("nan")),
    )
    with torch.no_grad():
        assert torch.equal(model(dropped).logits, model(garbage).logits)
