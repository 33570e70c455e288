"""Synthetic feature batches for model tests: any widths, padded text, some posts without image."""

from __future__ import annotations

import torch

from semloc.features.batch import FeatureBatch, FeatureDims

TINY_DIMS = FeatureDims(text_width=24, vision_width=40, embed_dim=16)
VIT_B32_DIMS = FeatureDims(text_width=512, vision_width=768, embed_dim=512)


def random_batch(
    batch_size: int,
    dims: FeatureDims = TINY_DIMS,
    text_tokens: int = 8,
    image_tokens: int = 6,
    num_classes: int = 5,
    missing_image: float = 0.25,
    seed: int = 0,
) -> FeatureBatch:
    """Random features shaped like the feature store's, with a generator of its own (the global
    one is left alone). Text lengths vary from 2 (CLIP's start and end tokens) to `text_tokens`;
    padding and missing images hold zeros, as the store writes them."""
    g = torch.Generator().manual_seed(seed)
    B, Nt, Nv = batch_size, text_tokens, image_tokens
    lengths = torch.randint(min(2, Nt), Nt + 1, (B,), generator=g)
    lengths[0] = Nt  # at least one unpadded post
    text_mask = torch.arange(Nt)[None, :] < lengths[:, None]  # (B, Nt)
    present = torch.rand(B, generator=g) >= missing_image  # (B,)
    text = torch.randn(B, Nt, dims.text_width, generator=g) * text_mask[..., None]
    image = torch.randn(B, Nv, dims.vision_width, generator=g) * present[:, None, None]
    return FeatureBatch(
        text_tokens=text,
        text_mask=text_mask,
        image_tokens=image,
        image_present=present,
        text_embed=torch.randn(B, dims.embed_dim, generator=g),
        image_embed=torch.randn(B, dims.embed_dim, generator=g) * present[:, None],
        labels=torch.randint(0, num_classes, (B,), generator=g),
        index=torch.arange(B),
    )
