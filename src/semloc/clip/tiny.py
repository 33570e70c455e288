"""A freshly initialised CLIP in the real Hugging Face on-disk format, built offline.

`build_clip_from_scratch` trains a CLIP-style BPE tokenizer on the given texts, initialises a
`CLIPModel` of the requested size with a seed, and saves model + `CLIPProcessor` into one
directory (config.json, model.safetensors, tokenizer files, processor_config.json). The directory
loads with `load_backbone` / `CLIPModel.from_pretrained(dir, local_files_only=True)` like any
downloaded CLIP, so tests, benchmarks and from-scratch contrastive pretraining all take the code
path real checkpoints take.

The tokenizer is the one `transformers.CLIPTokenizer` builds from a vocab and merges (the same
normaliser and pre-tokenizer as OpenAI's CLIP), so what is trained here is exactly what reloads.
Its vocabulary always covers every byte, alone and word-final, so no text maps to an unknown
token, whatever the training texts were.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# OpenAI's CLIP image normalisation; a fresh CLIP may as well share it
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def train_clip_tokenizer(
    texts: Iterable[str], *, vocab_size: int, max_text_tokens: int
) -> CLIPTokenizer:
    """A `CLIPTokenizer` whose BPE merges are learned from `texts`.

    vocab_size counts the 256 byte symbols and the learned merges; the 256 word-final byte
    symbols and the two special tokens (BOS, EOS = pad) are added on top when missing.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # a set's order: varies by process
    bpe = Tokenizer(models.BPE(unk_token=EOS, end_of_word_suffix="</w>"))
    # the same normaliser and pre-tokenizer CLIPTokenizer installs, so merges fit what it sees
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    texts = list(texts)
    # Determinism: the trainer creates each word-final symbol ("e</w>") when it first meets it
    # while iterating over a hash map whose order changes from process to process, and the ids
    # it gives them break ties between merges of equal count, so two runs on the same texts
    # could learn different merges (tokenizers issue #1794). Declaring exactly those symbols up
    # front, sorted, fixes their ids; the vocabulary and the merge budget are the same as
    # without them. They are read back from the model's vocabulary below, never as added tokens.
    final = set()
    for text in texts:
        for word, _ in bpe.pre_tokenizer.pre_tokenize_str(bpe.normalizer.normalize_str(text)):
            final.add(word[-1] + "</w>")
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, len(alphabet) + 1),
        min_frequency=1,
        special_tokens=sorted(final),
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    model = json.loads(bpe.to_str())["model"]
    trained: dict[str, int] = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = [tok for tok, _ in sorted(trained.items(), key=lambda kv: kv[1])]
    have = set(vocab)
    for symbol in [*alphabet, *(a + "</w>" for a in alphabet)]:
        if symbol not in have:
            vocab.append(symbol)
            have.add(symbol)
    # specials last, as in OpenAI's vocabulary (EOS has the highest id)
    vocab += [BOS, EOS]
    return CLIPTokenizer(
        vocab={tok: i for i, tok in enumerate(vocab)},
        merges=merges,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=max_text_tokens,
    )


def build_clip_from_scratch(
    out_dir: str | Path,
    texts_for_tokenizer: Iterable[str],
    *,
    vocab_size: int = 1000,
    text_width: int = 32,
    vision_width: int = 48,
    embed_dim: int = 16,
    layers: int = 2,
    heads: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    max_text_tokens: int = 32,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised CLIP + tokenizer + image processor to `out_dir`; returns it.

    Both towers get `layers` layers of `heads` heads with CLIP's 4x MLP ratio. Deterministic for
    a given seed and texts (the global torch RNG is left untouched).
    """
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out_dir = Path(out_dir)
    if text_width % heads or vision_width % heads:
        raise ValueError(f"widths ({text_width}, {vision_width}) must be divisible by {heads=}")
    if image_size % patch_size:
        raise ValueError(f"{image_size=} must be a multiple of {patch_size=}")
    tokenizer = train_clip_tokenizer(
        texts_for_tokenizer, vocab_size=vocab_size, max_text_tokens=max_text_tokens
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": text_width,
            "intermediate_size": 4 * text_width,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "max_position_embeddings": max_text_tokens,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": vision_width,
            "intermediate_size": 4 * vision_width,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        projection_dim=embed_dim,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=3,  # bicubic, as OpenAI's CLIP
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir
