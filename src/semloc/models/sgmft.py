"""SG-MFT: Similarity Guided Multimodal Fusion Transformer for semantic location prediction.

Zhang, Wang, Li, Wang, "Similarity Guided Multimodal Fusion Transformer for Semantic Location
Prediction in Social Media", arXiv 2405.05760. Only the paper's abstract is public: the pipeline
(CLIP features -> SIM with coarse and fine similarity guidance -> SFM cross-attention fusion ->
classifier) is the paper's; every equation, shape, width, initialisation and the ablation
switches below are this project's reconstruction (see docs/model.md, which lists each decision).

Paper symbol -> name in this file (B batch, Nt text tokens, Nv image tokens with CLS first, p the
CLIP joint-embedding width, d = `dim`, C = `num_classes`):

    X_t, X_v            x_t (B, Nt, d), x_v (B, Nv, d)   projected token features
    u, w                u, w (B, p)                      normalised CLIP text / image embeddings
    e = u * w           e (B, p)                         element-wise similarity
    s = sum(e)          s (B,)                           modality-wise similarity (cosine)
    a = sig(k (s - b))  gate (B,); k, b = gate_scale, gate_bias
    A_self, A_cross     FeatureInterpolationAttention.self_attn / .cross_attn
    l = k (s - b) / std gate_logit (B,), a = sigmoid(l): PrefixInterpolationAttention's key bias
    W_s, (gamma, beta)  SimilarityAwareFeedForward.film
    E, tau              token_similarity (B, Nt, Nv), temperature
    z_t, z_v            pooled text / image features (B, d)
    pi_t, pi_v          modality_weights (B, 2)
    f                   fused feature (B, d)

A post without an image (`image_present` False) takes the text-only path: its image inputs are
replaced by zeros before anything reads them, and a = e = s = 0, pi = (1, 0), and the text's
cross-attention to the image is switched off, so its output cannot depend on its image slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from semloc.config import ModelConfig
from semloc.errors import ConfigError
from semloc.features.batch import FeatureBatch, FeatureDims
from semloc.models.base import AuxiliaryLogits, ModelOutput, mlp, nonempty, unit_rms

FINE_SIMILARITY = ("channel", "token", "none")
COARSE_ATTENTION = ("interpolation", "prefix")
FUSION = ("sfm", "concat")


# ----------------------------------------------------------------------------------------------
# building blocks


class Attention(nn.Module):
    """Multi-head attention of the queries `x` over `context` (self-attention when they match)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.out_drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, Nq, d = x.shape
        Nk, h = context.shape[1], self.num_heads
        q = self.query(x).view(B, Nq, h, d // h).transpose(1, 2)  # (B, h, Nq, d/h)
        k, v = self.key_value(context).view(B, Nk, 2, h, d // h).permute(2, 0, 3, 1, 4)
        # k, v: (B, h, Nk, d/h); a bool mask: True = key takes part; a float mask is added to
        # the scores (-inf = left out); callers never leave out every key of a row
        mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, Nk)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, Nq, d/h)
        y = y.transpose(1, 2).reshape(B, Nq, d)  # (B, Nq, d)
        return self.out_drop(self.out(y))


class FeedForward(nn.Module):
    """GELU MLP on normalised tokens; returns the update, the caller adds the residual."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` (B, N, d) over the positions where `mask` (B, N) is True -> (B, d)."""
    weights = mask.to(x.dtype)[..., None]  # (B, N, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def token_similarity(
    x_t: torch.Tensor, x_v: torch.Tensor, text_mask: torch.Tensor, image_present: torch.Tensor
) -> torch.Tensor:
    """E = norm(X_t) norm(X_v)^T (B, Nt, Nv), zero on text padding and for posts without image."""
    E = F.normalize(x_t, dim=-1) @ F.normalize(x_v, dim=-1).transpose(1, 2)  # (B, Nt, Nv)
    keep = text_mask[:, :, None] & image_present[:, None, None]  # (B, Nt, 1)
    return torch.where(keep, E, 0.0)


# ----------------------------------------------------------------------------------------------
# SIM: Similarity-Guided Interaction Module


