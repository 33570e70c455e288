"""Mismatch augmentation (`train.swap_pictures`, `semloc.features.swap_pictures`)."""

from __future__ import annotations

import pytest
import torch

from semloc.features import swap_pictures

try:
    from helpers_model import random_batch
except ImportError:  # collected with tests/ as a package
    from tests.helpers_model import random_batch


def picture_of(batch, row: int) -> tuple[torch.Tensor, torch.Tensor]:
    return batch.image_tokens[row], batch.image_embed[row]


def source_rows(before, after) -> dict[int, int]:
    """For each post with a picture after the swap, the row whose picture it now holds."""
    found = {}
    for row in torch.nonzero(after.image_present, as_tuple=False)[:, 0].tolist():
        tokens, embed = picture_of(after, row)
        matches = [
            j
            for j in range(len(before))
            if torch.equal(before.image_tokens[j], tokens)
            and torch.equal(before.image_embed[j], embed)
        ]
        assert len(matches) == 1, "a swapped-in picture is exactly one post's picture"
        found[row] = matches[0]
    return found


def test_fraction_one_gives_every_picture_post_another_posts_picture():
    batch = random_batch(32, missing_image=0.25, seed=3)
    out = swap_pictures(batch, 1.0, torch.Generator().manual_seed(0))
    src = source_rows(batch, out)
    with_picture = set(torch.nonzero(batch.image_present, as_tuple=False)[:, 0].tolist())
    assert set(src) == with_picture and len(with_picture) >= 2
    assert all(src[r] != r for r in src)  # nobody keeps its own picture
    assert sorted(src.values()) == sorted(with_picture)  # a permutation: every picture used once
    # posts without a picture, texts, labels and presence are untouched
    for name in ("text_tokens", "text_mask", "image_present", "text_embed", "labels", "index"):
        assert torch.equal(getattr(out, name), getattr(batch, name)), name
    for row in set(range(len(batch))) - with_picture:
        assert torch.equal(out.image_tokens[row], batch.image_tokens[row])
    # the input batch is not modified in place
    assert torch.equal(
        batch.image_tokens, random_batch(32, missing_image=0.25, seed=3).image_tokens
    )


def test_the_fraction_is_the_rate_of_swapped_posts():
    batch = random_batch(64, missing_image=0.0, seed=1)
    g = torch.Generator().manual_seed(0)
    swapped = total = 0
    for _ in range(50):
        src = source_rows(batch, swap_pictures(batch, 0.25, g))
        swapped += sum(src[r] != r for r in src)
        total += len(src)
    rate = swapped / total  # 3,200 draws: sampling std ~0.008
    assert abs(rate - 0.25) < 0.03


def test_same_generator_seed_same_swaps_and_nothing_to_swap_is_unchanged():
    batch = random_batch(16, seed=2)
    a = swap_pictures(batch, 0.5, torch.Generator().manual_seed(7))
    b = swap_pictures(batch, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a.image_tokens, b.image_tokens) and torch.equal(a.image_embed, b.image_embed)
    assert swap_pictures(batch, 0.0, torch.Generator()) is batch
    one_picture = random_batch(4, missing_image=1.0, seed=0)
    one_picture.image_present[0] = True
    assert swap_pictures(one_picture, 1.0, torch.Generator()) is one_picture
    with pytest.raises(ValueError, match="fraction"):
        swap_pictures(batch, 1.5, torch.Generator())
