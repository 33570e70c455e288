"""The CLIP backbone: parity with transformers' own CLIP, preprocessing parity with the HF image
processor, offline loading and its messages, bf16 agreement."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clip_fixtures import random_image
from semloc.clip.backbone import ImagePreprocessing, load_backbone
from semloc.clip.extract import BF16_MIN_COSINE, bf16_agreement
from semloc.errors import SemlocError
from semloc.io import sha256_file

TEXTS = [
    "",
    "coffee",
    "A cozy COFFEE shop with latte art and friends!!",
    "neon lights " * 20,  # past the 16-token context of the tiny CLIP
    "Ünïcödé 🤖 #weekend",
]


def _pil_processor(**kwargs):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(**kwargs)


def _hf_pixels(processor, img: Image.Image) -> np.ndarray:
    return np.asarray(processor(images=img, return_tensors="np")["pixel_values"][0])


# ----------------------------------------------------------------------------------------------
# image preprocessing


def _images() -> list[Image.Image]:
    rgba = random_image(1, (50, 37), "RGBA")
    rgba.putalpha(Image.fromarray((np.arange(50 * 37) % 256).astype(np.uint8).reshape(37, 50)))
    palette = random_image(2, (33, 61)).convert("P")
    palette.info["transparency"] = 3
    return [
        random_image(0, (60, 40)),  # landscape
        random_image(3, (41, 97)),  # portrait, odd sizes
        random_image(4, (32, 32)),  # already the model size
        random_image(5, (7, 5)),  # upscaled
        random_image(6, (300, 17)),  # extreme aspect ratio
        random_image(7, (45, 45), "L"),
        random_image(8, (45, 52), "CMYK"),
        rgba,
        palette,
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the tiny CLIP's own: shortest edge 32, crop 32, bicubic
        {"resample": 2, "size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 24}},
        {"size": {"height": 30, "width": 20}, "do_center_crop": False},
        {"do_resize": False, "crop_size": {"height": 48, "width": 48}},  # pads small images
        {"do_normalize": False, "do_rescale": False},
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 1.0], "rescale_factor": 0.01},
    ],
)
def test_preprocessing_equals_hf_image_processor(settings: dict) -> None:
    base = {
        "size": {"shortest_edge": 32},
        "crop_size": {"height": 32, "width": 32},
        "resample": 3,
    }
    processor = _pil_processor(**{**base, **settings})
    ours = ImagePreprocessing.from_processor(processor, "test")
    for img in _images():
        expected = _hf_pixels(processor, img)
        got = ours(img)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)  # bit-exact, not merely close


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"size": {"shortest_edge": 32, "longest_edge": 64}}, "longest_edge"),
        ({"do_pad": True}, "do_pad"),
        ({"do_convert_rgb": False}, "do_convert_rgb"),
    ],
)
def test_unsupported_preprocessing_is_refused(settings: dict, words: str) -> None:
    with pytest.raises(SemlocError, match=words):
        ImagePreprocessing.from_processor(_pil_processor(**settings), "test")


def test_loaded_backbone_uses_the_directory_preprocessing(tiny_backbone, tiny_clip_dir) -> None:
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(tiny_clip_dir, local_files_only=True)
    img = random_image(9, (70, 50))
    np.testing.assert_array_equal(
        tiny_backbone.preprocess_image(img), _hf_pixels(processor.image_processor, img)
    )


# ----------------------------------------------------------------------------------------------
# parity with CLIPModel


def test_text_features_equal_clip_model(tiny_backbone, tiny_clip_dir) -> None:
    from transformers import CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(tiny_clip_dir, local_files_only=True).eval()
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir, local_files_only=True)
    tokens, embeds, truncated = tiny_backbone.encode_texts(TEXTS)
    max_len = tiny_backbone.max_text_tokens
    assert max_len == 16
    enc = tokenizer(TEXTS, truncation=True, max_length=max_len, padding="max_length",
                    return_tensors="pt")  # fmt: skip
    full = tokenizer(TEXTS)["input_ids"]
    assert truncated == [len(ids) > max_len for ids in full]
    assert truncated[3] and not truncated[2]
    with torch.no_grad():
        hidden = model.text_model(**enc).last_hidden_state.numpy()
        pooled = model.get_text_features(**enc)
    pooled = getattr(pooled, "pooler_output", pooled).numpy()
    for i, t in enumerate(tokens):
        n = int(enc["attention_mask"][i].sum())
        assert t.shape == (n, 32)  # real tokens only, BOS and EOS included
        # padding to the batch's longest text (dynamic) equals padding to the full context
        np.testing.assert_allclose(t, hidden[i, :n], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(embeds, pooled, rtol=1e-5, atol=1e-5)


def test_dynamic_padding_equals_single_text_encoding(tiny_backbone) -> None:
    tokens, embeds, _ = tiny_backbone.encode_texts(TEXTS)
    for i, text in enumerate(TEXTS):
        alone, alone_embed, _ = tiny_backbone.encode_texts([text])
        np.testing.assert_allclose(tokens[i], alone[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(embeds[i], alone_embed[0], rtol=1e-5, atol=1e-5)


def test_image_features_equal_clip_model(tiny_backbone, tiny_clip_dir) -> None:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_clip_dir, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir, local_files_only=True)
    images = _images()[:4]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    tokens, embeds = tiny_backbone.encode_pixels(
        np.stack([tiny_backbone.preprocess_image(im) for im in images])
    )
    with torch.no_grad():
        out = model.vision_model(pixel_values=pixels)
        expected_tokens = model.vision_model.post_layernorm(out.last_hidden_state).numpy()
        pooled = model.get_image_features(pixel_values=pixels)
    pooled = getattr(pooled, "pooler_output", pooled).numpy()
    assert tokens.shape == (4, 17, 48)
    np.testing.assert_allclose(tokens, expected_tokens, rtol=1e-5, atol=1e-5)
    # the CLS token is exactly what HF pools
    np.testing.assert_allclose(tokens[:, 0], out.pooler_output.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(embeds, pooled, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_agrees_with_fp32(tiny_backbone) -> None:
    ids, _ = tiny_backbone.tokenize(TEXTS)
    pixels = np.stack([tiny_backbone.preprocess_image(im) for im in _images()])
    assert bf16_agreement(tiny_backbone, ids, pixels) >= BF16_MIN_COSINE
    assert tiny_backbone.bf16 is False  # restored


# ----------------------------------------------------------------------------------------------
# loading


def test_header_records_weights_and_preprocessing(tiny_backbone, tiny_clip_dir: Path) -> None:
    h = tiny_backbone.header("float32")
    assert h["backbone"]["weights_sha256"] == sha256_file(tiny_clip_dir / "model.safetensors")
    assert h["backbone"]["name"] == tiny_clip_dir.name
    assert h["backbone_path"] == str(tiny_clip_dir.resolve())
    assert h["preprocessing"]["image"]["size"] == {"shortest_edge": 32}
    assert h["preprocessing"]["image"]["resample"] == 3
    assert h["preprocessing"]["max_text_tokens"] == 16
    assert h["dtype"] == "float32"
    assert h["dims"] == {"text_width": 32, "vision_width": 48, "embed_dim": 16,
                         "num_image_tokens": 17}  # fmt: skip


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import huggingface_hub.constants

    # an empty hub cache: whatever this machine has cached must not matter
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("name", ["openai/clip-vit-base-patch32", "clip-vit-base-patch32"])
def test_missing_hub_model_gives_one_clear_message_offline(name: str) -> None:
    with pytest.raises(SemlocError) as e:
        load_backbone(name)
    msg = str(e.value)
    assert name in msg and "not in the local Hugging Face cache" in msg
    assert "--allow-network" in msg and "save_pretrained" in msg
    assert "\n" not in msg


@pytest.mark.usefixtures("no_network")
def test_missing_directory_gives_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(SemlocError, match=r"no such directory.*--allow-network"):
        load_backbone(str(tmp_path / "nothing" / "here"))
    with pytest.raises(SemlocError, match="no backbone given"):
        load_backbone("")


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "remove, words",
    [
        (["processor_config.json"], "image processor config"),
        (["tokenizer.json", "tokenizer_config.json"], "a tokenizer"),
        (["model.safetensors"], "weights"),
    ],
)
def test_incomplete_directory_is_refused_not_defaulted(
    tiny_clip_dir: Path, tmp_path: Path, remove: list[str], words: str
) -> None:
    d = tmp_path / "clip"
    shutil.copytree(tiny_clip_dir, d)
    for name in remove:
        (d / name).unlink()
    with pytest.raises(SemlocError, match=f"not a complete backbone directory.*{words}"):
        load_backbone(d)
