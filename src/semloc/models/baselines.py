"""Baselines SG-MFT is compared with, on the same cached CLIP features and through the same trainer.

Every class here takes (cfg, dims, num_classes), reads the same `FeatureBatch` and returns a
`ModelOutput`, so `semloc train --model NAME` trains any of them on the same data with the same
loop. Sizes come from `ModelConfig`: `dim` d is the model width, `round(mlp_ratio * dim)` the
hidden width of every MLP, `sim_layers` the layer count of the transformer baselines, `num_heads`
and `dropout` as in SG-MFT.

Unimodal, on CLIP's pooled embeddings (p = embed_dim):
    text_linear, image_linear   Dropout -> Linear(p, C)
    text_mlp, image_mlp         Linear(p, hidden) -> GELU -> Dropout -> Linear(hidden, C)
Unimodal, on CLIP's token features:
    text_transformer            SG-MFT's projection, `sim_layers` pre-LN transformer layers,
    image_transformer           masked mean of the text tokens / CLS of the image tokens
Late fusion of the pooled embeddings:
    concat_mlp                  MLP over [u; w; image_present]
    gmu                         gated multimodal unit (Arevalo et al., ICLR-W 2017)
    attention_fusion            additive attention over the two modality vectors
    hateclipper                 outer-product feature interaction matrix (Kumar & Nandakumar 2022)
Token-level fusion:
    cross_transformer           SG-MFT's architecture and size with no similarity guidance

Pooled embeddings enter as `sqrt(p) * x / |x|`: CLIP compares them by cosine, so only the
direction carries meaning, and unit-RMS entries let layers initialised for O(1) inputs learn at
the trainer's learning rate (raw unit vectors have entries ~1/sqrt(p) and learn p times slower).

A post without an image (`image_present` False) never reads its image slots: they are replaced
by zeros before any layer sees them, and then
    - image-only models give the post a zero feature, so its logits are the learned bias (a class
      prior): no information, and no garbage either;
    - concat_mlp and hateclipper see a zero image part plus the present flag (hateclipper keeps
      the text through an appended constant, see `HateClipper`);
    - gmu forces its gate to the text, attention_fusion masks the image's attention score;
    - cross_transformer takes SG-MFT's text-only path.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from semloc.config import ModelConfig
from semloc.errors import ConfigError
from semloc.features.batch import FeatureBatch, FeatureDims
from semloc.models.base import ModelOutput, mlp, nonempty, unit_rms
from semloc.models.sgmft import SGMFT, TransformerLayer, masked_mean

# ----------------------------------------------------------------------------------------------
# shared pieces


def _hidden(cfg: ModelConfig) -> int:
    return max(1, round(cfg.mlp_ratio * cfg.dim))


def _check_sizes(cfg: ModelConfig, attention: bool = False) -> None:
    if cfg.dim <= 0:
        raise ConfigError(f"model.dim={cfg.dim} must be positive")
    if attention and (cfg.num_heads <= 0 or cfg.dim % cfg.num_heads):
        raise ConfigError(
            f"model.dim={cfg.dim} must be a positive multiple of model.num_heads={cfg.num_heads}"
        )
    if cfg.sim_layers < 0:
        raise ConfigError("model.sim_layers must be >= 0")


def text_embedding(batch: FeatureBatch) -> torch.Tensor:
    return unit_rms(batch.text_embed)  # (B, p)


def image_embedding(batch: FeatureBatch) -> torch.Tensor:
    """The image embedding, zero for posts without an image (whatever their slots hold)."""
    present = batch.image_present.bool()[:, None]  # (B, 1)
    return unit_rms(torch.where(present, batch.image_embed, 0.0))  # (B, p)


# ----------------------------------------------------------------------------------------------
# unimodal, pooled embeddings


class PooledUnimodal(nn.Module):
    """A linear or MLP classifier on one modality's pooled CLIP embedding."""

    modality = "text"
    hidden_layer = False

    def __init__(self, cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> None:
        super().__init__()
        _check_sizes(cfg)
        p = dims.embed_dim
        if self.hidden_layer:
            self.head = mlp(p, _hidden(cfg), num_classes, cfg.dropout)
        else:
            self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(p, num_classes))

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        x = text_embedding(batch) if self.modality == "text" else image_embedding(batch)
        return ModelOutput(logits=self.head(x))  # (B, C)


class TextLinear(PooledUnimodal):
    modality, hidden_layer = "text", False


class TextMLP(PooledUnimodal):
    modality, hidden_layer = "text", True


class ImageLinear(PooledUnimodal):
    modality, hidden_layer = "image", False


class ImageMLP(PooledUnimodal):
    modality, hidden_layer = "image", True


# ----------------------------------------------------------------------------------------------
# unimodal, token features


