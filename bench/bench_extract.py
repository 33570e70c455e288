"""Extraction speed on a ViT-B/32-sized CLIP (random weights: the compute of the real one).

    python bench/bench_extract.py [--posts 256] [--naive-posts 48] [--profile]

Measured in one run, so machine drift cancels out:
  * posts/s of the real extraction path (`extract_to_store`: batched, each batch padded to its
    longest text, workers decoding images, bf16) vs a naive loop (one post at a time, fp32,
    text padded to 77 tokens, `CLIPProcessor` called per post); target >= 3x;
  * GFLOP/s of the vision tower (FLOPs counted by torch's FlopCounterMode) vs this machine's
    2048x2048 matmul peak in fp32 and bf16; target >= 50% of the bf16 peak.
"""

from __future__ import annotations

import argparse
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


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def vision_gflops(backbone, batch: int, reps: int = 3) -> tuple[float, float]:
    """(GFLOP/s, images/s) of `encode_pixels` on a batch of random pixels."""
    from torch.utils.flop_counter import FlopCounterMode

    pixels = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    counter = FlopCounterMode(display=False)
    with counter:
        backbone.encode_pixels(pixels[:1])
    flops_per_image = counter.get_total_flops()
    backbone.encode_pixels(pixels)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        backbone.encode_pixels(pixels)
        best = min(best, time.perf_counter() - t0)
    return flops_per_image * batch / best / 1e9, batch / best


def naive_loop(model_dir: Path, posts, base_dir: Path) -> float:
    """posts/s of the straightforward way: one post at a time through `CLIPProcessor` (text
    padded to 77 tokens), fp32, the same features as extraction (each tower run once)."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_dir, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(model_dir, local_files_only=True)
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
    ap.add_argument("--posts", type=int, default=256)
    ap.add_argument("--naive-posts", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=2)
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
        import json

        with open(work / "posts.jsonl", "w") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": f"p{i}", "text": t, "image": f"img/{i % 32}.jpg"}) + "\n")
        posts = read_posts(work / "posts.jsonl").records

        # --- peaks and the vision tower -----------------------------------------------------
        peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
        print(f"matmul 2048^2 peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
        backbone = load_backbone(model_dir, bf16=False)
        g32, ips32 = vision_gflops(backbone, args.batch_size)
        backbone.bf16 = True
        g16, ips16 = vision_gflops(backbone, args.batch_size)
        print(f"vision tower, batch {args.batch_size}: fp32 {g32:.0f} GFLOP/s "
              f"({g32 / peak32:.0%} of fp32 peak, {ips32:.1f} img/s); bf16 {g16:.0f} GFLOP/s "
              f"({g16 / peak16:.0%} of bf16 peak, {ips16:.1f} img/s)")  # fmt: skip
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            pixels = torch.randn(args.batch_size, 3, 224, 224)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                backbone.encode_pixels(pixels)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))

        # --- real path vs naive loop --------------------------------------------------------
        cfg = ExtractConfig(batch_size=args.batch_size, num_workers=args.num_workers, bf16=True,
                            shard_size=1024, progress=False, device="cpu")  # fmt: skip
        t0 = time.perf_counter()
        extract_to_store(work / "posts.jsonl", work / "store", cfg, backbone=backbone)
        real = len(posts) / (time.perf_counter() - t0)
        backbone.bf16 = False
        cfg32 = ExtractConfig(**{**cfg.__dict__, "bf16": False})
        t0 = time.perf_counter()
        extract_to_store(work / "posts.jsonl", work / "store32", cfg32, backbone=backbone)
        real32 = len(posts) / (time.perf_counter() - t0)
        naive = naive_loop(model_dir, posts[: args.naive_posts], work)
        print(f"extraction: real path {real:.1f} posts/s (bf16), {real32:.1f} posts/s (fp32); "
              f"naive loop {naive:.1f} posts/s -> {real / naive:.1f}x (bf16), "
              f"{real32 / naive:.1f}x (fp32)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
