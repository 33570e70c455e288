"""Extraction speed on a ViT-B/32-sized CLIP (random weights: the compute of the real one).

    python bench/bench_extract.py [--posts 128] [--naive-posts 16] [--rounds 3] [--profile]

Measured in one run, so machine drift cancels out:
  * posts/s of the real extraction path (`extract_to_store`: batched, each batch padded to its
    longest text, workers decoding images, bf16) vs a naive loop (one post at a time, fp32,
    text padded to 77 tokens, `CLIPProcessor` called per post); target >= 3x;
  * GFLOP/s of the vision tower (FLOPs counted by torch's FlopCounterMode) vs this machine's
    2048x2048 matmul peak in fp32 and bf16; target >= 50% of the bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

WORDS = [
    "coffee",
    "latte",
    "morning",
    "friends",
    "park",
    "sunny",
    "dog",
    "walk",
    "street",
    "food",
    "market",
    "neon",
    "night",
    "gym",
    "workout",
    "library",
    "study",
    "exams",
    "beach",
    "sunset",
    "waves",
    "museum",
    "art",
    "gallery",
    "train",
    "station",
    "commute",
    "rain",
    "umbrella",
    "pizza",
    "dinner",
    "rooftop",
    "view",
    "city",
    "lights",
    "concert",
    "music",
    "festival",
    "crowd",
    "hotel",
    "lobby",
    "airport",
    "gate",
    "flight",
    "delayed",
    "shopping",
    "mall",
    "sale",
    "bakery",
    "croissant",
    "bookstore",
    "cozy",
    "corner",
]
TAGS = ["#weekend", "#nofilter", "#citylife", "#foodie", "#travel", "😍", "☕", "🏖️", "lol", "!!"]


def make_texts(n: int, rng: np.random.Generator) -> list[str]:
    out = []
    for _ in range(n):
        k = int(rng.integers(6, 40))  # tweet-like: a handful to a few dozen words
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), k)]
        words += [TAGS[i] for i in rng.integers(0, len(TAGS), int(rng.integers(0, 4)))]
        out.append(" ".join(words))
    return out


def make_photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """A photo-like JPEG source: smooth gradient, shapes, a little noise (not pure noise, which
    compresses and decodes unlike photos)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [(np.sin(x / rng.uniform(20, 90) + c) * 0.5 + 0.5) * (y / h) for c in (0, 2, 4)], -1
    )
    img = Image.fromarray((base * 200 + rng.random((h, w, 3)) * 40).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        draw.ellipse([x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))],
                     fill=tuple(int(v) for v in rng.integers(0, 255, 3)))  # fmt: skip
    return img.filter(ImageFilter.GaussianBlur(1))


