"""Serving throughput and latency, micro-batching on vs off, measured in the same run.

    python bench/bench_serve.py [--size b32|small] [--clients 1 4 16] [--requests 96]
                                [--seconds 40] [--rounds 2] [--max-wait-ms 5] [--threads 0]

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
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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
    url: str, clients: int, requests: int, seconds: float, posts: list[tuple[str, bytes]]
) -> dict[str, Any]:
    """`clients` closed-loop clients; stops after `requests` answers or `seconds`."""
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

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - t0
        after = (await client.get("/health")).json()["batching"]
    calls = after["model_calls"] - before["model_calls"]
    lat = np.asarray(latencies) * 1000
    return {
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
                    runs[name].append(asyncio.run(load(url, c, args.requests, args.seconds, posts)))
            for name, rs in runs.items():
                med = {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
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
