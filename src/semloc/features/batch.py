"""The batch every model consumes: cached CLIP features for B posts.

Shapes (B batch, Nt text tokens after padding, Nv image tokens with CLS first):
    text_tokens   (B, Nt, text_width)   float32, zero where text_mask is False
    text_mask     (B, Nt)               bool, True for real tokens
    image_tokens  (B, Nv, vision_width) float32, zero (or anything) where image_present is False
    image_present (B,)                  bool
    text_embed    (B, embed_dim)        CLIP's projected pooled (EOS) text embedding
    image_embed   (B, embed_dim)        CLIP's projected pooled (CLS) image embedding
    labels        (B,)                  int64 class indices, or None when unlabelled
    index         (B,)                  int64 position of each post in its feature store
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class FeatureDims:
    """Widths of the frozen CLIP features; nothing in a model may assume particular values."""

    text_width: int
    vision_width: int
    embed_dim: int


@dataclass
class FeatureBatch:
    text_tokens: torch.Tensor
    text_mask: torch.Tensor
    image_tokens: torch.Tensor
    image_present: torch.Tensor
    text_embed: torch.Tensor
    image_embed: torch.Tensor
    labels: torch.Tensor | None = None
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.text_tokens.shape[0]

    @property
    def dims(self) -> FeatureDims:
        return FeatureDims(
            text_width=self.text_tokens.shape[-1],
            vision_width=self.image_tokens.shape[-1],
            embed_dim=self.text_embed.shape[-1],
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FeatureBatch:
        moved = {
            f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return FeatureBatch(**moved)

    def select(self, rows: torch.Tensor | list[int]) -> FeatureBatch:
        """A sub-batch (or a permutation) of the rows."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        picked = {
            f.name: (v[rows] if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return replace(self, **picked)

    def pin_memory(self) -> FeatureBatch:
        return FeatureBatch(
            **{
                f.name: (v.pin_memory() if isinstance(v, torch.Tensor) else v)
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )


def swap_pictures(batch: FeatureBatch, fraction: float, generator: torch.Generator) -> FeatureBatch:
    """Mismatch augmentation: give `fraction` of the posts with a picture another post's picture.

    The posts with a picture are put in a random order and each takes the picture (image tokens
    and pooled image embedding) of the next one in that order (the last takes the first's), so no
    post keeps its own; then each keeps its new picture with probability `fraction` and its own
    otherwise. Labels, texts and `image_present` are unchanged: the label stays the text's, so a
    model learns that a picture unrelated to its text says nothing about the label. Fewer than
    two posts with a picture: the batch is returned unchanged. Draws come from `generator` only.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be in [0, 1]")
    with_picture = torch.nonzero(batch.image_present.bool().cpu(), as_tuple=False)[:, 0]
    if fraction == 0.0 or len(with_picture) < 2:
        return batch
    order = with_picture[torch.randperm(len(with_picture), generator=generator)]
    swap = torch.rand(len(order), generator=generator) < fraction
    rows, donors = order[swap], order.roll(-1)[swap]
    if len(rows) == 0:
        return batch
    device = batch.image_tokens.device
    rows, donors = rows.to(device), donors.to(device)
    image_tokens, image_embed = batch.image_tokens.clone(), batch.image_embed.clone()
    image_tokens[rows] = batch.image_tokens[donors]
    image_embed[rows] = batch.image_embed[donors]
    return replace(batch, image_tokens=image_tokens, image_embed=image_embed)


def drop_pictures(batch: FeatureBatch, fraction: float, generator: torch.Generator) -> FeatureBatch:
    """Picture dropout: withhold the picture of `fraction` of the posts with one.

    Each post with a picture loses it with probability `fraction` (its `image_present` becomes
    False, so every model takes its text-only path for it and never reads its image slots).
    Labels and texts are unchanged, so the text path is trained alone on posts it otherwise only
    sees beside a picture: the posts a user sends without one. Draws come from `generator` only.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be in [0, 1]")
    present = batch.image_present.bool()
    if fraction == 0.0 or not bool(present.any()):
        return batch
    drop = (torch.rand(len(batch), generator=generator) < fraction).to(present.device)
    return replace(batch, image_present=present & ~drop)
