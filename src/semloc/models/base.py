"""What every model returns, so the trainer, evaluation and the server never need to know which
model they hold."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AuxiliaryLogits:
    """An extra training term: `weight` x cross-entropy of `logits` (B, C) on the rows where
    `mask` (B,) bool is True, normalised per post of the batch like the main loss (see
    `semloc.training.trainer.auxiliary_loss`). Only training reads it. `targets` (B,) are the
    class indices the term is scored against: None = the batch's labels (with the main loss's
    class weights and label smoothing); given, a plain cross-entropy on them (e.g. match / no
    match)."""

    logits: torch.Tensor
    mask: torch.Tensor
    weight: float
    targets: torch.Tensor | None = None


@dataclass
class ModelOutput:
    """Logits plus optional explanation tensors (None when a model has no such notion).

    similarity        (B,)        modality-wise text-image cosine s
    gate              (B,)        coarse interpolation gate a = sigmoid(k (s - b))
    modality_weights  (B, 2)      SFM weights (pi_text, pi_image)
    token_similarity  (B, Nt, Nv) token-level cosine E of the last SIM layer (token variant)
    picture_match     (B,)        P(the picture belongs to the text), the text fallback's r
    auxiliary         extra training terms (e.g. unimodal heads), None without; models return
                      them only in training mode, and evaluation, calibration, export and prediction ignore them
    """

    logits: torch.Tensor
    similarity: torch.Tensor | None = None
    gate: torch.Tensor | None = None
    modality_weights: torch.Tensor | None = None
    token_similarity: torch.Tensor | None = None
    auxiliary: tuple[AuxiliaryLogits, ...] | None = None
    picture_match: torch.Tensor | None = None


def nonempty(text_mask: torch.Tensor) -> torch.Tensor:
    """Treat the first slot of an all-padding text as real, so no attention row is all masked."""
    first = torch.zeros_like(text_mask)
    first[:, 0] = True
    return text_mask | (first & ~text_mask.any(1, keepdim=True))


def unit_rms(x: torch.Tensor) -> torch.Tensor:
    """Direction of `x` (B, p) scaled to unit RMS entries; a zero row stays zero."""
    return F.normalize(x, dim=-1) * math.sqrt(x.shape[-1])


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
    )