class FeatureInterpolationAttention(nn.Module):
    """Coarse guidance: (1 - a) A_self + a A_cross, so a mismatched pair stays within its modality.

    Inputs are already layer-normalised; returns the update for the residual stream.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.cross_attn = Attention(dim, num_heads, dropout)

    def forward(
        self,
        x: torch.Tensor,
        other: torch.Tensor,
        gate: torch.Tensor,
        x_mask: torch.Tensor | None = None,
        other_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        a = gate[:, None, None]  # (B, 1, 1)
        a_self = self.self_attn(x, x, x_mask)  # (B, Nm, d)
        a_cross = self.cross_attn(x, other, other_mask)  # (B, Nm, d)
        return (1 - a) * a_self + a * a_cross


class PrefixInterpolationAttention(nn.Module):
    """Coarse guidance, prefix form (MKGformer's prefix-guided interaction, made similarity-aware).

    One attention over the tokens of both modalities, the other modality's keys biased by the
    gate's logit l = k (s - b) / std plus log(N_m / N_o) (each modality's number of real tokens):
    softmax([Q K_m^T, Q K_o^T + l + log(N_m / N_o)]) [V_m; V_o]. This equals
    (1 - lam) Attn(Q, K_m, V_m) + lam Attn(Q, K_o, V_o) with, per query and head,
    lam = a z_o / ((1 - a) z_m + a z_o), z the mean softmax mass of a modality's keys: exactly the
    gate a where the query matches both modalities equally well (whatever their token counts, as
    in the interpolation form), moved towards whichever matches it better. Without the count
    term a = 1/2 would be MKGformer's plain prefix attention, which gives the longer sequence
    the larger share. A post without a picture masks the other modality's keys (l = -inf): pure
    self-attention. One attention instead of two: the parameters saved go to the FFN width.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads, dropout)

    def forward(
        self,
        x: torch.Tensor,
        other: torch.Tensor,
        gate_logit: torch.Tensor,
        x_mask: torch.Tensor | None = None,
        other_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, Nm, No = x.shape[0], x.shape[1], other.shape[1]
        context = torch.cat([x, other], dim=1)  # (B, Nm + No, d)
        x_mask = torch.ones(B, Nm, dtype=torch.bool, device=x.device) if x_mask is None else x_mask
        if other_mask is None:
            other_mask = torch.ones(B, No, dtype=torch.bool, device=x.device)
        # log(N_m / N_o) per post, so that a (not the token counts) sets the mix at flat scores
        counts = x_mask.sum(1).clamp(min=1).log() - other_mask.sum(1).clamp(min=1).log()  # (B,)
        partner = (gate_logit + counts).to(x.dtype)[:, None].expand(B, No)  # (B, No)
        bias = torch.cat(
            [
                torch.zeros(B, Nm, dtype=x.dtype, device=x.device).masked_fill(~x_mask, -math.inf),
                partner.masked_fill(~other_mask, -math.inf),  # -inf everywhere: no picture
            ],
            dim=1,
        )  # (B, Nm + No)
        return self.attn(x, context, bias)  # (B, Nm, d)


class SimilarityAwareFeedForward(FeedForward):
    """Fine guidance: an FFN modulated by the element-wise similarity.

    mode "channel": FiLM of the hidden units, (gamma, beta) = e W_s, h <- h (1 + gamma) + beta;
                    W_s of rank `film_rank` (0 = full) and dropout `film_dropout` on e.
    mode "token":   partner tokens softmax(E / tau) X_o are added to the input, scaled by each
                    token's best match max_j E (clamped at 0: a token with no positive match
                    takes nothing from the other modality).
    mode "none":    a plain FFN (ablation).
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        embed_dim: int,
        mode: str = "channel",
        temperature: float = 0.1,
        dropout: float = 0.0,
        film_rank: int = 0,
        film_dropout: float = 0.0,
    ) -> None:
        super().__init__(dim, hidden, dropout)
        self.mode = mode
        self.temperature = temperature
        self.film: nn.Module | None = None
        self.film_drop = nn.Dropout(film_dropout)
        if mode == "channel":
            # zero init of the last map: the block starts as a plain FFN and learns how far to
            # trust e; a low-rank W_s = A B starts A at the default init so B gets gradients
            out = nn.Linear(embed_dim if film_rank == 0 else film_rank, 2 * hidden, bias=False)
            nn.init.zeros_(out.weight)
            self.film = (
                out
                if film_rank == 0
                else nn.Sequential(nn.Linear(embed_dim, film_rank, bias=False), out)
            )

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor | None = None,
        other: torch.Tensor | None = None,
        sim: torch.Tensor | None = None,
        other_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # x (B, Nm, d) and other (B, No, d) normalised; e (B, p); sim = E (B, Nm, No)
        if self.mode == "token":
            logits = sim / self.temperature  # (B, Nm, No)
            best = sim
            if other_mask is not None:
                logits = logits.masked_fill(~other_mask[:, None, :], float("-inf"))
                best = sim.masked_fill(~other_mask[:, None, :], float("-inf"))
            partner = logits.softmax(-1) @ other  # (B, Nm, d)
            x = x + best.amax(-1, keepdim=True).clamp(min=0.0) * partner  # (B, Nm, d)
        h = F.gelu(self.fc1(x))  # (B, Nm, hidden)
        if self.mode == "channel":
            # a product of two unit vectors has entries ~1/p; p * e brings them to O(1) like
            # every other layer's input, so W_s learns at the same pace as the rest
            film_in = self.film_drop(e * e.shape[-1])  # (B, p)
            gamma, beta = self.film(film_in).chunk(2, dim=-1)  # 2 x (B, hidden)
            h = h * (1 + gamma[:, None, :]) + beta[:, None, :]
        return self.drop(self.fc2(h))


class SimilarityGuidedInteraction(nn.Module):
    """One SIM layer, applied to both directions (text reads image, image reads text).

    Both directions read the same layer input, so neither modality sees the other's update first.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        hidden: int,
        embed_dim: int,
        fine_similarity: str = "channel",
        temperature: float = 0.1,
        dropout: float = 0.0,
        film_rank: int = 0,
        film_dropout: float = 0.0,
        coarse_attention: str = "interpolation",
    ) -> None:
        super().__init__()
        self.fine_similarity = fine_similarity
        self.coarse_attention = coarse_attention
        coarse = (
            PrefixInterpolationAttention
            if coarse_attention == "prefix"
            else FeatureInterpolationAttention
        )
        self.norm_attn_t, self.norm_attn_v = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn_t = coarse(dim, num_heads, dropout)
        self.attn_v = coarse(dim, num_heads, dropout)
        self.norm_ffn_t, self.norm_ffn_v = nn.LayerNorm(dim), nn.LayerNorm(dim)
        ffn = (
            dim,
            hidden,
            embed_dim,
            fine_similarity,
            temperature,
            dropout,
            film_rank,
            film_dropout,
        )
        self.ffn_t = SimilarityAwareFeedForward(*ffn)
        self.ffn_v = SimilarityAwareFeedForward(*ffn)

    def forward(
        self,
        x_t: torch.Tensor,
        x_v: torch.Tensor,
        text_mask: torch.Tensor,
        image_present: torch.Tensor,
        gate: torch.Tensor,
        e: torch.Tensor,
        return_similarity: bool = False,
        gate_logit: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        # the prefix form reads the gate's logit (-inf without a picture), the mixture form a
        coarse = gate_logit if self.coarse_attention == "prefix" else gate
        if coarse is None:
            raise ValueError(f"the {self.coarse_attention} attention needs its gate input")
        n_t, n_v = self.norm_attn_t(x_t), self.norm_attn_v(x_v)
        x_t, x_v = (
            x_t + self.attn_t(n_t, n_v, coarse, x_mask=text_mask),  # (B, Nt, d)
            x_v + self.attn_v(n_v, n_t, coarse, other_mask=text_mask),  # (B, Nv, d)
        )
        sim = None
        if self.fine_similarity == "token" or return_similarity:
            sim = token_similarity(x_t, x_v, text_mask, image_present)  # (B, Nt, Nv)
        sim_v = None if sim is None else sim.transpose(1, 2)  # (B, Nv, Nt)
        n_t, n_v = self.norm_ffn_t(x_t), self.norm_ffn_v(x_v)
        x_t, x_v = (
            x_t + self.ffn_t(n_t, e, n_v, sim),
            x_v + self.ffn_v(n_v, e, n_t, sim_v, other_mask=text_mask),
        )
        return x_t, x_v, (sim if return_similarity else None)


class TransformerLayer(nn.Module):
    """A plain pre-LN layer within one modality: what the "no SIM" ablation has instead."""

    def __init__(self, dim: int, num_heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, hidden, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm_attn(x)
        x = x + self.attn(h, h, mask)
        return x + self.ffn(self.norm_ffn(x))


# ----------------------------------------------------------------------------------------------
# SFM: Similarity-aware Fusion Module


class CrossModalBlock(nn.Module):
    """Bidirectional cross-attention with residual, then an FFN per modality (pre-LN)."""

    def __init__(self, dim: int, num_heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm_t, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross_t = Attention(dim, num_heads, dropout)  # text reads the image
        self.cross_v = Attention(dim, num_heads, dropout)  # image reads the text
        self.norm_ffn_t, self.norm_ffn_v = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn_t = FeedForward(dim, hidden, dropout)
        self.ffn_v = FeedForward(dim, hidden, dropout)

    def forward(
        self,
        x_t: torch.Tensor,
        x_v: torch.Tensor,
        text_mask: torch.Tensor,
        image_present: torch.Tensor,
        gate: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # gate (B,): how far each modality reads the other (the coarse similarity a); None =
        # fully, except that text never reads a missing image
        n_t, n_v = self.norm_t(x_t), self.norm_v(x_v)
        to_image = self.cross_t(n_t, n_v)  # (B, Nt, d)
        to_text = self.cross_v(n_v, n_t, text_mask)  # (B, Nv, d)
        if gate is None:
            x_t = x_t + torch.where(image_present[:, None, None], to_image, 0.0)  # U_t
            x_v = x_v + to_text  # U_v (B, Nv, d)
        else:
            g = torch.where(image_present, gate, 0.0)[:, None, None]  # (B, 1, 1)
            x_t = x_t + g * torch.where(image_present[:, None, None], to_image, 0.0)
            x_v = x_v + g * to_text
        x_t = x_t + self.ffn_t(self.norm_ffn_t(x_t))
        x_v = x_v + self.ffn_v(self.norm_ffn_v(x_v))
        return x_t, x_v


class SimilarityAwareFusion(nn.Module):
    """SFM: cross-attention blocks, pooling, and similarity-aware modality weights.

    (pi_t, pi_v) = softmax(MLP([z_t; z_v; s]) + (0, kappa s)), f = pi_t z_t + pi_v z_v, with s
    the standardised similarity; kappa (the similarity prior) only with `prior`. Without weighting
    (ablation) pi = (1/2, 1/2). A post without image always gets pi = (1, 0). With `embed_dim`,
    the pooled CLIP embeddings u, w are projected into z_t and z_v (`PooledEmbeddings`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        hidden: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        weighting: bool = True,
        prior: bool = False,
        embed_dim: int | None = None,
        prior_init: float = 1.0,
        token_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            CrossModalBlock(dim, num_heads, hidden, dropout) for _ in range(num_layers)
        )
        self.norm_t, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.pooled = None if embed_dim is None else PooledEmbeddings(embed_dim, dim, token_dropout)
        self.weighting = self.prior_scale = None
        if weighting:
            self.weighting = nn.Sequential(
                nn.Linear(2 * dim + 1, dim), nn.GELU(), nn.Linear(dim, 2)
            )
            # zero init: the MLP starts at (1/2, 1/2), the no-weighting ablation, and moves from
            # there; the prior kappa (prior_init, default 1) starts the picture's weight at
            # sigmoid(kappa s)
            nn.init.zeros_(self.weighting[-1].weight)
            nn.init.zeros_(self.weighting[-1].bias)
            if prior:
                self.prior_scale = nn.Parameter(torch.tensor(float(prior_init)))

    def forward(
        self,
        x_t: torch.Tensor,
        x_v: torch.Tensor,
        text_mask: torch.Tensor,
        image_present: torch.Tensor,
        s: torch.Tensor,
        gate: torch.Tensor | None = None,
        u: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        # s (B,) standardised similarity; gate (B,) or None (see CrossModalBlock); u, w (B, p)
        # returns f (B, d), pi (B, 2) and the pooled features (z_t, z_v), each (B, d)
        for block in self.blocks:
            x_t, x_v = block(x_t, x_v, text_mask, image_present, gate)
        z_t = masked_mean(self.norm_t(x_t), text_mask)  # (B, d)
        z_v = self.norm_v(x_v[:, 0])  # CLS (B, d)
        if self.pooled is not None:
            z_t, z_v = self.pooled(z_t, z_v, u, w)
        if self.weighting is not None:
            logits = self.weighting(torch.cat([z_t, z_v, s[:, None]], dim=-1))  # (B, 2)
            if self.prior_scale is not None:
                logits = logits + torch.stack([torch.zeros_like(s), self.prior_scale * s], -1)
            pi = logits.softmax(-1)  # (B, 2)
        else:
            pi = z_t.new_full((z_t.shape[0], 2), 0.5)
        text_only = torch.tensor([1.0, 0.0], dtype=pi.dtype, device=pi.device)
        pi = torch.where(image_present[:, None], pi, text_only)  # (B, 2)
        f = pi[:, :1] * z_t + pi[:, 1:] * z_v  # (B, d)
        return f, pi, (z_t, z_v)


class PooledEmbeddings(nn.Module):
    """The pooled CLIP embeddings into the pooled features: z_t + LN(u W_u), z_v + LN(w W_w).

    Without it u and w reach the classifier only through s; a linear probe on them is one of the
    strongest baselines, so the fusion gets them directly (weighted by pi like the rest of z).

    `token_dropout` (training only): each post's token part of z_t is dropped with this
    probability, so the text side also learns to classify from the pooled text embedding alone
    (an MLP on it generalises better than the token stream, which memorises training posts)."""

    def __init__(self, embed_dim: int, dim: int, token_dropout: float = 0.0) -> None:
        super().__init__()
        self.text = nn.Sequential(nn.Linear(embed_dim, dim), nn.LayerNorm(dim))
        self.image = nn.Sequential(nn.Linear(embed_dim, dim), nn.LayerNorm(dim))
        self.token_dropout = token_dropout

    def forward(
        self, z_t: torch.Tensor, z_v: torch.Tensor, u: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # u, w unit vectors (B, p); w is zero without image (z_v is then never used)
        if self.training and self.token_dropout > 0:
            keep = torch.rand(z_t.shape[0], 1, device=z_t.device) >= self.token_dropout  # (B, 1)
            z_t = z_t * keep  # no rescaling: the pooled part is what remains, not a mean
        return z_t + self.text(u), z_v + self.image(w)


class ConcatFusion(nn.Module):
    """Ablation of the SFM: pooled features concatenated and mixed by an MLP sized like the SFM."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        dropout: float = 0.0,
        embed_dim: int | None = None,
        token_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm_t, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.pooled = None if embed_dim is None else PooledEmbeddings(embed_dim, dim, token_dropout)
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(
        self,
        x_t: torch.Tensor,
        x_v: torch.Tensor,
        text_mask: torch.Tensor,
        image_present: torch.Tensor,
        s: torch.Tensor,
        gate: torch.Tensor | None = None,
        u: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None, tuple[torch.Tensor, torch.Tensor]]:
        z_t = masked_mean(self.norm_t(x_t), text_mask)  # (B, d)
        z_v = self.norm_v(x_v[:, 0])  # (B, d)
        if self.pooled is not None:
            z_t, z_v = self.pooled(z_t, z_v, u, w)
        z_v = torch.where(image_present[:, None], z_v, 0.0)  # (B, d)
        return self.mlp(torch.cat([z_t, z_v], dim=-1)), None, (z_t, z_v)  # (B, d)


class TextFallback(nn.Module):
    """Similarity-aware fallback to the text: p = r p_fused + (1 - r) p_text.

    p_text is an MLP on the pooled text embedding u, like text_mlp (it sees one vector per post,
    so it cannot memorise training posts the way the token streams do); r = sigmoid(MLP(s,
    c)) is the probability that the picture belongs to the text, from the standardised cosine s
    and the text classifier's confidence c (its largest log-probability: a low cosine with a
    confident text points at an unrelated picture, with a vague text it is what a real pair
    looks like). r is learned only by telling each post's own picture from another post's
    (in-batch mismatches, training only) and is detached from the classification loss, so a
    fused path that fits its training posts through an unrelated picture cannot teach r to
    keep it. r = 0 for a post without picture. p_text learns by its own cross-entropy too.
    """

    def __init__(
        self, embed_dim: int, num_classes: int, text_hidden: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.text_head = mlp(embed_dim, text_hidden, num_classes, dropout)  # as text_mlp's
        self.match = nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Linear(16, 1))
        # AdamW moves each weight by about lr per step: at the demo's few hundred steps the MLP
        # alone stays too flat for a cosine that separates well (slope ~0.5 per std where ~4
        # fits); the gain lets it get there
        self.match_gain = 4.0

    def forward(
        self,
        fused_logits: torch.Tensor,
        u: torch.Tensor,
        w: torch.Tensor,
        s: torch.Tensor,
        present: torch.Tensor,
        standardise: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[AuxiliaryLogits, ...]]:
        # fused_logits (B, C); u, w (B, p) unit (w zero without picture); s = cos(u, w) (B,);
        # present (B,) bool; returns log p (B, C), r (B,) and the training terms
        text_logits = self.text_head(unit_rms(u))  # (B, C)
        confidence = text_logits.detach().log_softmax(-1).amax(-1)  # (B,)

        def match_logit(cosine: torch.Tensor) -> torch.Tensor:  # (B,) -> (B,)
            x = torch.stack([standardise(cosine), confidence], -1)  # (B, 2)
            return self.match_gain * self.match(x).squeeze(-1)

        pos = match_logit(s)  # (B,) each post with its own picture
        m = pos.detach()  # r never learns from the classification
        log_r = torch.where(present, F.logsigmoid(m), -math.inf)  # (B,)
        log_not_r = torch.where(present, F.logsigmoid(-m), 0.0)  # (B,)
        log_p = torch.logaddexp(
            log_r[:, None] + fused_logits.log_softmax(-1),
            log_not_r[:, None] + text_logits.log_softmax(-1),
        )  # (B, C)
        terms: tuple[AuxiliaryLogits, ...] = ()
        if self.training:
            # each post with a picture against the picture of the next one, in a random order;
            # with fewer than two pictures there is no mismatch, and the terms are masked out
            # (still computed, so every parameter takes part in every step, as DDP needs)
            index = torch.arange(len(present), device=present.device)
            other = index.clone()
            rows = present.nonzero().squeeze(1)  # posts with a picture
            if len(rows) > 1:
                order = rows[torch.randperm(len(rows), device=rows.device)]
                other[order] = order.roll(1)
            mask = present & (other != index)  # (B,)
            neg = match_logit((u * w[other]).sum(-1))  # (B,)
            zero = torch.zeros_like(pos)
            ones = torch.ones_like(index)
            terms = (
                AuxiliaryLogits(text_logits, torch.ones_like(present), 1.0),
                AuxiliaryLogits(torch.stack([zero, pos], -1), mask, 0.5, ones),
                AuxiliaryLogits(torch.stack([zero, neg], -1), mask, 0.5, ones * 0),
            )
        return log_p, torch.where(present, m.sigmoid(), 0.0), terms


# ----------------------------------------------------------------------------------------------
# the model


# deep supervision's weight when model.unimodal_supervision is None: 0 since 2026-12-07, like
# the unguided transformer's (`CrossTransformer`). It was 1.0 from 2026-12-06, adopted on a dev
# gain on both worlds; on the demo world with the web-caption demo CLIP it costs 1.5 dev points
# (seeds 0-2), so that condition no longer holds (docs/model.md, "Deep supervision on the
# web-caption demo CLIP")
UNIMODAL_SUPERVISION_DEFAULT = 0.0


class SGMFT(nn.Module):
    """Projection -> similarities -> SIM layers -> SFM -> classifier.

    forward(batch) returns ModelOutput(logits, similarity s, gate a, modality_weights pi,
    token_similarity E); E only for the token variant or when `return_token_similarity`.
    """

    def __init__(self, cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> None:
        super().__init__()
        _check_config(cfg)
        d, p = cfg.dim, dims.embed_dim
        hidden = max(1, round(cfg.mlp_ratio * d))
        if cfg.film_rank >= p:  # only the channel FiLM may set it (_check_config)
            raise ConfigError(
                f"model.film_rank={cfg.film_rank} must be below the CLIP embedding width {p} "
                "(0 = full rank): a factorised W_s of that rank is larger than the full one"
            )
        self.fine_similarity = cfg.fine_similarity

        # X_t = LN(text_tokens W_t), X_v = LN(image_tokens W_v)
        self.text_proj = nn.Sequential(nn.Linear(dims.text_width, d), nn.LayerNorm(d))
        self.image_proj = nn.Sequential(nn.Linear(dims.vision_width, d), nn.LayerNorm(d))

        # s is standardised against its training distribution: (s - median) / std, both from
        # the train split (the training command fills them in; 0 and 1 until then). The median
        # is similarity_center, or gate_bias_init where that is unset (gate_init=data)
        center = cfg.gate_bias_init if cfg.similarity_center is None else cfg.similarity_center
        self.similarity_center = 0.0 if center is None else float(center)
        self.similarity_std = 1.0 if cfg.similarity_std is None else float(cfg.similarity_std)
        if not self.similarity_std > 0:
            raise ConfigError(f"model.similarity_std={cfg.similarity_std} must be > 0")
        self.fusion_gate = cfg.fusion_gate
        # gate a = sigmoid(k (s - b) / std); b starts at the train-split median
        self.gate_scale = self.gate_bias = None
        if cfg.sim_layers > 0 and cfg.coarse_similarity:
            bias = 0.0 if cfg.gate_bias_init is None else cfg.gate_bias_init
            self.gate_scale = nn.Parameter(torch.tensor(float(cfg.gate_scale_init)))
            self.gate_bias = nn.Parameter(torch.tensor(float(bias)))

        # Every ablation gives the parameters it removes back as hidden width of the FFN or MLP
        # that takes the removed block's place, so variants differ in structure, not in size.
        def sim_layer(
            fine: str, width: int, rank: int = 0, coarse: str = "interpolation"
        ) -> SimilarityGuidedInteraction:
            return SimilarityGuidedInteraction(
                d,
                cfg.num_heads,
                width,
                p,
                fine,
                cfg.token_temperature,
                cfg.dropout,
                rank,
                cfg.film_dropout,
                coarse,
            )

        full_sim_layer = _param_count(lambda: sim_layer("channel", hidden))
        self.film_gate = cfg.film_gate
        self.sim = nn.ModuleList()
        self.encoder_t = nn.ModuleList()
        self.encoder_v = nn.ModuleList()
        if cfg.sim_layers > 0:
            width = hidden
            rank, coarse = cfg.film_rank, cfg.coarse_attention
            if cfg.fine_similarity != "channel" or rank > 0 or coarse != "interpolation":
                width = _matched_width(
                    lambda w: sim_layer(cfg.fine_similarity, w, rank, coarse),
                    hidden,
                    full_sim_layer,
                )
            self.sim.extend(
                sim_layer(cfg.fine_similarity, width, rank, coarse) for _ in range(cfg.sim_layers)
            )
        else:
            # as many plain layers per modality as the default model has SIM layers
            def plain_layer(w: int) -> TransformerLayer:
                return TransformerLayer(d, cfg.num_heads, w, cfg.dropout)

            width = _matched_width(plain_layer, hidden, full_sim_layer // 2)
            num_layers = ModelConfig().sim_layers
            self.encoder_t.extend(plain_layer(width) for _ in range(num_layers))
            self.encoder_v.extend(plain_layer(width) for _ in range(num_layers))

        def sfm(weighting: bool, pooled: bool, width: int = hidden) -> SimilarityAwareFusion:
            return SimilarityAwareFusion(
                d,
                cfg.num_heads,
                width,
                cfg.fusion_layers,
                cfg.dropout,
                weighting,
                prior=weighting and cfg.similarity_prior,
                embed_dim=p if pooled else None,
                prior_init=cfg.prior_scale_init,
                token_dropout=cfg.text_token_dropout,
            )

        full_sfm = _param_count(lambda: sfm(True, True))
        pooled_dim = p if cfg.pooled_embeddings else None
        if cfg.fusion == "sfm":
            width = hidden
            if not cfg.pooled_embeddings and cfg.fusion_layers > 0:
                # the pooled projections' parameters go to the SFM's FFNs
                width = _matched_width(
                    lambda w: sfm(cfg.similarity_weighting, False, w),
                    hidden,
                    full_sfm
                    - _param_count(lambda: sfm(True, False))
                    + _param_count(lambda: sfm(cfg.similarity_weighting, False)),
                )
            self.fusion = sfm(cfg.similarity_weighting, cfg.pooled_embeddings, width)
        else:
            width = _matched_width(
                lambda w: ConcatFusion(d, w, cfg.dropout, pooled_dim), hidden, full_sfm
            )
            self.fusion = ConcatFusion(d, width, cfg.dropout, pooled_dim, cfg.text_token_dropout)

        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, num_classes))
        self.fallback = (
            TextFallback(p, num_classes, hidden, cfg.dropout) if cfg.text_fallback else None
        )
        # deep supervision: the same head on z_t and z_v as training-only auxiliary terms. With
        # the SFM, f = pi_t z_t + pi_v z_v and a linear head, so the fused logits are
        # pi_t head(z_t) + pi_v head(z_v): a closing pi falls back to a trained text classifier.
        self.unimodal_supervision = (
            UNIMODAL_SUPERVISION_DEFAULT
            if cfg.unimodal_supervision is None
            else float(cfg.unimodal_supervision)
        )

    def forward(self, batch: FeatureBatch, return_token_similarity: bool = False) -> ModelOutput:
        present = batch.image_present.bool()  # (B,)
        text_mask = nonempty(batch.text_mask.bool())  # (B, Nt)

        # Nothing downstream may read a missing image or text padding: zero them first (a where
        # on the outputs alone would still let NaN/inf garbage leak into the gradients).
        text_tokens = torch.where(text_mask[..., None], batch.text_tokens, 0.0)
        image_tokens = torch.where(present[:, None, None], batch.image_tokens, 0.0)
        image_embed = torch.where(present[:, None], batch.image_embed, 0.0)

        x_t = self.text_proj(text_tokens)  # (B, Nt, d)
        x_v = self.image_proj(image_tokens)  # (B, Nv, d)

        u = F.normalize(batch.text_embed, dim=-1)  # (B, p)
        w = F.normalize(image_embed, dim=-1)  # (B, p); zero without image
        e = torch.where(present[:, None], u * w, 0.0)  # (B, p)
        s = e.sum(-1)  # (B,) = cos(u, w)

        s_std = self.standardise(s)  # (B,)
        s_std = torch.where(present, s_std, 0.0)

        gate = gate_logit = None
        if len(self.sim) > 0:
            if self.gate_scale is not None:
                logit = self.gate_scale * (s - self.gate_bias) / self.similarity_std  # (B,)
            else:
                logit = torch.zeros_like(s)  # a = 1/2
            gate = torch.where(present, torch.sigmoid(logit), 0.0)  # no image: self-attention
            gate_logit = torch.where(present, logit, -math.inf)  # (B,) sigmoid(gate_logit) = a

        want_sim = self.fine_similarity == "token" or return_token_similarity
        # the FiLM is linear in e without bias: scaling e by a scales (gamma, beta) by a
        e_film = e * gate[:, None] if self.film_gate and gate is not None else e  # (B, p)
        sim = None
        for i, layer in enumerate(self.sim):
            last = i == len(self.sim) - 1
            x_t, x_v, sim = layer(
                x_t, x_v, text_mask, present, gate, e_film, want_sim and last, gate_logit
            )
        for layer_t, layer_v in zip(self.encoder_t, self.encoder_v, strict=True):
            x_t, x_v = layer_t(x_t, text_mask), layer_v(x_v)
        if want_sim and sim is None:
            sim = token_similarity(x_t, x_v, text_mask, present)  # (B, Nt, Nv)

        fusion_gate = None
        if self.fusion_gate:  # the SFM reads the other modality as far as the SIM did
            fusion_gate = gate if gate is not None else torch.where(present, 0.5, 0.0)
        f, pi, (z_t, z_v) = self.fusion(x_t, x_v, text_mask, present, s_std, fusion_gate, u, w)
        logits = self.head(f)  # (B, C)
        auxiliary: tuple[AuxiliaryLogits, ...] = ()
        if self.training and self.unimodal_supervision > 0:
            weight = self.unimodal_supervision
            auxiliary = (
                AuxiliaryLogits(self.head(z_t), torch.ones_like(present), weight),  # (B, C)
                AuxiliaryLogits(self.head(z_v), present, weight),  # only posts with a picture
            )
        match = None
        if self.fallback is not None:
            logits, match, terms = self.fallback(logits, u, w, s, present, self.standardise)
            auxiliary += terms
        return ModelOutput(
            logits=logits,
            similarity=s,
            gate=gate,
            modality_weights=pi,
            token_similarity=sim,
            auxiliary=auxiliary or None,
            picture_match=match,
        )

    def standardise(self, s: torch.Tensor) -> torch.Tensor:
        """The cosine s (B,) standardised against its training distribution."""
        return (s - self.similarity_center) / self.similarity_std


# ----------------------------------------------------------------------------------------------
# helpers


def _check_config(cfg: ModelConfig) -> None:
    if cfg.dim <= 0 or cfg.num_heads <= 0 or cfg.dim % cfg.num_heads:
        raise ConfigError(
            f"model.dim={cfg.dim} must be a positive multiple of model.num_heads={cfg.num_heads}"
        )
    if cfg.fine_similarity not in FINE_SIMILARITY:
        raise ConfigError(
            f"model.fine_similarity={cfg.fine_similarity!r} is not one of {FINE_SIMILARITY}"
        )
    if cfg.film_rank < 0:
        raise ConfigError(f"model.film_rank={cfg.film_rank} must be >= 0 (0 = full rank)")
    film = {"film_rank": 0, "film_dropout": 0.0, "film_gate": False}
    changed = [k for k, off in film.items() if getattr(cfg, k) != off]
    if changed and cfg.fine_similarity != "channel":
        raise ConfigError(
            f"model.{changed[0]} shapes the channel FiLM, but model.fine_similarity="
            f"{cfg.fine_similarity!r}: add model.fine_similarity=channel"
        )
    if cfg.coarse_attention not in COARSE_ATTENTION:
        raise ConfigError(
            f"model.coarse_attention={cfg.coarse_attention!r} is not one of {COARSE_ATTENTION}"
        )
    if cfg.fusion not in FUSION:
        raise ConfigError(f"model.fusion={cfg.fusion!r} is not one of {FUSION}")
    if cfg.sim_layers < 0 or cfg.fusion_layers < 0:
        raise ConfigError("model.sim_layers and model.fusion_layers must be >= 0")
    if not (cfg.token_temperature > 0 and math.isfinite(cfg.token_temperature)):
        raise ConfigError(f"model.token_temperature={cfg.token_temperature} must be > 0")
    if not 0 <= cfg.text_token_dropout < 1:
        raise ConfigError(f"model.text_token_dropout={cfg.text_token_dropout} must be in [0, 1)")
    if cfg.text_token_dropout > 0 and not cfg.pooled_embeddings:
        raise ConfigError(
            "model.text_token_dropout needs model.pooled_embeddings=true: it drops the token part "
            "of the pooled text feature, which is all of it without the pooled embedding"
        )
    lam = cfg.unimodal_supervision
    if lam is not None and not (lam >= 0 and math.isfinite(lam)):
        raise ConfigError(
            f"model.unimodal_supervision={cfg.unimodal_supervision} must be a finite number >= 0"
        )


def _param_count(build: Callable[[], nn.Module]) -> int:
    # on the meta device: no memory, no initialisation, no draw from the random generator
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def _matched_width(build: Callable[[int], nn.Module], width: int, target: int) -> int:
    """The hidden width at which `build(width)` has about `target` parameters."""
    n0 = _param_count(lambda: build(width))
    per_unit = _param_count(lambda: build(width + 1)) - n0
    return max(1, width + round((target - n0) / per_unit))
