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
