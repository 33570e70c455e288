"""Backbone families: what differs between the dual encoders semloc reads features from.

One `BackboneFamily` per `transformers` architecture, and nothing else in semloc branches on the
architecture: loading (`semloc.clip.backbone.load_backbone`), the features, the store header, the
zero-shot probe and SG-MFT's similarity guidance all read these fields.

    family        model          text pooling        image tokens / pooling      similarity
    clip          CLIPModel      EOS token -> proj   CLS + patches, CLS -> proj  cosine x logit scale
    chinese_clip  ChineseCLIPModel first ([CLS])     CLS + patches, CLS -> proj  cosine x logit scale
                                   -> proj
    siglip        SiglipModel    last position       patches (normed), attention sigmoid(cos x
                                 (padded to max       -pool head                 scale + bias)
                                 length) -> head

SigLIP 2 checkpoints at a fixed resolution (``google/siglip2-*-patch16-224`` and the like) are
`SiglipModel`s with a Gemma tokenizer and load as the ``siglip`` family. SigLIP 2's NaFlex
variants (`Siglip2Model`) cut images into a variable number of patches at their native aspect
ratio; that preprocessing is not implemented here and such directories are refused by name.
Other dual encoders (AltCLIP, OWL-ViT, BLIP, ...) pool or project differently and are refused
too, rather than read with the wrong pooling.

Text: every family's tokenizer must come as a `tokenizers` (Rust) tokenizer, i.e. a
``tokenizer.json`` (or CLIP's vocab.json + merges.txt, BERT's vocab.txt, from which transformers
builds one): batched tokenisation and per-text truncation reports need it. SigLIP (v1) hub
checkpoints ship a SentencePiece model only; load it once with ``sentencepiece`` installed and
save a ``tokenizer.json`` beside it.

For CLIP the store header is exactly what it was before families existed (architecture
``CLIPModel``, features ``clip-tokens-v1``), so CLIP stores and checkpoints stay byte-identical
and compatible; every other family writes its description (`header_fields`) into the header's
``backbone`` entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from semloc.errors import ConfigError, SemlocError

SIMILARITIES = ("cosine", "sigmoid")


@dataclass(frozen=True)
class BackboneFamily:
    """How one dual-encoder architecture gives SG-MFT's features."""

    name: str  # short name, recorded in the header
    architecture: str  # the transformers model class
    model_type: str  # config.json's model_type
    features: str  # the store's feature layout tag (bump when what is stored changes)
    text_pooling: str  # "eos" | "first" | "last": which text position the embedding pools
    text_padding: str  # "longest" (padding never reaches real tokens) | "max_length"
    text_attention_mask: bool  # whether the text tower is given the attention mask
    image_cls: bool  # image tokens start with a CLS token (which the embedding pools)
    image_pooling: str  # "cls" | "attention-pool"
    similarity: str  # "cosine" | "sigmoid": what the family was trained to score pairs with
    image_processors: tuple[str, ...]  # accepted image_processor_type values
    pil_processor: tuple[str, str]  # (module, class) of the PIL image processor to load
    pretrainable: bool  # `semloc pretrain-clip` can train it

    # -- the towers ----------------------------------------------------------------------------

    def encode_text(self, model: Any, ids: Any, mask: Any) -> tuple[Any, Any]:
        """(B, Nt, text_width) token states and (B, embed_dim) pooled embeddings."""
        kwargs = {"attention_mask": mask} if self.text_attention_mask else {}
        out = model.text_model(input_ids=ids, **kwargs)
        hidden = out.last_hidden_state
        # "first" pools the [CLS] state itself; "eos" and "last" are the tower's own pooler
        pooled = hidden[:, 0] if self.text_pooling == "first" else out.pooler_output
        projection = getattr(model, "text_projection", None)  # SigLIP's head is in the tower
        return hidden, (projection(pooled) if projection is not None else pooled)

    def encode_image(self, model: Any, pixels: Any) -> tuple[Any, Any]:
        """(B, Nv, vision_width) token states after the tower's final norm, (B, embed_dim)."""
        out = model.vision_model(pixel_values=pixels)
        if self.image_pooling == "cls":
            # HF norms only the pooled CLS; SG-MFT reads every token after the final norm
            tokens = model.vision_model.post_layernorm(out.last_hidden_state)
            return tokens, model.visual_projection(tokens[:, 0])
        return out.last_hidden_state, out.pooler_output  # already normed; the head pools

    # -- sizes ---------------------------------------------------------------------------------

    def dims(self, config: Any) -> dict[str, int]:
        text, vision = config.text_config, config.vision_config
        patches = (int(vision.image_size) // int(vision.patch_size)) ** 2
        if self.image_pooling == "attention-pool":
            embed = int(vision.hidden_size)  # the head keeps the width; the text head matches it
            if int(getattr(text, "projection_size", embed) or embed) != embed:
                raise SemlocError(
                    f"{self.architecture}: text projection_size {text.projection_size} != "
                    f"vision hidden_size {embed}; the towers do not share an embedding space"
                )
        else:
            embed = int(config.projection_dim)
        return {
            "text_width": int(text.hidden_size),
            "vision_width": int(vision.hidden_size),
            "embed_dim": embed,
            "num_image_tokens": patches + int(self.image_cls),
        }

    def pair_similarity(self, model: Any) -> dict[str, Any]:
        """How the family scores a (text, image) pair: cosine times exp(logit_scale), plus
        logit_bias and a sigmoid for SigLIP, with the checkpoint's learned values."""
        spec: dict[str, Any] = {
            "kind": self.similarity,
            "logit_scale": float(math.exp(float(model.logit_scale.detach().reshape(-1)[0]))),
        }
        if self.similarity == "sigmoid":
            spec["logit_bias"] = float(model.logit_bias.detach().reshape(-1)[0])
        return spec

    def header_fields(self, model: Any, max_text_tokens: int) -> dict[str, Any]:
        """The description recorded in the header's ``backbone`` entry (none for CLIP: its
        header predates families and is kept byte-identical)."""
        if self.name == "clip":
            return {}
        return {
            "family": self.name,
            "text_pooling": self.text_pooling,
            "text_padding": self.text_padding,
            "image_pooling": self.image_pooling,
            "image_cls": self.image_cls,
            "max_text_tokens": max_text_tokens,
            "similarity": self.pair_similarity(model),
        }


CLIP = BackboneFamily(
    name="clip",
    architecture="CLIPModel",
    model_type="clip",
    features="clip-tokens-v1",
    text_pooling="eos",
    text_padding="longest",  # causal attention: real tokens never see the padding
    text_attention_mask=True,
    image_cls=True,
    image_pooling="cls",
    similarity="cosine",
    image_processors=(
        "CLIPImageProcessor",
        "CLIPImageProcessorFast",
        "CLIPImageProcessorPil",
        "CLIPFeatureExtractor",
    ),
    pil_processor=("transformers.models.clip.image_processing_pil_clip", "CLIPImageProcessorPil"),
    pretrainable=True,
)

CHINESE_CLIP = BackboneFamily(
    name="chinese_clip",
    architecture="ChineseCLIPModel",
    model_type="chinese_clip",
    features="chinese_clip-tokens-v1",
    text_pooling="first",
    text_padding="longest",  # bidirectional, but masked: padding is never attended to
    text_attention_mask=True,
    image_cls=True,
    image_pooling="cls",
    similarity="cosine",
    image_processors=(
        "ChineseCLIPImageProcessor",
        "ChineseCLIPImageProcessorFast",
        "ChineseCLIPImageProcessorPil",
        "ChineseCLIPFeatureExtractor",
    ),
    pil_processor=(
        "transformers.models.chinese_clip.image_processing_pil_chinese_clip",
        "ChineseCLIPImageProcessorPil",
    ),
    pretrainable=False,
)

SIGLIP = BackboneFamily(
    name="siglip",
    architecture="SiglipModel",
    model_type="siglip",
    features="siglip-tokens-v1",
    text_pooling="last",
    # SigLIP was trained on texts padded to the full length without a mask, and pools the last
    # position: its features are only SigLIP's own when padded that way
    text_padding="max_length",
    text_attention_mask=False,
    image_cls=False,
    image_pooling="attention-pool",
    similarity="sigmoid",
    image_processors=(
        "SiglipImageProcessor",
        "SiglipImageProcessorFast",
        "SiglipImageProcessorPil",
    ),
    pil_processor=(
        "transformers.models.siglip.image_processing_pil_siglip",
        "SiglipImageProcessorPil",
    ),
    pretrainable=False,
)

FAMILIES: dict[str, BackboneFamily] = {f.model_type: f for f in (CLIP, CHINESE_CLIP, SIGLIP)}
_REFUSED = {
    "siglip2": "SigLIP 2 NaFlex (Siglip2Model) cuts images into a variable number of patches; "
    "that preprocessing is not supported (fixed-resolution SigLIP 2 checkpoints, which are "
    "SiglipModels, are)",
}


def family_for_model_type(model_type: str, where: str) -> BackboneFamily:
    """The family of a config.json `model_type`, or a clear refusal."""
    family = FAMILIES.get(model_type)
    if family is not None:
        return family
    supported = ", ".join(f"{f.architecture} ({f.model_type})" for f in FAMILIES.values())
    why = _REFUSED.get(model_type, "its towers pool or project differently")
    raise SemlocError(
        f"{where} is a {model_type!r} model, which semloc cannot read features from: {why}. "
        f"Supported: {supported}"
    )


def family_of_header(header: dict[str, Any]) -> BackboneFamily:
    """The family a store or checkpoint header was extracted with (CLIP when it names none:
    headers written before families existed are CLIP's)."""
    name = (header.get("backbone") or {}).get("family", "clip")
    for family in FAMILIES.values():
        if family.name == name:
            return family
    raise SemlocError(f"the features were extracted with an unknown backbone family {name!r}")


def similarity_of_header(header: dict[str, Any]) -> dict[str, Any]:
    """How the header's backbone scores a (text, image) pair (`pair_similarity`); CLIP headers
    do not record the logit scale, so CLIP's conventional 100 stands in (argmax-neutral)."""
    recorded = (header.get("backbone") or {}).get("similarity")
    return dict(recorded) if recorded else {"kind": "cosine", "logit_scale": 100.0}


def backbone_gate(similarity: dict[str, Any], similarity_std: float) -> tuple[float, float]:
    """(k, b) that make SG-MFT's gate a = sigmoid(k (s - b) / similarity_std) equal the
    backbone's own pair probability sigmoid(logit_scale s + logit_bias): k = logit_scale x
    similarity_std, b = -logit_bias / logit_scale. Only a sigmoid similarity (SigLIP) is a
    calibrated related/unrelated probability; CLIP's cosine is scored by a softmax over
    candidates, so a cosine header is refused."""
    if similarity["kind"] != "sigmoid":
        raise ConfigError(
            "model.gate_init=backbone needs a backbone whose pair similarity is a probability "
            f"(SigLIP's sigmoid); these features record {similarity['kind']!r}: "
            "use model.gate_init=data"
        )
    scale, bias = float(similarity["logit_scale"]), float(similarity["logit_bias"])
    b = -bias / scale
    if not -1.0 <= b <= 1.0:
        raise ConfigError(
            f"model.gate_init=backbone: the backbone's pair probability is 1/2 at cosine {b:.3g}, "
            "outside [-1, 1] (model.gate_bias_init's range); use model.gate_init=data"
        )
    return scale * similarity_std, b


def pair_logits(cosine: Any, similarity: dict[str, Any]) -> Any:
    """Cosines -> the family's pair logits: scale x cos (+ bias for SigLIP, whose probability is
    the sigmoid of this; CLIP's is a softmax over candidates)."""
    out = cosine * similarity["logit_scale"]
    if similarity["kind"] == "sigmoid":
        out = out + similarity["logit_bias"]
    return out