def build_vit_b32(out: Path, texts: list[str]) -> Path:
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from semloc.clip.tiny import CLIP_MEAN, CLIP_STD, train_clip_tokenizer

    tokenizer = train_clip_tokenizer(texts, vocab_size=4000, max_text_tokens=77)
    config = CLIPConfig(  # openai/clip-vit-base-patch32's sizes
        text_config={"vocab_size": len(tokenizer), "hidden_size": 512, "intermediate_size": 2048,
                     "num_hidden_layers": 12, "num_attention_heads": 8,
                     "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
        projection_dim=512,
    )  # fmt: skip
    torch.manual_seed(0)
    model = CLIPModel(config)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        resample=3,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    model.save_pretrained(out)
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def vision_flops_per_image(backbone) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        backbone.encode_pixels(np.zeros((1, 3, 224, 224), np.float32))
    return counter.get_total_flops()


def vision_seconds(backbone, pixels: np.ndarray, reps: int = 2) -> float:
    """Best wall time of `encode_pixels` on `pixels` (after a warm-up call)."""
    backbone.encode_pixels(pixels)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        backbone.encode_pixels(pixels)
        best = min(best, time.perf_counter() - t0)
    return best


def naive_loop(model, processor, posts, base_dir: Path) -> float:
    """posts/s of the straightforward way: one post at a time through `CLIPProcessor` (text
    padded to 77 tokens), fp32, the same features as extraction (each tower run once)."""
    t0 = time.perf_counter()
    for p in posts:
        image = Image.open(base_dir / p.image)
        inputs = processor(text=[p.text], images=[image], padding="max_length", max_length=77,
                           truncation=True, return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            text = model.text_model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            )
            model.text_projection(text.pooler_output)
            vision = model.vision_model(pixel_values=inputs["pixel_values"])
            tokens = model.vision_model.post_layernorm(vision.last_hidden_state)
            model.visual_projection(tokens[:, 0])
    return len(posts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--posts", type=int, default=128)
    ap.add_argument("--naive-posts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (best kept)")
    ap.add_argument("--profile", action="store_true", help="profile the vision tower briefly")
    args = ap.parse_args()

    from transformers.utils import logging as hf_logging

    from semloc.clip.backbone import load_backbone
    from semloc.clip.extract import extract_to_store
    from semloc.config import ExtractConfig
    from semloc.data.records import read_posts

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    work = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        rng = np.random.default_rng(0)
        texts = make_texts(args.posts, rng)
        t0 = time.perf_counter()
        model_dir = build_vit_b32(work / "clip", texts)
        print(f"built ViT-B/32-sized CLIP in {time.perf_counter() - t0:.1f}s")
        (work / "img").mkdir()
        sizes = [(640, 480), (1080, 1080), (480, 640), (1280, 720)]
        for i in range(32):
            make_photo(i, sizes[i % len(sizes)]).save(work / "img" / f"{i}.jpg", quality=88)
        with open(work / "posts.jsonl", "w") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": f"p{i}", "text": t, "image": f"img/{i % 32}.jpg"}) + "\n")
        posts = read_posts(work / "posts.jsonl").records

        # Each measurement is repeated in `--rounds` interleaved rounds and the best is kept:
        # on a shared machine the best is the closest to what the code does on an idle one,
        # and interleaving exposes every measurement to the same load.
        from transformers import CLIPModel, CLIPProcessor

        backbone = load_backbone(model_dir, bf16=False)
        naive_model = CLIPModel.from_pretrained(model_dir, local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(model_dir, local_files_only=True)
        flops = vision_flops_per_image(backbone)
        pixels = np.random.default_rng(0).standard_normal((args.batch_size, 3, 224, 224))
        pixels = pixels.astype(np.float32)
        cfg = ExtractConfig(batch_size=args.batch_size, num_workers=args.num_workers, bf16=True,
                            shard_size=1024, progress=False, device="cpu")  # fmt: skip
        cfg32 = ExtractConfig(**{**cfg.__dict__, "bf16": False})
        best: dict[str, float] = {}

        def keep(name: str, value: float) -> None:
            best[name] = max(best.get(name, 0.0), value)

        for r in range(args.rounds):
            keep("peak32", matmul_peak(torch.float32))
            keep("peak16", matmul_peak(torch.bfloat16))
            for flag, name in ((False, "vis32"), (True, "vis16")):
                backbone.bf16 = flag
                keep(name, flops * args.batch_size / vision_seconds(backbone, pixels) / 1e9)
            for flag, c, name in ((True, cfg, "real16"), (False, cfg32, "real32")):
                backbone.bf16 = flag
                store = work / f"store-{name}-{r}"
                t0 = time.perf_counter()
                extract_to_store(work / "posts.jsonl", store, c, backbone=backbone)
                keep(name, len(posts) / (time.perf_counter() - t0))
                shutil.rmtree(store)
            keep("naive", naive_loop(naive_model, processor, posts[: args.naive_posts], work))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                          best.items()), flush=True)  # fmt: skip

        b = best
        print(
            f"\nmatmul 2048^2 peak: fp32 {b['peak32']:.0f} GFLOP/s, bf16 {b['peak16']:.0f} GFLOP/s"
        )
        print(
            f"vision tower ({flops / 1e9:.2f} GFLOP/image), batch {args.batch_size}: "
            f"fp32 {b['vis32']:.0f} GFLOP/s = {b['vis32'] / b['peak32']:.0%} of fp32 peak "
            f"({b['vis32'] * 1e9 / flops:.1f} img/s); bf16 {b['vis16']:.0f} GFLOP/s = "
            f"{b['vis16'] / b['peak16']:.0%} of bf16 peak ({b['vis16'] * 1e9 / flops:.1f} img/s)"
        )
        print(f"extraction: real path {b['real16']:.1f} posts/s (bf16), {b['real32']:.1f} posts/s "
              f"(fp32); naive loop {b['naive']:.2f} posts/s -> {b['real16'] / b['naive']:.1f}x "
              f"(bf16), {b['real32'] / b['naive']:.1f}x (fp32)")  # fmt: skip
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            backbone.bf16 = True
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                backbone.encode_pixels(pixels)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
