"""Extraction speed on a ViT-B/32-sized CLIP (random weights: the compute of the real one).

    python bench/bench_extract.py [--posts 1000] [--naive-posts 16] [--rounds 1] [--stages]
                                  [--precision auto|fp32|bf16|all] [--workers N] [--threads N]

Measured in one run, so machine drift cancels out (and printed with the load average, since a
shared machine moves every figure):
  * towers alone: posts/s of the text tower + the vision tower on pre-tokenised texts and
    pre-decoded pixels, at the same batch size (the ceiling for extraction);
  * posts/s of the real extraction path (`extract_to_store`: batched, padded to the longest text,
    decoding workers, the automatic thread budget unless --workers/--threads) -> the ratio to
    the towers alone (target >= 0.85) and to a naive loop (one post at a time, fp32, text padded
    to 77 tokens, `CLIPProcessor` per post; target >= 5x on an AVX2 machine);
  * --predict: posts/s of `semloc predict` on the same posts file (`prediction.predict_posts`:
    featurising with the run's CLIP + an SG-MFT at ViT-B/32 widths trained for one epoch on a
    small labelled store) -> its ratio to the towers alone (target >= 0.85);
  * GFLOP/s of the vision tower vs this machine's 2048x2048 matmul peak;
  * --stages: where extraction time goes, each stage timed alone in this process: start-up
    (loading the CLIP), tokenisation, image decode + resize, collation, text tower, vision tower,
    shard writing (`docs/scale.md` has a profile).

On an AVX-512 CPU, the figures of an AVX2-only one (same cores, the instruction set capped for
every kernel library torch uses; the header line names torch's kernel level):

    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
        python bench/bench_extract.py --precision fp32

bf16 rows run only where the hardware has native bf16 (AVX-512-BF16 / AMX on a CPU, or a GPU):
emulated bf16 is many times slower than fp32 and would only spend minutes saying so; the bench
says which rows it skipped and why.
"""

from __future__ import annotations

import argparse
import json
import os
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


# openai/clip-vit-base-patch32's sizes (tower widths, layers, heads; the joint embedding)
VIT_B32 = dict(text_width=512, text_layers=12, text_heads=8, vision_width=768, vision_layers=12,
               vision_heads=12, embed_dim=512)  # fmt: skip


