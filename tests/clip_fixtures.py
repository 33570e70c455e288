"""Shared CLIP fixtures: a tiny random CLIP in the real Hugging Face format, built once per run,
and small posts files with images next to them.

Import the fixtures into a test module (or a conftest) with
``from clip_fixtures import tiny_clip_dir, tiny_backbone``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from semloc.clip.backbone import Backbone

TOKENIZER_TEXTS = [
    "a cozy coffee shop with latte art and friends",
    "sunny afternoon in the park, dogs and a frisbee #weekend",
    "late night street food market, neon lights and noodles",
    "gym session done 💪 leg day",
    "quiet library, exams next week 📚",
    "beach sunset with waves and surfers",
]
# small enough to build in milliseconds; max_text_tokens=16 so truncation is easy to reach
TINY_CLIP_KWARGS: dict[str, Any] = dict(
    vocab_size=400,
    text_width=32,
    vision_width=48,
    embed_dim=16,
    layers=2,
    heads=2,
    image_size=32,
    patch_size=8,
    max_text_tokens=16,
    seed=0,
)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny CLIP directory (model + tokenizer + image processor)."""
    from semloc.clip.tiny import build_clip_from_scratch

    return build_clip_from_scratch(
        tmp_path_factory.mktemp("tiny_clip"), TOKENIZER_TEXTS, **TINY_CLIP_KWARGS
    )


@pytest.fixture(scope="session")
def tiny_backbone(tiny_clip_dir: Path) -> Backbone:
    """The tiny CLIP loaded through `load_backbone`, fp32 (shared: don't leave bf16 switched on)."""
    from semloc.clip.backbone import load_backbone

    return load_backbone(tiny_clip_dir)


def random_image(seed: int, size: tuple[int, int] = (60, 40), mode: str = "RGB") -> Image.Image:
    """A noise image of (width, height) `size`: every pixel matters, so mismatches show."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8), "RGB")
    return img.convert(mode) if mode != "RGB" else img


def write_posts(
    directory: Path,
    n: int,
    *,
    image_every: int = 1,
    special: dict[int, str] | None = None,
    name: str = "posts.jsonl",
    labels: Sequence[str] = ("cafe", "park", "gym"),
) -> Path:
    """A JSONL posts file of `n` posts; post i has image img/i.jpg unless i % image_every != 0.

    `special` maps a post index to an image path to write instead (relative to `directory`),
    for bad-image cases the caller creates itself.
    """
    special = special or {}
    (directory / "img").mkdir(parents=True, exist_ok=True)
    words = " ".join(TOKENIZER_TEXTS).split()
    lines = []
    for i in range(n):
        # lengths vary from 1 word to past the context, so batches need padding and truncation
        text = " ".join(words[j % len(words)] for j in range(i * 3, i * 3 + 1 + (i * 5) % 23))
        rec: dict[str, Any] = {"id": f"p{i:03d}", "text": text, "label": labels[i % len(labels)]}
        if i in special:
            rec["image"] = special[i]
        elif i % image_every == 0:
            path = directory / "img" / f"{i}.jpg"
            if not path.exists():
                random_image(i, (40 + (i * 7) % 50, 30 + (i * 11) % 40)).save(path, quality=90)
            rec["image"] = f"img/{i}.jpg"
        lines.append(json.dumps(rec))
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# other backbone families: tiny random checkpoints in their real save_pretrained format

# Chinese and English, as Weibo-style posts mix them
CHINESE_TEXTS = ["咖啡店 的 拿铁 和 朋友", "公园 里 的 狗", "健身房 练腿 日", "图书馆 很 安静"]
# the same widths as the tiny CLIP; SigLIP's text head projects onto the vision width
TINY_WIDTHS: dict[str, Any] = dict(text_width=32, vision_width=48, embed_dim=16, image_size=32)


def build_tiny_siglip(out_dir: Path, texts: Sequence[str], seed: int = 0) -> Path:
    """A randomly initialised `SiglipModel` with a Unigram tokenizer (SentencePiece-style:
    Metaspace pre-tokenizer, `</s>` appended) and a `SiglipImageProcessor` (exact resize, no
    crop, mean = std = 0.5), saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import SiglipConfig, SiglipModel, TokenizersBackend
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=200, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", eos)]
    )
    tokenizer = TokenizersBackend(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        model_max_length=16,
    )  # fmt: skip
    w = TINY_WIDTHS
    config = SiglipConfig(
        text_config={
            "vocab_size": tok.get_vocab_size(), "hidden_size": w["text_width"],
            "intermediate_size": 4 * w["text_width"], "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 16,
            "projection_size": w["vision_width"], "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None, "eos_token_id": eos,
        },
        vision_config={
            "hidden_size": w["vision_width"], "intermediate_size": 4 * w["vision_width"],
            "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": w["image_size"],
            "patch_size": 8,
        },
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SiglipModel(config)
    with torch.no_grad():  # SigLIP's own initial values (log 10, -10), so they show in the header
        model.logit_scale.fill_(np.log(10.0))
        model.logit_bias.fill_(-10.0)
    size = w["image_size"]
    processor = SiglipImageProcessorPil(
        size={"height": size, "width": size}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_chinese_clip(out_dir: Path, texts: Sequence[str], seed: int = 0) -> Path:
    """A randomly initialised `ChineseCLIPModel` (BERT text tower, WordPiece `BertTokenizer`
    whose vocabulary holds every character and word of `texts`) and a
    `ChineseCLIPImageProcessor` (shortest-edge resize + center crop), saved with
    save_pretrained."""
    import torch
    from transformers import BertTokenizer, ChineseCLIPConfig, ChineseCLIPModel
    from transformers.models.chinese_clip.image_processing_pil_chinese_clip import (
        ChineseCLIPImageProcessorPil,
    )

    words = sorted({piece for t in texts for word in t.lower().split() for piece in [word, *word]})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=16)
    w = TINY_WIDTHS
    config = ChineseCLIPConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": w["text_width"],
            "intermediate_size": 4 * w["text_width"], "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 16, "pad_token_id": 0,
            "bos_token_id": 2, "eos_token_id": 3,
        },
        vision_config={
            "hidden_size": w["vision_width"], "intermediate_size": 4 * w["vision_width"],
            "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": w["image_size"],
            "patch_size": 8, "projection_dim": w["embed_dim"],
        },
        projection_dim=w["embed_dim"],
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ChineseCLIPModel(config)
    size = w["image_size"]
    processor = ChineseCLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


FAMILY_BUILDERS = {"siglip": build_tiny_siglip, "chinese_clip": build_tiny_chinese_clip}


@pytest.fixture(scope="session")
def tiny_family_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> dict:
    """family name -> a tiny random checkpoint directory of that family (CLIP included)."""
    texts = [*TOKENIZER_TEXTS, *CHINESE_TEXTS]
    dirs = {"clip": tiny_clip_dir}
    for name, build in FAMILY_BUILDERS.items():
        dirs[name] = build(tmp_path_factory.mktemp(f"tiny_{name}"), texts)
    return dirs