class TokenTransformer(nn.Module):
    """A small transformer encoder over one modality's CLIP tokens.

    No positional embeddings: CLIP's last hidden states are contextualised and already carry
    position, and SG-MFT adds none either, so the comparison is about fusion alone.
    """

    modality = "text"

    def __init__(self, cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> None:
        super().__init__()
        _check_sizes(cfg, attention=True)
        d = cfg.dim
        width = dims.text_width if self.modality == "text" else dims.vision_width
        self.proj = nn.Sequential(nn.Linear(width, d), nn.LayerNorm(d))  # as SG-MFT's
        self.layers = nn.ModuleList(
            TransformerLayer(d, cfg.num_heads, _hidden(cfg), cfg.dropout)
            for _ in range(cfg.sim_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, num_classes))

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        if self.modality == "text":
            mask = nonempty(batch.text_mask.bool())  # (B, Nt)
            x = self.proj(torch.where(mask[..., None], batch.text_tokens, 0.0))  # (B, Nt, d)
            for layer in self.layers:
                x = layer(x, mask)
            z = masked_mean(self.norm(x), mask)  # (B, d)
        else:
            present = batch.image_present.bool()  # (B,)
            x = self.proj(torch.where(present[:, None, None], batch.image_tokens, 0.0))
            for layer in self.layers:
                x = layer(x)  # (B, Nv, d)
            z = torch.where(present[:, None], self.norm(x[:, 0]), 0.0)  # CLS (B, d)
        return ModelOutput(logits=self.head(z))


class TextTransformer(TokenTransformer):
    modality = "text"


class ImageTransformer(TokenTransformer):
    modality = "image"


# ----------------------------------------------------------------------------------------------
# late fusion of pooled embeddings


class ConcatMLP(nn.Module):
    """Late fusion: an MLP over [u; w; present], w = 0 without an image."""

    def __init__(self, cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> None:
        super().__init__()
        _check_sizes(cfg)
        self.head = mlp(2 * dims.embed_dim + 1, _hidden(cfg), num_classes, cfg.dropout)

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        flag = batch.image_present.to(batch.text_embed.dtype)[:, None]  # (B, 1)
        x = torch.cat([text_embedding(batch), image_embedding(batch), flag], dim=-1)  # (B, 2p+1)
        return ModelOutput(logits=self.head(x))


class GMU(nn.Module):
    """Gated multimodal unit (Arevalo, Solorio, Montes-y-Gómez, González, ICLR-W 2017):

        h_t = tanh(W_t u),  h_v = tanh(W_v w),  z = sigmoid(W_z [u; w]),
        h = z * h_t + (1 - z) * h_v                                          (B, d)

    then an MLP classifier. Without an image z = 1, so h = h_t. The reported modality weights are
    (mean z, 1 - mean z) over the d channels.
    """

    def __init__(self, cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> None:
        super().__init__()
        _check_sizes(cfg)
        p, d = dims.embed_dim, cfg.dim
        self.text = nn.Linear(p, d, bias=False)  # the paper's W_t, W_v have no bias
        self.image = nn.Linear(p, d, bias=False)
        self.gate = nn.Linear(2 * p, d, bias=False)
        self.head = mlp(d, _hidden(cfg), num_classes, cfg.dropout)

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        present = batch.image_present.bool()[:, None]  # (B, 1)
        u, w = text_embedding(batch), image_embedding(batch)  # (B, p) each
        h_t, h_v = torch.tanh(self.text(u)), torch.tanh(self.image(w))  # (B, d) each
        z = torch.sigmoid(self.gate(torch.cat([u, w], dim=-1)))  # (B, d)
        z = torch.where(present, z, 1.0)
        h = z * h_t + (1 - z) * h_v  # (B, d)
        zbar = z.mean(-1, keepdim=True)  # (B, 1)
        return ModelOutput(
            logits=self.head(h), modality_weights=torch.cat([zbar, 1 - zbar], dim=-1)
        )


class AttentionFusion(nn.Module):
    """Additive attention over the two modality vectors (Bahdanau-style scoring):

        m_t = LN(W_t u), m_v = LN(W_v w)            (B, d)
        score_i = q . tanh(W_a m_i + b_a)           (B, 2); image score -inf without an image
        f = sum_i softmax(score)_i m_i              (B, d), then an MLP classifier.

    A learned modality embedding is added before scoring so the scorer can tell the two apart even
    when their vectors look alike.
    """

    def __init__(self, cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> None:
        super().__init__()
        _check_sizes(cfg)
        p, d = dims.embed_dim, cfg.dim
        self.text = nn.Sequential(nn.Linear(p, d), nn.LayerNorm(d))
        self.image = nn.Sequential(nn.Linear(p, d), nn.LayerNorm(d))
        self.modality_embed = nn.Parameter(torch.zeros(2, d))
        self.score = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))
        self.head = mlp(d, _hidden(cfg), num_classes, cfg.dropout)

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        present = batch.image_present.bool()  # (B,)
        m = torch.stack(
            [self.text(text_embedding(batch)), self.image(image_embedding(batch))], dim=1
        )  # (B, 2, d)
        scores = self.score(m + self.modality_embed).squeeze(-1)  # (B, 2)
        keep = torch.stack([torch.ones_like(present), present], dim=-1)  # (B, 2)
        weights = scores.masked_fill(~keep, float("-inf")).softmax(-1)  # (B, 2)
        f = (weights[..., None] * m).sum(1)  # (B, d); an absent image has weight exactly 0
        return ModelOutput(logits=self.head(f), modality_weights=weights)


class HateClipper(nn.Module):
    """The feature-interaction head of Hate-CLIPper (Kumar & Nandakumar, WOAH 2022):

        p_t = norm(W_t u), p_v = norm(W_v w)            (B, k), k = max(8, dim // 4)
        FIM = [p_v; 1] [p_t; 1]^T flattened             (B, (k+1)^2)
        logits = MLP(FIM)

    Hate-CLIPper's outer product is p_v p_t^T alone; the appended 1 (as in Tensor Fusion
    Networks, Zadeh et al. 2017) keeps p_t and p_v themselves among the features, so a post
    without an image (p_v = 0) is still classified from its text instead of from a zero matrix.
    k = dim // 4 keeps the first MLP layer at dim^3 / 16 weights (1M at dim 256); Hate-CLIPper's
    own 1024-wide projections would give a 1M-wide input and a head far larger than SG-MFT.
    """

    def __init__(self, cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> None:
        super().__init__()
        _check_sizes(cfg)
        p, k = dims.embed_dim, max(8, cfg.dim // 4)
        self.text = nn.Sequential(nn.Linear(p, k), nn.Dropout(cfg.dropout))
        self.image = nn.Sequential(nn.Linear(p, k), nn.Dropout(cfg.dropout))
        self.head = nn.Sequential(
            nn.Dropout(cfg.dropout), mlp((k + 1) ** 2, cfg.dim, num_classes, cfg.dropout)
        )

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        present = batch.image_present.bool()[:, None]  # (B, 1)
        p_t = unit_rms(self.text(text_embedding(batch)))  # (B, k)
        p_v = torch.where(present, unit_rms(self.image(image_embedding(batch))), 0.0)  # (B, k)
        one = p_t.new_ones(p_t.shape[0], 1)
        a_t, a_v = torch.cat([p_t, one], -1), torch.cat([p_v, one], -1)  # (B, k+1) each
        fim = (a_v[:, :, None] * a_t[:, None, :]).flatten(1)  # (B, (k+1)^2)
        return ModelOutput(logits=self.head(fim))


# ----------------------------------------------------------------------------------------------
# token-level fusion


class CrossTransformer(SGMFT):
    """A plain cross-attention transformer: SG-MFT with every similarity guidance removed.

    Same projections, the same number of layers and the same parameter count (SG-MFT's ablations
    give removed parameters back as FFN width); each interaction layer mixes self- and cross-
    attention with the fixed weight a = 1/2, its FFN is plain, and the fusion averages the pooled
    modalities with fixed weights (1/2, 1/2) instead of weights computed from s. The difference
    between this model and `sgmft` is exactly the similarity guidance. `model.fusion` is ignored.
    """

    def __init__(self, cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> None:
        plain = dataclasses.replace(
            cfg,
            coarse_similarity=False,
            fine_similarity="none",
            similarity_weighting=False,
            fusion="sfm",
            # its own default: deep supervision measured below it on dev (docs/model.md)
            unimodal_supervision=cfg.unimodal_supervision or 0.0,
            text_fallback=False,  # driven by the similarity: guidance
        )
        super().__init__(plain, dims, num_classes)

    def forward(self, batch: FeatureBatch) -> ModelOutput:  # type: ignore[override]
        out = super().forward(batch)
        # s is computed by the parent but steers nothing here; not reporting it avoids suggesting
        # that it does
        return ModelOutput(
            logits=out.logits, modality_weights=out.modality_weights, auxiliary=out.auxiliary
        )


# name -> class; `semloc.models` registers all of them
BASELINES: dict[str, type[nn.Module]] = {
    "text_linear": TextLinear,
    "text_mlp": TextMLP,
    "image_linear": ImageLinear,
    "image_mlp": ImageMLP,
    "text_transformer": TextTransformer,
    "image_transformer": ImageTransformer,
    "concat_mlp": ConcatMLP,
    "gmu": GMU,
    "attention_fusion": AttentionFusion,
    "hateclipper": HateClipper,
    "cross_transformer": CrossTransformer,
}
