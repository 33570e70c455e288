"""Training speed and results in bf16 (and fp16) against fp32, measured in the same run.

    python bench/bench_train_precision.py [--posts 512] [--rounds 2] [--threads 1]
                                          [--quality] [--seeds 5]

Speed: SG-MFT (default size) trained through `semloc.runs.train_run` on a synthetic feature store
at ViT-B/32 widths (text 512, vision 768, embed 512; 50 image tokens, texts up to 32 tokens), one
epoch per precision, the precisions alternating for --rounds rounds (medians shown) so machine
drift hits each alike. Reports training posts/s and the step-time ratio against fp32. A precision
this CPU does not run natively (bf16 without AVX-512-BF16/AMX, fp16 without AVX-512-FP16/AMX-FP16)
is skipped, and the script says so: emulated it is orders of magnitude slower, not a speed-up.

--quality: the same comparison for results: small SG-MFTs trained on a learnable synthetic store
for --seeds seeds in each precision; prints test macro-F1 mean ± std (over seeds) per precision
and the difference of the means in units of the fp32 seed std ("within seed noise" = |d| < 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from semloc.config import load_config
from semloc.evaluation import evaluate_runs
from semloc.features.synthetic import make_random_store
from semloc.precision import cpu_flags, cpu_has_native_bf16, cpu_has_native_fp16
from semloc.runs import train_run

B32_DIMS = {"text_width": 512, "vision_width": 768, "embed_dim": 512, "num_image_tokens": 50}
SMALL_DIMS = {"text_width": 64, "vision_width": 96, "embed_dim": 32, "num_image_tokens": 10}


def cpu_line() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16")
    flags = [f for f in wanted if f in cpu_flags()]
    return (
        f"{model}, {os.cpu_count()} cores, flags: {' '.join(flags) or 'none of interest'}, "
        f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )


def runnable_precisions() -> list[str]:
    out = ["fp32"]
    if cpu_has_native_bf16():
        out.append("bf16")
    else:
        print("skipping bf16: this CPU has no AVX-512-BF16/AMX, bf16 would be emulated (slow)")
    if cpu_has_native_fp16():
        out.append("fp16")
    else:
        print("skipping fp16: this CPU has no AVX-512-FP16/AMX-FP16, fp16 would be emulated")
    return out


def speed(args: argparse.Namespace, root: Path, precisions: list[str]) -> None:
    store = make_random_store(
        root / "b32-store",
        args.posts,
        dims=B32_DIMS,
        max_text_tokens=32,
        shard_size=512,
        splits=(0.9, 0.1, 0.0),
    )
    base = [
        "train.epochs=1",
        "train.progress=false",
        "train.patience=0",
        f"train.num_threads={args.threads}",
        "train.batch_size=64",
    ]
    rates: dict[str, list[float]] = {p: [] for p in precisions}
    for r in range(args.rounds + 1):  # round 0 warms up (allocator, kernels); not counted
        for p in precisions:
            cfg = load_config(None, [*base, f"train.precision={p}"])
            result = train_run(store.root, cfg, root / f"run-{p}", overwrite=True)
            if r > 0:
                rates[p].append(result.history[0]["train_posts_per_s"])
    print(
        f"\nSG-MFT (dim {load_config().model.dim}) training at ViT-B/32 widths, batch 64, "
        f"{args.posts} posts, median of {args.rounds} rounds:"
    )
    ref = statistics.median(rates["fp32"])
    for p in precisions:
        rate = statistics.median(rates[p])
        print(
            f"  {p:5s} {rate:8.1f} train posts/s   step time {ref / rate:.2f}x fp32 "
            f"(speed-up {rate / ref:.2f}x)"
        )


def quality(args: argparse.Namespace, root: Path, precisions: list[str]) -> None:
    store = make_random_store(
        root / "small-store", 1200, dims=SMALL_DIMS, num_classes=6, signal=0.15, seed=1
    )
    base = [
        "model.dim=64",
        "model.num_heads=4",
        "train.epochs=8",
        "train.patience=0",
        "train.progress=false",
        "train.lr=3e-4",
        f"train.num_threads={args.threads}",
    ]
    scores: dict[str, list[float]] = {p: [] for p in precisions}
    for seed in range(args.seeds):
        for p in precisions:
            run = root / f"q-{p}-{seed}"
            train_run(
                store.root,
                load_config(None, [*base, f"train.seed={seed}", f"train.precision={p}"]),
                run,
            )
            m = evaluate_runs([run], "test", plots=False)["runs"][0]
            scores[p].append(m["macro_f1"])
    print(f"\ntest macro-F1 over {args.seeds} seeds (small SG-MFT, synthetic store):")
    ref_mean = statistics.mean(scores["fp32"])
    ref_std = statistics.stdev(scores["fp32"]) if args.seeds > 1 else float("nan")
    for p in precisions:
        mean = statistics.mean(scores[p])
        std = statistics.stdev(scores[p]) if args.seeds > 1 else float("nan")
        d = (mean - ref_mean) / ref_std if ref_std > 0 else float("nan")
        print(
            f"  {p:5s} {100 * mean:6.2f} ± {100 * std:5.2f}   difference to fp32: "
            f"{100 * (mean - ref_mean):+.2f} points = {d:+.2f} fp32 seed std"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="train.num_threads (default 1: stable on shared CPUs)",
    )
    parser.add_argument("--quality", action="store_true", help="also compare results over seeds")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    print(cpu_line())
    precisions = runnable_precisions()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        speed(args, Path(tmp), precisions)
        if args.quality:
            quality(args, Path(tmp), precisions)
    print(f"\n({time.perf_counter() - t0:.0f} s; load average now "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
