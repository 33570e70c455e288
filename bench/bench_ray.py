"""Extraction on Ray Data (local instance, an actor pool) vs the single-process path.

    python bench/bench_ray.py [--posts 384] [--actors 2] [--batch-size 32] [--shard-size 64]
                              [--rounds 2] [--size small|b32] [--ray-decode both|actors|tasks]
                              [--small-posts N]

Same run, same inputs, same CLIP (random weights, fp32; `small`: ViT-B/32's layout at reduced
width and depth, `b32`: ViT-B/32's compute, where the towers rather than decoding are the work), both engines in interleaved rounds with the best of each figure kept, so
load from other jobs on a shared machine hits both alike. Per engine:

  * end to end: posts/s of one cold command, everything a user waits for included (single
    process: loading the CLIP; Ray: `ray.init`, the first tasks' imports, starting the actors, each
    loading its CLIP); then the same in a running Ray session (actors still start per run);
  * CPU cost: CPU seconds per post over this process and all its descendants (decoding workers,
    Ray's actors, tasks and daemons), read from /proc: overall, and split into a per-post part
    (each engine extracts a few posts, `--small-posts`, and then all of them; the extra CPU over
    the extra posts) and a fixed part. The wider the gap between the two, the less the run-to-run
    jitter of each CPU reading moves the per-post figure (half and all of 384 posts moved it by
    about +-10 ms/post between runs). On a machine shared with other jobs the wall-clock figures favour whichever
    engine runs more processes (it gets a larger share of the cores) and jitter with the other
    jobs; CPU seconds hardly depend on either.

Prints the Ray / single-process ratios (target >= 0.8), the Ray overhead per post, the per-worker
ratio (the towers alone on one thread, CPU seconds per post, over Ray's per-post CPU: each actor
runs the CLIP on one thread; target >= 0.85), each engine's per-post CPU split by process
(the driver, Ray's CLIP actors, its decoding tasks, idle workers, daemons), and checks that the
stores are identical. `--ray-decode both` (the default) runs the Ray engine twice, decoding in Ray
tasks (`extract.ray_decode=tasks`, what `auto` does) and inside the actors (`actors`), so the two
are compared in one run; the end-to-end (cold) figure is the first one's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import VIT_B32, build_clip, make_photo, make_texts, tower_inputs, tower_seconds
from proc_cpu import tree_cpu, tree_processes

# ViT-B/32's layout (224 px, 32 px patches, 50 tokens), narrower and shallower: a quick look
SMALL = dict(text_width=256, text_layers=4, text_heads=4, vision_width=384, vision_layers=6,
             vision_heads=6, embed_dim=256)  # fmt: skip
SIZES = {"small": SMALL, "b32": VIT_B32}


def write_posts(path: Path, texts: list[str], num_images: int) -> None:
    with open(path, "w") as f:
        for i, t in enumerate(texts):
            rec = {"id": f"p{i}", "text": t, "image": f"img/{i % num_images}.jpg", "split": "train"}
            f.write(json.dumps(rec) + "\n")


class CpuMeter:
    """CPU seconds used by this process and its descendants while it runs, from /proc, in all and
    by role (`proc_cpu.process_role`: the driver, Ray's daemons, its task workers, its actors); a
    thread samples every 50 ms so short-lived workers are counted too, and each sample's increase
    goes to the role the process has then (Ray retitles a worker for each task)."""

    def __init__(self) -> None:
        self.last = tree_cpu(os.getpid())
        self.by_role: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for key, (cpu, role) in tree_processes(os.getpid()).items():
            gained = cpu - self.last.get(key, 0.0)
            if gained > 0:
                self.by_role[role] = self.by_role.get(role, 0.0) + gained
                self.last[key] = cpu

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def seconds(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self.by_role.values())


def same_store(a: Path, b: Path) -> bool:
    for d in sorted((a / "shards").iterdir()):
        for f in sorted(d.iterdir()):
            other = b / "shards" / d.name / f.name
            if f.suffix == ".npy":
                if not np.array_equal(np.load(f), np.load(other)):
                    return False
            elif f.read_bytes() != other.read_bytes():
                return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--posts", type=int, default=384)
    ap.add_argument("--size", choices=sorted(SIZES), default="small",
                    help="the CLIP: small (default) or b32 (ViT-B/32's compute)")  # fmt: skip
    ap.add_argument("--actors", type=int, default=2, help="Ray actor pool size")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=2, help="decoding workers (single process)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; best time kept")
    ap.add_argument("--ray-decode", choices=["both", "actors", "tasks"], default="both",
                    help="where Ray decodes images (extract.ray_decode); both: each, compared")  # fmt: skip
    ap.add_argument("--small-posts", type=int, default=None,
                    help="posts of the small extraction the per-post CPU is taken against "
                         "(default: a sixth of --posts)")  # fmt: skip
    args = ap.parse_args()
    small = args.posts // 6 if args.small_posts is None else args.small_posts
    if not 0 < small < args.posts:
        ap.error(f"--small-posts {small} must be between 0 and --posts {args.posts}")

    import ray
    from transformers.utils import logging as hf_logging

    from semloc.clip.extract import extract_to_store
    from semloc.config import ExtractConfig
    from semloc.scale.ray_extract import ray_session, run_ray_extraction

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        rng = np.random.default_rng(0)
        texts = make_texts(args.posts, rng)
        clip = build_clip(work / "clip", texts, **SIZES[args.size])
        (work / "img").mkdir()
        sizes = [(640, 480), (1080, 1080), (480, 640), (1280, 720)]
        num_images = 64
        for i in range(num_images):
            make_photo(i, sizes[i % len(sizes)]).save(work / "img" / f"{i}.jpg", quality=88)
        write_posts(work / "small.jsonl", texts[:small], num_images)
        write_posts(work / "full.jsonl", texts, num_images)
        cfg = ExtractConfig(backbone=str(clip), batch_size=args.batch_size,
                            shard_size=args.shard_size, num_workers=args.num_workers,
                            progress=False, device="cpu")  # fmt: skip
        size = SIZES[args.size]
        print(f"{args.posts} posts, CLIP text {size['text_width']}x{size['text_layers']} / vision "
              f"{size['vision_width']}x{size['vision_layers']} @224px/32, fp32, "
              f"batch {args.batch_size}, shard {args.shard_size}; torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads in this process")  # fmt: skip

        modes = ["tasks", "actors"] if args.ray_decode == "both" else [args.ray_decode]
        engines = ["local"] + [f"ray-{m}" for m in modes]
        roles: dict[tuple[str, str], dict[str, float]] = {}  # CPU by role, the cheapest round

        def measure(engine: str, name: str) -> tuple[float, float]:
            """(wall seconds, CPU seconds) of one extraction into a fresh store."""
            out = work / f"{engine}-{name}"
            shutil.rmtree(out, ignore_errors=True)
            meter = CpuMeter()
            t0 = time.perf_counter()
            if engine == "local":
                extract_to_store(work / f"{name}.jsonl", out, cfg)
            else:
                ray_cfg = dataclasses.replace(cfg, ray_decode=engine.removeprefix("ray-"))
                run_ray_extraction(work / f"{name}.jsonl", out, ray_cfg, num_actors=args.actors)
            wall, cpu = time.perf_counter() - t0, meter.seconds()
            if cpu < sum(roles.get((engine, name), {"": float("inf")}).values()):
                roles[engine, name] = meter.by_role
            return wall, cpu

        n = args.posts
        # cold: what one command costs, start-up included (the Ray instance is new)
        cold_local = measure("local", "full")[0]
        t0 = time.perf_counter()
        # the workers' own log lines (weights loading bars) would bury the figures
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        ray_init = time.perf_counter() - t0
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        wall: dict[tuple[str, str], float] = {}
        cpu: dict[tuple[str, str], float] = {}
        with ray_session(""):  # reuses the instance started above
            cold_ray = ray_init + measure(engines[1], "full")[0]
            # warm: interleaved rounds in the running session, best of each kept
            for _ in range(args.rounds):
                for engine in engines:
                    for name in ("small", "full"):
                        w, c = measure(engine, name)
                        key = (engine, name)
                        wall[key] = min(wall.get(key, float("inf")), w)
                        cpu[key] = min(cpu.get(key, float("inf")), c)
        ray.shutdown()

        def figures(engine: str) -> dict[str, float]:
            marginal_cpu = (cpu[engine, "full"] - cpu[engine, "small"]) / (n - small)
            return {
                "e2e": n / wall[engine, "full"],
                "cpu_ms": cpu[engine, "full"] / n * 1e3,
                "marginal_cpu_ms": marginal_cpu * 1e3,
                "fixed_cpu": cpu[engine, "small"] - marginal_cpu * small,
            }

        lo = figures("local")
        print(f"single process: {n / cold_local:.1f} posts/s end to end ({cold_local:.1f} s), "
              f"{lo['e2e']:.1f} posts/s warm ({wall['local', 'full']:.1f} s); "
              f"CPU {lo['cpu_ms']:.0f} ms/post overall, "
              f"{lo['marginal_cpu_ms']:.0f} ms/post per post + {lo['fixed_cpu']:.1f} s fixed")  # fmt: skip
        for i, engine in enumerate(engines[1:]):
            ra = figures(engine)
            mode = engine.removeprefix("ray-")
            cold = (f"{n / cold_ray:.1f} posts/s end to end ({cold_ray:.1f} s, ray.init "
                    f"{ray_init:.1f} s), " if i == 0 else "")  # fmt: skip
            print(f"Ray, {args.actors} actors, decoding in {mode}: {cold}{ra['e2e']:.1f} posts/s "
                  f"in a running session ({wall[engine, 'full']:.1f} s, actor start-up included); "
                  f"CPU {ra['cpu_ms']:.0f} ms/post overall, "
                  f"{ra['marginal_cpu_ms']:.0f} ms/post per post + {ra['fixed_cpu']:.1f} s fixed "
                  "(actors' start-up, Ray's daemons)")  # fmt: skip
            e2e = (f"{(cold_ray - cold_local) / n * 1e3:+.0f} ms/post end to end, " if i == 0
                   else "")  # fmt: skip
            print(f"  overhead at {n} posts: {e2e}"
                  f"{(wall[engine, 'full'] - wall['local', 'full']) / n * 1e3:+.0f} ms/post in "
                  f"a running session, {ra['cpu_ms'] - lo['cpu_ms']:+.0f} CPU-ms/post")  # fmt: skip
            e2e = f"end to end {cold_local / cold_ray:.2f}, " if i == 0 else ""
            print(f"  ratio Ray / single process (target >= 0.8): {e2e}"
                  f"running session {ra['e2e'] / lo['e2e']:.2f}; posts per CPU-second overall "
                  f"{lo['cpu_ms'] / ra['cpu_ms']:.2f}, marginal "
                  f"{lo['marginal_cpu_ms'] / ra['marginal_cpu_ms']:.2f} (per-post part)")  # fmt: skip
        for engine in engines:
            full, part = roles[engine, "full"], roles[engine, "small"]
            split = sorted(
                ((role, (full.get(role, 0.0) - part.get(role, 0.0)) / (n - small) * 1e3)
                 for role in set(full) | set(part)),
                key=lambda r: -r[1],
            )  # fmt: skip
            print(f"  {engine} per-post CPU by process (cheapest rounds, ms/post): "
                  + ", ".join(f"{role} {ms:.1f}" for role, ms in split if abs(ms) >= 0.5))  # fmt: skip
        # per worker: each actor runs the CLIP on one torch thread, so its per-post CPU is set
        # against the towers alone on one thread (same batches, pre-tokenised and pre-decoded)
        from semloc.clip.backbone import load_backbone
        from semloc.clip.extract import torch_threads
        from semloc.data.records import read_posts

        backbone = load_backbone(clip, bf16=False)
        tokens, pixels = tower_inputs(backbone, read_posts(work / "full.jsonl").records, work, cfg)
        towers_cpu = float("inf")
        with torch_threads(1):
            for _ in range(args.rounds):
                c0 = time.process_time()
                tower_seconds(backbone, tokens, pixels)
                towers_cpu = min(towers_cpu, (time.process_time() - c0) / n)
        for engine in engines[1:]:
            ra = figures(engine)
            print(f"per worker, decoding in {engine.removeprefix('ray-')}: towers alone on one "
                  f"thread {towers_cpu * 1e3:.0f} CPU-ms/post; Ray's per-post part "
                  f"{ra['marginal_cpu_ms']:.0f} CPU-ms/post -> ratio "
                  f"{towers_cpu * 1e3 / ra['marginal_cpu_ms']:.2f} (target >= 0.85)")  # fmt: skip
            same = same_store(work / "local-full", work / f"{engine}-full")
            print(f"  store identical to the single process's: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