def build_clip(out: Path, texts: list[str], *, text_width: int, text_layers: int,
               text_heads: int, vision_width: int, vision_layers: int, vision_heads: int,
               embed_dim: int) -> Path:  # fmt: skip
    """A CLIP with random weights in Hugging Face's format, 224 px images in 32 px patches (50
    tokens) and 77 text tokens, the towers as given; a tokenizer trained on `texts`."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from semloc.clip.tiny import CLIP_MEAN, CLIP_STD, train_clip_tokenizer

    tokenizer = train_clip_tokenizer(texts, vocab_size=4000, max_text_tokens=77)
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": text_width,
                     "intermediate_size": 4 * text_width, "num_hidden_layers": text_layers,
                     "num_attention_heads": text_heads,
                     "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": vision_width, "intermediate_size": 4 * vision_width,
                       "num_hidden_layers": vision_layers, "num_attention_heads": vision_heads,
                       "image_size": 224, "patch_size": 32},
        projection_dim=embed_dim,
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


def build_vit_b32(out: Path, texts: list[str]) -> Path:
    """A ViT-B/32-sized CLIP with random weights: the compute of the real one."""
    return build_clip(out, texts, **VIT_B32)


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


def native_bf16() -> tuple[bool, str]:
    """Whether this machine runs bf16 matmuls natively (`semloc.precision`'s rule, the one
    `extract.bf16=auto` applies), and the evidence."""
    from semloc.precision import BF16_CPU_FLAGS, cpu_flags, isa_capped_below_avx512, native_bf16

    if torch.cuda.is_available():
        return native_bf16("cuda"), torch.cuda.get_device_name()
    found = sorted(cpu_flags() & BF16_CPU_FLAGS)
    evidence = ("CPU flags " + ", ".join(found)) if found else "no avx512_bf16/amx_bf16 flag"
    if found and isa_capped_below_avx512():
        evidence += ", but torch is capped below AVX-512 (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA)"
    return native_bf16("cpu"), evidence


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def tower_inputs(backbone, posts, base_dir: Path, cfg) -> tuple[list, list]:
    """The towers' inputs for `posts`, prepared once the way extraction batches them (shards of
    `cfg.shard_size`, batches of `cfg.batch_size`): tokenised texts and decoded pixels."""
    from semloc.clip.extract import PostLoader, plan_batches

    loader = PostLoader.for_backbone(backbone, cfg.max_image_pixels)
    batches = plan_batches(len(posts), range(-(-len(posts) // cfg.shard_size)),
                           cfg.shard_size, cfg.batch_size)  # fmt: skip
    token_batches, pixel_batches = [], []
    for b in batches:
        batch = loader.load_batch(b, [posts[i].text for i in b],
                                  [posts[i].image_path(base_dir) for i in b])  # fmt: skip
        token_batches.append([it.token_ids for it in batch.items])
        pixel_batches.append(batch.pixels)
    return token_batches, pixel_batches


def tower_seconds(backbone, token_batches, pixel_batches) -> tuple[float, float]:
    """Seconds of the text tower and of the vision tower over every batch (towers alone)."""
    t0 = time.perf_counter()
    for ids in token_batches:
        backbone.encode_token_ids(ids)
    t1 = time.perf_counter()
    for px in pixel_batches:
        backbone.encode_pixels(px)
    return t1 - t0, time.perf_counter() - t1


def stage_profile(model_dir: Path, posts, base_dir: Path, cfg, work: Path) -> dict[str, float]:
    """Seconds of each extraction stage over `posts`, each run alone, in this process."""
    from semloc.clip.backbone import load_backbone
    from semloc.clip.extract import (
        PostLoader,
        StoreExtraction,
        collate,
        encode_batch,
        plan_batches,
        run_record,
    )
    from semloc.config import DataConfig

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    backbone = load_backbone(model_dir)
    out["start-up (load CLIP)"] = time.perf_counter() - t0
    loader = PostLoader.for_backbone(backbone, cfg.max_image_pixels)
    batches = plan_batches(len(posts), range(-(-len(posts) // cfg.shard_size)), cfg.shard_size,
                           cfg.batch_size)  # fmt: skip
    texts = [p.text for p in posts]
    images = [p.image_path(base_dir) for p in posts]
    t0 = time.perf_counter()
    for b in batches:
        loader.load(b, [texts[i] for i in b], [None] * len(b))
    out["tokenisation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = [loader.load(b, [texts[i] for i in b], [images[i] for i in b]) for b in batches]
    out["decode + resize"] = time.perf_counter() - t0 - out["tokenisation"]
    t0 = time.perf_counter()
    ready = [collate(items) for items in loaded]
    out["collation"] = time.perf_counter() - t0
    # one pass of the store path, the towers timed from inside: the rest of `encode_batch` is
    # the image policy and gathering the features; `add` + `finish` write shards and manifest
    timed = {"vision tower": 0.0, "text tower": 0.0}

    def timer(name: str, fn):
        def run(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timed[name] += time.perf_counter() - t

        return run

    backbone.encode_pixels = timer("vision tower", backbone.encode_pixels)
    backbone.encode_token_ids = timer("text tower", backbone.encode_token_ids)
    job = StoreExtraction(work / "stages-store", posts, backbone, cfg,
                          run_record("bench", len(posts), cfg, DataConfig()),
                          posts_file="bench")  # fmt: skip
    encode = write = 0.0
    for batch in ready:
        t0 = time.perf_counter()
        enc = encode_batch(backbone, batch, cfg.image_policy, job.outcomes)
        t1 = time.perf_counter()
        job.add([it.index for it in batch.items], enc)
        encode, write = encode + t1 - t0, write + time.perf_counter() - t1
    t0 = time.perf_counter()
    job.finish()
    out.update(timed)
    out["policy + gathering features"] = encode - sum(timed.values())
    out["shard writing + manifest"] = write + time.perf_counter() - t0
    return out


def make_run(work: Path, backbone, cfg):
    """An SG-MFT run (default widths on ViT-B/32 features) trained one epoch on 64 labelled
    posts, loaded the way `semloc predict` loads it."""
    from semloc.clip.extract import extract_to_store
    from semloc.config import load_config
    from semloc.runs import load_run, train_run

    rows = [json.loads(line) for line in (work / "posts.jsonl").read_text().splitlines()[:64]]
    with open(work / "labelled.jsonl", "w") as f:
        for i, rec in enumerate(rows):
            split = "dev" if i % 4 == 3 else "train"
            f.write(json.dumps({**rec, "label": "ab"[i % 2], "split": split}) + "\n")
    store = work / "labelled-store"
    extract_to_store(work / "labelled.jsonl", store, cfg, backbone=backbone)
    train_cfg = load_config(overrides=["model.name=sgmft", "train.epochs=1",
                                       "train.progress=false", "train.device=cpu"])  # fmt: skip
    train_run(store, train_cfg, work / "run")
    return load_run(work / "run")


def predict_speed(run, posts_file: Path, backbone, cfg) -> float:
    """posts/s of `prediction.predict_posts` (what `semloc predict RUN POSTS` runs), fp32."""
    from semloc.prediction import predict_posts

    t0 = time.perf_counter()
    out = predict_posts(run, posts_file, backbone=backbone, extract_cfg=cfg,
                        batch_size=cfg.batch_size)  # fmt: skip
    seconds = time.perf_counter() - t0
    del out
    return sum(1 for _ in posts_file.open()) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--posts", type=int, default=1000)
    ap.add_argument("--naive-posts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=-1, help="decoding workers (-1: automatic)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: automatic)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repetitions (best kept)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16", "all"), default="auto",
                    help="auto: fp32, plus bf16 where the hardware has it natively")  # fmt: skip
    ap.add_argument("--stages", action="store_true", help="time each extraction stage alone")
    ap.add_argument("--also-workers", type=int, nargs="*", default=[], metavar="N",
                    help="extra fp32 extraction rows with N decoding workers (same threads)")  # fmt: skip
    ap.add_argument("--profile", action="store_true", help="torch profile of the vision tower")
    ap.add_argument("--predict", action="store_true",
                    help="also time `semloc predict` on the posts file (fp32)")  # fmt: skip
    args = ap.parse_args()

    from transformers.utils import logging as hf_logging

    from semloc.clip.backbone import load_backbone
    from semloc.clip.extract import extract_to_store, thread_budget
    from semloc.config import ExtractConfig
    from semloc.data.records import read_posts

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    native, why = native_bf16()
    precisions = {"auto": ["fp32", *(["bf16"] if native else [])], "fp32": ["fp32"],
                  "bf16": ["bf16"], "all": ["fp32", "bf16"]}[args.precision]  # fmt: skip
    workers, threads = thread_budget(args.workers, args.threads)
    print(f"{cpu_name()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; torch {torch.__version__}, kernels "
          f"{torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(f"thread budget: {threads} torch threads, {workers} decoding workers"
          + ("" if args.workers < 0 and args.threads == 0 else " (as given)"))  # fmt: skip
    print(f"native bf16: {'yes' if native else 'no'} ({why})")
    if "bf16" not in precisions and not native:
        print("bf16 rows skipped: emulated bf16 is many times slower than fp32 here "
              "(--precision all runs them anyway)")  # fmt: skip
    elif "bf16" not in precisions:
        print("bf16 rows not asked for (--precision fp32)")
    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        rng = np.random.default_rng(0)
        texts = make_texts(args.posts, rng)
        t0 = time.perf_counter()
        model_dir = build_vit_b32(work / "clip", texts)
        print(f"built ViT-B/32-sized CLIP in {time.perf_counter() - t0:.1f}s")
        (work / "img").mkdir()
        sizes = [(640, 480), (1080, 1080), (480, 640), (1280, 720)]
        num_images = min(64, args.posts)
        for i in range(num_images):
            make_photo(i, sizes[i % len(sizes)]).save(work / "img" / f"{i}.jpg", quality=88)
        with open(work / "posts.jsonl", "w") as f:
            for i, t in enumerate(texts):
                rec = {"id": f"p{i}", "text": t, "image": f"img/{i % num_images}.jpg"}
                f.write(json.dumps(rec) + "\n")
        posts = read_posts(work / "posts.jsonl").records

        from transformers import CLIPModel, CLIPProcessor

        backbone = load_backbone(model_dir, bf16=False)
        cfg = ExtractConfig(batch_size=args.batch_size, num_workers=args.workers,
                            num_threads=args.threads, shard_size=args.shard_size,
                            progress=False, device="cpu")  # fmt: skip
        if args.stages:
            stages = stage_profile(model_dir, posts, work, cfg, work)
            total = sum(stages.values())
            print(f"\nstages over {len(posts)} posts, each alone (sum {total:.1f} s):")
            for name, sec in stages.items():
                print(f"  {name:36s} {sec:7.2f} s  {sec / total:6.1%}  "
                      f"{sec / len(posts) * 1e3:7.2f} ms/post")  # fmt: skip
            print()
        token_batches, pixel_batches = tower_inputs(backbone, posts, work, cfg)
        naive_model = CLIPModel.from_pretrained(model_dir, local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(model_dir, local_files_only=True)
        flops = vision_flops_per_image(backbone)
        run = make_run(work, backbone, cfg) if args.predict else None
        best: dict[str, float] = {}

        def keep(name: str, value: float) -> None:
            best[name] = max(best.get(name, 0.0), value)

        for r in range(args.rounds):
            keep("peak fp32", matmul_peak(torch.float32))
            if "bf16" in precisions:
                keep("peak bf16", matmul_peak(torch.bfloat16))
            for prec in precisions:
                backbone.bf16 = prec == "bf16"
                t_text, t_vis = tower_seconds(backbone, token_batches, pixel_batches)
                keep(f"towers {prec}", len(posts) / (t_text + t_vis))
                keep(f"vision GFLOP/s {prec}", flops * len(posts) / t_vis / 1e9)
                store = work / f"store-{prec}-{r}"
                c = ExtractConfig(**{**cfg.__dict__, "bf16": prec == "bf16"})
                t0 = time.perf_counter()
                extract_to_store(work / "posts.jsonl", store, c, backbone=backbone)
                keep(f"extract {prec}", len(posts) / (time.perf_counter() - t0))
                shutil.rmtree(store)
                for w in args.also_workers if prec == "fp32" else []:
                    c = ExtractConfig(**{**cfg.__dict__, "num_workers": w})
                    t0 = time.perf_counter()
                    extract_to_store(work / "posts.jsonl", store, c, backbone=backbone)
                    keep(f"extract fp32 {w} workers", len(posts) / (time.perf_counter() - t0))
                    shutil.rmtree(store)
            backbone.bf16 = False
            if run is not None:
                keep("predict fp32", predict_speed(run, work / "posts.jsonl", backbone, cfg))
            keep("naive", naive_loop(naive_model, processor, posts[: args.naive_posts], work))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                          best.items()), flush=True)  # fmt: skip

        b = best
        print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"matmul 2048^2 peak: fp32 {b['peak fp32']:.0f} GFLOP/s"
              + (f", bf16 {b['peak bf16']:.0f} GFLOP/s" if "peak bf16" in b else ""))  # fmt: skip
        for prec in precisions:
            peak = b[f"peak {prec}"]
            vis = b[f"vision GFLOP/s {prec}"]
            print(f"{prec}: vision tower {vis:.0f} GFLOP/s = {vis / peak:.0%} of the {prec} "
                  f"matmul peak ({flops / 1e9:.2f} GFLOP/image); towers alone "
                  f"{b[f'towers {prec}']:.1f} posts/s; extraction {b[f'extract {prec}']:.1f} "
                  f"posts/s = {b[f'extract {prec}'] / b[f'towers {prec}']:.2f} x towers alone, "
                  f"{b[f'extract {prec}'] / b['naive']:.1f} x the naive loop "
                  f"({b['naive']:.2f} posts/s)")  # fmt: skip
        if run is not None:
            v = b["predict fp32"]
            print(f"fp32 semloc predict on the posts file: {v:.1f} posts/s = "
                  f"{v / b['towers fp32']:.2f} x towers alone, "
                  f"{v / b['naive']:.1f} x the naive loop")  # fmt: skip
        for w in args.also_workers:
            v = b[f"extract fp32 {w} workers"]
            print(f"fp32 with {w} decoding workers: {v:.1f} posts/s = "
                  f"{v / b['towers fp32']:.2f} x towers alone")  # fmt: skip
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                backbone.encode_pixels(pixel_batches[0])
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
