"""Feature-store benchmarks (the foundation's two promises), printed as ratios measured in one run.

1. Throughput: training SG-MFT reading batches from the memory-mapped store vs the same training
   on the same batches already in memory. The store must not be the bottleneck: ratio >= 0.9.
2. Memory: peak resident memory (RSS) of a full training epoch on stores of 10k and 50k posts
   (ViT-B/32 widths, up to 32 text tokens). Memory must not grow with the store: ratio <= 1.3.

    python bench/bench_store.py            # both (writes ~6 GB of temporary stores)
    python bench/bench_store.py --quick    # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from semloc.config import load_config
from semloc.features.loader import make_loader
from semloc.features.store import FeatureStore
from semloc.features.synthetic import VIT_B32_DIMS, make_random_store
from semloc.models import build_model


def _train_steps(model, batches, lr=1e-4, max_steps=None) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, t0 = 0, time.perf_counter()
    for step, batch in enumerate(batches):
        if max_steps is not None and step >= max_steps:
            break
        out = model(batch)
        loss = loss_fn(out.logits, batch.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(batch)
    return n / (time.perf_counter() - t0)


def throughput(root: Path, num_posts: int, repeats: int, steps: int) -> dict:
    store = make_random_store(
        root, num_posts, dims=VIT_B32_DIMS, max_text_tokens=32, num_classes=8, shard_size=512
    )
    idx = store.indices()
    cfg = load_config(None, ["model.dim=256"])
    torch.manual_seed(0)
    model = build_model(cfg.model, store.dims, len(store.labels))
    # num_workers=0, the trainer default: on 2 cores a reader process only steals model time
    loader = make_loader(store, idx, 64, shuffle=True, seed=0)
    in_memory = list(make_loader(store, idx, 64, shuffle=True, seed=0))
    _train_steps(model, in_memory[:3])  # warm-up
    mmap_rates, mem_rates = [], []
    for _ in range(repeats):  # interleaved, so drift hits both alike
        mem_rates.append(_train_steps(model, in_memory, max_steps=steps))
        mmap_rates.append(_train_steps(model, loader, max_steps=steps))
    mem, mm = float(np.median(mem_rates)), float(np.median(mmap_rates))
    # reading alone, the same batches: a noise-free view of how much of a step the store costs
    t0 = time.perf_counter()
    read = sum(len(b) for b in make_loader(store, idx, 64, shuffle=True, seed=0))
    read_rate = read / (time.perf_counter() - t0)
    return {
        "in_memory_posts_per_s": mem,
        "store_posts_per_s": mm,
        "ratio": mm / mem,
        "store_read_only_posts_per_s": read_rate,
        "read_share_of_step": mm / read_rate,
    }


def _rss_child(store_path: str) -> None:
    """One full training epoch over the store; prints peak RSS in MiB."""
    torch.set_num_threads(2)
    store = FeatureStore(store_path)
    cfg = load_config(None, ["model.dim=32", "model.sim_layers=1", "model.num_heads=2"])
    model = build_model(cfg.model, store.dims, len(store.labels))
    loader = make_loader(store, store.indices(), 256, shuffle=True, seed=0)
    posts = _train_steps(model, loader)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mib": peak_kib / 1024, "posts_per_s": posts}))


def memory(root: Path, sizes: list[int]) -> dict:
    out = {}
    for n in sizes:
        path = root / f"rss-{n}"
        t0 = time.perf_counter()
        make_random_store(
            path, n, dims=VIT_B32_DIMS, max_text_tokens=32, num_classes=8, shard_size=1024
        )
        gen = time.perf_counter() - t0
        res = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        out[n] = json.loads(res.stdout.strip().splitlines()[-1]) | {"generate_s": gen}
        shutil.rmtree(path)
        print(f"  {n} posts: peak RSS {out[n]['peak_rss_mib']:.0f} MiB", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rss-child")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child)
        return
    root = Path(args.workdir or tempfile.mkdtemp(prefix="semloc-bench-"))
    try:
        n_tp, sizes = (512, [1000, 5000]) if args.quick else (2048, [10_000, 50_000])
        steps = 4 if args.quick else 12
        print(
            f"throughput: SG-MFT (dim 256, ViT-B/32 widths), {steps} steps of 64 posts x 3 rounds",
            flush=True,
        )
        tp = throughput(root / "tp", n_tp, repeats=3, steps=steps)
        print(
            f"  in-memory {tp['in_memory_posts_per_s']:.0f} posts/s, "
            f"memory-mapped store {tp['store_posts_per_s']:.0f} posts/s, "
            f"ratio {tp['ratio']:.2f} (target >= 0.9)",
            flush=True,
        )
        print(f"memory: one training epoch over stores of {sizes} posts", flush=True)
        mem = memory(root, sizes)
        ratio = mem[sizes[1]]["peak_rss_mib"] / mem[sizes[0]]["peak_rss_mib"]
        print(f"  peak RSS ratio {sizes[1]}/{sizes[0]} = {ratio:.2f} (target <= 1.3)")
        print(json.dumps({"throughput": tp, "memory": mem, "rss_ratio": ratio}, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
