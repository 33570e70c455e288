"""Serving throughput and latency, micro-batching on vs off, measured in the same run.

    python bench/bench_serve.py [--size b32|small] [--clients 1 4 16] [--requests 96]
                                [--seconds 40] [--rounds 2] [--max-wait-ms 5] [--threads 0]
                                [--profile]

Builds a CLIP with random weights (the compute of a trained one; `--size b32` is ViT-B/32-sized:
12 layers per tower, widths 512 (text) / 768 (vision), 224 px images in 32 px patches, 77 text
tokens), extracts a few posts with it and trains a one-epoch SG-MFT (default size), then starts
two `semloc serve` processes on 127.0.0.1: one with serve.max_batch_size=32 (batching on), one
with serve.max_batch_size=1 (off). A load generator (httpx, asyncio) keeps 1, 4 and 16 clients
busy, each sending POST /predict (tweet-like text + a 640x480 JPEG) back to back, until
--requests answers or --seconds have passed, whichever comes first. The two servers are measured
one after the other at each client count (--rounds times, medians shown), and a lone client
alternates between them request by request, so machine drift hits both alike.

With --runtimes the two servers compared are instead `semloc serve` (PyTorch model) and
`semloc serve --runtime onnx` (the run exported with `semloc export RUN --format onnx`), both
batching on; the ratio printed is onnx / torch throughput. Both runtimes featurise the post with
the PyTorch CLIP: only the fusion model runs on onnxruntime.

With --profile, where a served request's time goes, at batching on and off (clients > 1):
  * CPU seconds per answered request of the load generator (this process) and of each server
    process tree (utime + stime from /proc before and after each measurement), and the cores
    the rest of the machine used meanwhile;
  * the server-side stages of a request, each timed alone in this process on the same posts with
    the same library functions and torch threads as the servers: multipart parsing, JPEG decode +
    resize, tokenisation, normalise + collate, text tower, vision tower, rounding + padding,
    fusion model, response validation + JSON; batched stages at the batch sizes the batcher
    formed (GET /health; the 3 carrying the most posts), weighted by the posts each carried,
    and what the server's measured CPU leaves over (HTTP, event loop, threads);
  * throughput on / off split into CPU per request (off / on) x cores the servers got (on / off);
  * the per-post cost of the two towers at batch 1, 8 and 16: the most batching can amortise.
Stage timings are steady at --threads 1; with more torch threads on a shared machine they swing
with the other jobs (the threads wait for each other), and their sum can exceed what the server
measured.

Targets: >= 2x throughput at 16 clients with batching on; a lone client's p50 latency within
1.3x of batching off.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc_cpu import tree_cpu

HOST = "127.0.0.1"  # the load generator never leaves the machine
WORDS = str.split(
    "coffee latte morning friends park sunny dog walk street food market neon night gym workout "
    "library study exams beach sunset waves museum art gallery train station commute rain "
    "umbrella pizza dinner rooftop view city lights office meeting deadline home sofa movie "
    "school class teacher lunch restaurant menu wine"
)
TAGS = ["#weekend", "#mondays", "#foodie", "#nofilter", "#citylife", "😍", "☕", "💪", "📚"]
SIZES = {
    # openai/clip-vit-base-patch32's compute (8 heads in both towers: same FLOPs as 12 in vision)
    "b32": dict(text_width=512, vision_width=768, embed_dim=512, layers=12, heads=8),
    # about a quarter of it, for a quick look
    "small": dict(text_width=256, vision_width=384, embed_dim=256, layers=6, heads=4),
}


def make_texts(n: int, rng: np.random.Generator) -> list[str]:
    out = []
    for _ in range(n):
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), int(rng.integers(6, 30)))]
        words += [TAGS[i] for i in rng.integers(0, len(TAGS), int(rng.integers(0, 3)))]
        out.append(" ".join(words))
    return out


def make_photo(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A photo-like JPEG (gradients, shapes, mild noise): decodes and compresses like a photo."""
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
    buf = io.BytesIO()
    img.filter(ImageFilter.GaussianBlur(1)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def build_run(work: Path, size: str, num_posts: int) -> Path:
    """CLIP (random weights) -> posts -> feature store -> one-epoch SG-MFT run."""
    import json

    from semloc.cli import main as semloc_main
    from semloc.clip.tiny import build_clip_from_scratch

    rng = np.random.default_rng(0)
    texts = make_texts(num_posts, rng)
    clip = build_clip_from_scratch(
        work / "clip", texts, vocab_size=4000, image_size=224, patch_size=32, max_text_tokens=77,
        **SIZES[size],
    )  # fmt: skip
    (work / "img").mkdir()
    labels = ["home", "office", "school", "restaurant", "park", "gym"]
    with open(work / "posts.jsonl", "w") as f:
        for i, t in enumerate(texts):
            (work / "img" / f"{i}.jpg").write_bytes(make_photo(i))
            f.write(
                json.dumps(
                    {"id": f"p{i}", "text": t, "image": f"img/{i}.jpg", "label": labels[i % 6]}
                )
                + "\n"
            )
    quiet = ["extract.progress=false", "train.progress=false"]
    args = [
        "extract",
        str(work / "posts.jsonl"),
        "--backbone",
        str(clip),
        "--out",
        str(work / "store"),
        *quiet,
    ]
    assert semloc_main(args) == 0
    args = ["train", str(work / "store"), "--out", str(work / "run"), "train.epochs=1", *quiet]
    assert semloc_main(args) == 0
    return work / "run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` and its live descendants (every thread), in seconds."""
    return sum(tree_cpu(pid).values())


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process) since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(servers: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of the load generator, each server tree and the machine."""
    snap = {"cpu_client": time.process_time(), "cpu_machine": machine_busy_seconds()}
    snap.update({f"cpu_{name}": tree_cpu_seconds(pid) for name, pid in servers.items()})
    return snap


def start_server(
    run: Path,
    max_batch_size: int,
    max_wait_ms: float,
    threads: int,
    log: Path,
    runtime: str = "torch",
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "semloc", "serve", str(run), "--host", HOST, "--port", str(port),
           "--runtime", runtime, f"serve.max_batch_size={max_batch_size}",
           f"serve.max_wait_ms={max_wait_ms}", f"serve.num_threads={threads}",
           "serve.device=cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, f"http://{HOST}:{port}"


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server at {url} not ready after {timeout} s")


async def load(
    url: str,
    clients: int,
    requests: int,
    seconds: float,
    posts: list[tuple[str, bytes]],
    meter: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """`clients` closed-loop clients; stops after `requests` answers or `seconds`. With `meter`
    (a CPU snapshot), the result also has its change over the measurement and the wall time."""
    import httpx

    latencies: list[float] = []
    errors = 0
    issued = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        before = (await client.get("/health")).json()["batching"]

        async def worker(k: int) -> None:
            nonlocal issued, errors
            while issued < requests and time.monotonic() < stop_at:
                text, image = posts[(issued + k) % len(posts)]
                issued += 1
                t0 = time.perf_counter()
                r = await client.post(
                    "/predict", data={"text": text}, files={"image": ("p.jpg", image, "image/jpeg")}
                )
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        cpu_before = meter() if meter else {}
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - t0
        cpu = {k: v - cpu_before[k] for k, v in meter().items()} if meter else {}
        after = (await client.get("/health")).json()["batching"]
    calls = after["model_calls"] - before["model_calls"]
    lat = np.asarray(latencies) * 1000
    sizes = {
        int(k): n - before["batch_sizes"].get(k, 0)
        for k, n in after["batch_sizes"].items()
        if n > before["batch_sizes"].get(k, 0)
    }
    return {
        **cpu,
        "wall": wall,
        "batches": sizes,  # model calls per batch size during the measurement
        "requests": len(latencies),
        "errors": errors,
        "throughput": len(latencies) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "mean_batch": (after["posts"] - before["posts"]) / calls if calls else float("nan"),
    }


async def load_paired(
    urls: dict[str, str], requests: int, seconds: float, posts: list[tuple[str, bytes]]
) -> dict[str, dict[str, Any]]:
    """One client, the same post sent to each server in turn (alternating which goes first)."""
    import httpx

    lat: dict[str, list[float]] = {name: [] for name in urls}
    errors = dict.fromkeys(urls, 0)
    stop_at = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=120) as client:
        for i in range(requests + 2):  # the first two rounds warm up
            if time.monotonic() > stop_at:
                break
            text, image = posts[i % len(posts)]
            order = list(urls) if i % 2 == 0 else list(urls)[::-1]
            for name in order:
                t0 = time.perf_counter()
                r = await client.post(urls[name] + "/predict", data={"text": text},
                                      files={"image": ("p.jpg", image, "image/jpeg")})  # fmt: skip
                if i >= 2:
                    lat[name].append(time.perf_counter() - t0)
                    errors[name] += r.status_code != 200
    out = {}
    for name, values in lat.items():
        ms = np.asarray(values) * 1000
        out[name] = {
            "requests": len(values),
            "errors": errors[name],
            "throughput": 1000 / ms.mean(),  # closed loop of one: 1 / mean latency
            "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "mean_batch": 1.0,
        }
    return out


def best_of(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """(wall s, CPU s of this process, result) of the fastest of `reps` calls of `fn`."""
    best: tuple[float, float, Any] | None = None
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or wall < best[0]:
            best = (wall, cpu, out)
    assert best is not None
    return best


PER_POST_STAGES = ("multipart parse + checks", "JPEG decode + resize", "response validate + JSON")
BATCHED_STAGES = ("tokenise", "normalise + collate", "text tower", "vision tower",
                  "rounding + padding", "fusion model")  # fmt: skip


def stage_profile(
    run_dir: Path, posts: list[tuple[str, bytes]], sizes: list[int], reps: int = 2
) -> dict[str, dict[int, tuple[float, float]]]:
    """stage -> batch size -> (wall ms, CPU ms) per post, each stage timed alone in this process
    with the servers' library calls on `posts` (per-post stages at batch size 1 only)."""
    import httpx
    from pydantic import TypeAdapter

    from semloc.clip.extract import PostLoader, PostOutcome, encode_batch, to_feature_batch
    from semloc.config import ServeConfig
    from semloc.outputs import model_outputs
    from semloc.prediction import load_run_backbone
    from semloc.runs import load_run
    from semloc.serve.parsing import decode_image, parse_single_post
    from semloc.serve.predictor import Predictor
    from semloc.serve.schema import Prediction

    cfg = ServeConfig(max_batch_size=max(sizes), device="cpu")
    run = load_run(run_dir, "cpu")
    backbone = load_run_backbone(run, "", "cpu")
    predictor = Predictor(run, backbone, cfg, "cpu")
    predictor.warm_up()
    prep = backbone.preprocessing
    answer = TypeAdapter(Prediction)
    out: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in PER_POST_STAGES}
    out.update({name: {} for name in BATCHED_STAGES})

    # per post: the body exactly as the load generator sends it
    bodies = []
    for text, image in posts:
        request = httpx.Request("POST", f"http://{HOST}/predict", data={"text": text},
                                files={"image": ("p.jpg", image, "image/jpeg")})  # fmt: skip
        bodies.append((request.read(), request.headers["content-type"], image))

    def per_post(fn: Callable[[Any], Any]) -> tuple[float, float, list[Any]]:
        wall, cpu, results = best_of(lambda: [fn(b) for b in bodies], reps)
        return wall * 1000 / len(bodies), cpu * 1000 / len(bodies), results

    parse = per_post(lambda b: parse_single_post(b[0], b[1], cfg, prep, False, "text-only"))
    decode = per_post(lambda b: decode_image(b[2], cfg, prep, "text-only", None))
    out["JPEG decode + resize"][1] = decode[:2]
    out["multipart parse + checks"][1] = (parse[0] - decode[0], parse[1] - decode[1])
    served = parse[2]
    first = predictor(served[:1])[0]
    wall, cpu, _ = best_of(lambda: [answer.dump_json(answer.validate_python(first))
                                    for _ in range(200)], reps)  # fmt: skip
    out["response validate + JSON"][1] = (wall * 1000 / 200, cpu * 1000 / 200)

    loader = PostLoader.for_backbone(backbone, cfg.max_image_pixels)
    outcomes = {i: PostOutcome(index=i, post_id=str(i), row=None, status="ok", image="<image>")
                for i in range(max(sizes))}  # fmt: skip
    for n in sizes:
        batch_posts = [served[i % len(served)] for i in range(n)]
        texts = [p.text for p in batch_posts]
        images = [p.image for p in batch_posts]
        loaded = loader.load_batch(range(n), texts, images)
        ids = [it.token_ids for it in loaded.items]
        encoded = encode_batch(backbone, loaded, "text-only", outcomes)
        features = to_feature_batch(encoded, backbone, predictor.dtype)
        timed = {
            "tokenise": lambda: loader.tokenizer.encode_batch(texts),  # noqa: B023
            "load": lambda: loader.load_batch(range(n), texts, images),  # noqa: B023
            "text tower": lambda: backbone.encode_token_ids(ids),  # noqa: B023
            "vision tower": lambda: backbone.encode_pixels(loaded.pixels),  # noqa: B023
            "rounding + padding": lambda: to_feature_batch(encoded, backbone, predictor.dtype),  # noqa: B023
            "fusion model": partial(
                model_outputs, run.model, [features], "cpu", temperature=run.temperature
            ),
        }
        for name, fn in timed.items():
            fn()  # warm up: a new shape can cost a first call far more
            wall, cpu, _ = best_of(fn, reps)
            out.setdefault(name, {})[n] = (wall * 1000 / n, cpu * 1000 / n)
        load, tok = out.pop("load")[n], out["tokenise"][n]
        out["normalise + collate"][n] = (load[0] - tok[0], load[1] - tok[1])
    return out


def profile_sizes(batches: dict[int, int], most: int = 3) -> dict[int, float]:
    """Batch size -> share of the posts it carried, for the `most` sizes carrying the most posts
    (shares renormalised over them: the profile times those)."""
    posts = sorted(((k * v, k) for k, v in batches.items()), reverse=True)[:most] or [(1, 1)]
    total = sum(p for p, _ in posts)
    return {k: p / total for p, k in sorted(posts, key=lambda pk: pk[1])}


def print_profile(
    results: dict[tuple[int, str], dict[str, Any]],
    names: list[str],
    clients: list[int],
    run_dir: Path,
    posts: list[tuple[str, bytes]],
    threads: int,
) -> None:
    """The CPU accounting of each measurement and the stage profile behind it."""
    from semloc.clip.extract import torch_threads

    c = max(clients)
    if c < 2:
        return
    print(f"\nprofile at {c} clients (CPU seconds from /proc; cores = CPU s / wall s):")
    print(f"{'server':>8} | {'req/s':>6} | {'client ms/req':>13} | {'server ms/req':>13} | "
          f"{'cores: client':>13} | {'server':>6} | {'rest of machine':>15}")  # fmt: skip
    shares = {}
    for name in names:
        r = results[(c, name)]
        n, wall = r["requests"], r["wall"]
        server = r[f"cpu_{name}"]
        others = r["cpu_machine"] - r["cpu_client"] - sum(r[f"cpu_{m}"] for m in names)
        print(f"{name:>8} | {r['throughput']:>6.2f} | {r['cpu_client'] * 1000 / n:>13.1f} | "
              f"{server * 1000 / n:>13.1f} | {r['cpu_client'] / wall:>13.2f} | "
              f"{server / wall:>6.2f} | {others / wall:>15.2f}")  # fmt: skip
        shares[name] = profile_sizes(r["batches"])
        print(f"         batch sizes formed (model calls): "
              f"{dict(sorted(r['batches'].items()))}; profiled: "
              + ", ".join(f"{k} ({f:.0%})" for k, f in shares[name].items()))  # fmt: skip
    sizes = sorted({1, 8, 16} | {k for sh in shares.values() for k in sh})
    t0 = time.perf_counter()
    with torch_threads(threads):  # the servers' serve.num_threads
        stages = stage_profile(run_dir, posts, sizes)
    print(f"\nserver-side stages per post, each timed alone in this process ({time.perf_counter() - t0:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f}); batched stages at the batch sizes each "
          "server formed (the 3 carrying the most posts), weighted by the posts they carried:")  # fmt: skip
    print(f"{'stage':>26} | " + " | ".join(f"{n + ' wall ms':>12} | {'CPU ms':>7}" for n in names))
    total = {name: [0.0, 0.0] for name in names}
    for stage, by_size in stages.items():
        cells = []
        for name in names:
            sh = {1: 1.0} if stage in PER_POST_STAGES else shares[name]
            w = sum(f * by_size[k][0] for k, f in sh.items())
            cpu = sum(f * by_size[k][1] for k, f in sh.items())
            total[name][0] += w
            total[name][1] += cpu
            cells.append(f"{w:>12.1f} | {cpu:>7.1f}")
        print(f"{stage:>26} | " + " | ".join(cells))
    print(f"{'sum of the stages':>26} | "
          + " | ".join(f"{total[n][0]:>12.1f} | {total[n][1]:>7.1f}" for n in names))  # fmt: skip
    cells = []
    for name in names:
        r = results[(c, name)]
        cells.append(f"{'':>12} | {r[f'cpu_{name}'] * 1000 / r['requests']:>7.1f}")
    print(f"{'server CPU measured':>26} | " + " | ".join(cells))
    cells = []
    for name in names:
        r = results[(c, name)]
        rest = r[f"cpu_{name}"] * 1000 / r["requests"] - total[name][1]
        cells.append(f"{'':>12} | {rest:>7.1f}")
    print(f"{'measured - stages (HTTP..)':>26} | " + " | ".join(cells))
    if len(names) == 2:
        # throughput = cores used / CPU seconds per request, so the ratio splits in two
        lo, hi = (results[(c, n)] for n in names)

        def per_request(r: dict[str, Any]) -> float:
            return (r["cpu_client"] + r[f"cpu_{names[0]}"] + r[f"cpu_{names[1]}"]) / r["requests"]

        def cores(r: dict[str, Any]) -> float:
            return (r["cpu_client"] + r[f"cpu_{names[0]}"] + r[f"cpu_{names[1]}"]) / r["wall"]

        print(f"\nthroughput {names[1]} / {names[0]} = {hi['throughput'] / lo['throughput']:.2f}x "
              f"= CPU per request (client + servers) {per_request(lo) * 1000:.0f} / "
              f"{per_request(hi) * 1000:.0f} ms ({per_request(lo) / per_request(hi):.2f}x) "
              f"x cores used {cores(hi):.2f} / {cores(lo):.2f} "
              f"({cores(hi) / cores(lo):.2f}x)")  # fmt: skip
    print("\nthe two towers (text + vision) per post, by batch size: the most batching amortises")
    base = stages["text tower"][1][0] + stages["vision tower"][1][0]
    for k in sorted({1, 8, 16}):
        w = stages["text tower"][k][0] + stages["vision tower"][k][0]
        cpu = stages["text tower"][k][1] + stages["vision tower"][k][1]
        print(f"  batch {k:>2}: {w:7.1f} ms wall, {cpu:7.1f} ms CPU per post "
              f"({base / w:.2f}x cheaper than batch 1)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", choices=sorted(SIZES), default="b32")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=96, help="answers per measurement (at most)")
    ap.add_argument("--seconds", type=float, default=40, help="time per measurement (at most)")
    ap.add_argument(
        "--rounds", type=int, default=2, help="repeat each measurement; the median is shown"
    )
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="serve.num_threads of both servers (0: torch's default)",
    )
    ap.add_argument("--posts", type=int, default=48, help="posts to extract and train on")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="CPU per request of the load generator and each server, and the server's stages",
    )
    ap.add_argument(
        "--runtimes",
        action="store_true",
        help="compare the torch and onnx runtimes (both batching on) instead of batching on/off",
    )
    args = ap.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        run = build_run(work, args.size, args.posts)
        print(f"built CLIP ({args.size}) + run in {time.perf_counter() - t0:.0f} s; "
              f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
        if args.runtimes:
            from semloc.cli import main as semloc_main

            assert semloc_main(["export", str(run), "--format", "onnx"]) == 0
            # (name, serve.max_batch_size, runtime)
            variants = (("torch", 32, "torch"), ("onnx", 32, "onnx"))
        else:
            variants = (("off", 1, "torch"), ("on", 32, "torch"))
        names = [v[0] for v in variants]
        servers = {}
        for name, mbs, runtime in variants:
            log = work / f"server-{name}.log"
            proc, url = start_server(run, mbs, args.max_wait_ms, args.threads, log, runtime)
            procs.append(proc)
            servers[name] = (proc, url, log)
        for proc, url, log in servers.values():
            wait_ready(proc, url, log)
        pids = {name: proc.pid for name, (proc, _, _) in servers.items()}
        meter = (lambda: cpu_snapshot(pids)) if args.profile else None
        rng = np.random.default_rng(1)
        posts = [(t, make_photo(1000 + i)) for i, t in enumerate(make_texts(32, rng))]
        results: dict[tuple[int, str], dict[str, Any]] = {}
        for c in args.clients:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for _ in range(args.rounds):
                if c == 1:
                    # a lone client alternates between the servers request by request, so a
                    # busy machine slows both alike (the latency ratio is what is compared)
                    urls = {name: servers[name][1] for name in names}
                    n = max(16, args.requests // 2)
                    for name, r in asyncio.run(load_paired(urls, n, args.seconds, posts)).items():
                        runs[name].append(r)
                    continue
                for name in names:
                    url = servers[name][1]
                    asyncio.run(load(url, c, max(4, c), 30, posts))  # warm up (connections, caches)
                    runs[name].append(
                        asyncio.run(load(url, c, args.requests, args.seconds, posts, meter))
                    )
            for name, rs in runs.items():
                med: dict[str, Any] = {
                    k: float(np.median([r[k] for r in rs])) for k in rs[0] if k != "batches"
                }
                med["batches"] = {}  # summed over the rounds
                for r in rs:
                    for size, calls in r.get("batches", {}).items():
                        med["batches"][size] = med["batches"].get(size, 0) + calls
                results[(c, name)] = med
                print(
                    f"  {c:>2} clients, {name:>5}: {med['throughput']:.2f} req/s",
                    flush=True,
                )

        print()
        threads = args.threads or torch.get_num_threads()
        compared = (
            "torch = semloc serve, onnx = semloc serve --runtime onnx (model on onnxruntime, "
            "CLIP featurisation on PyTorch in both), both max_batch_size 32"
            if args.runtimes
            else "batching on = max_batch_size 32, off = max_batch_size 1"
        )
        print(f"CLIP {args.size}, SG-MFT (model.dim=256), POST /predict with a 640x480 JPEG, "
              f"{threads} torch thread(s) per server; {compared}, "
              f"max_wait_ms {args.max_wait_ms:g}; "
              f"load average {os.getloadavg()[0]:.1f} at the end")  # fmt: skip
        print(
            f"{'clients':>7} | {'server':>8} | {'requests':>8} | {'req/s':>7} | {'p50 ms':>8} | {'p99 ms':>8} | {'mean batch':>10}"
        )
        print("-" * 75)
        for c in args.clients:
            for name in names:
                r = results[(c, name)]
                print(f"{c:>7} | {name:>8} | {r['requests']:>8.0f} | {r['throughput']:>7.2f} | "
                      f"{r['p50']:>8.1f} | {r['p99']:>8.1f} | {r['mean_batch']:>10.2f}"
                      + (f"  ({r['errors']:.0f} errors)" if r["errors"] else ""))  # fmt: skip
        print()
        hi, lo = max(args.clients), min(args.clients)
        if args.runtimes:
            for c in args.clients:
                ratio = results[(c, "onnx")]["throughput"] / results[(c, "torch")]["throughput"]
                print(f"throughput at {c} clients, onnx / torch: {ratio:.2f}x")
            return
        gain = results[(hi, "on")]["throughput"] / results[(hi, "off")]["throughput"]
        lone = results[(lo, "on")]["p50"] / results[(lo, "off")]["p50"]
        print(f"throughput at {hi} clients, on / off: {gain:.2f}x (target >= 2x)")
        print(f"p50 latency at {lo} client(s), on / off: {lone:.2f}x (target <= 1.3x)")
        if args.profile:
            print_profile(results, names, args.clients, run, posts, threads)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
