"""What validating posts costs, and what hostile images cost, measured against baselines in the
same run (so machine load cancels out).

    python bench/bench_read_posts.py [--posts 100000]

  * `read_posts` on a JSONL file of N posts (every check: types, surrogates, duplicate keys and
    ids, splits) vs bare `json.loads` of every line — the floor any reader pays;
  * decoding + CLIP preprocessing a strip image (5000x1, 1x5000, 100000x1 PNG, a few hundred
    bytes each) vs a normal 640x480 photo: strips are refused on the header, so their cost is a
    small fraction of one photo's instead of seconds and gigabytes.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def best_of(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_records(n: int) -> None:
    from semloc.data.records import read_posts

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "posts.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "id": f"p{i}",
                        "text": f"post {i} with a few words, café ☕ #tag",
                        "image": f"img/{i}.jpg",
                        "label": "abc"[i % 3],
                    }
                )
                + "\n"
                for i in range(n)
            )
        )
        bare = best_of(lambda: [json.loads(line) for line in path.read_text().splitlines()])
        full = best_of(lambda: read_posts(path))
    print(
        f"read_posts: {n / full:,.0f} posts/s ({full:.2f} s for {n:,}); bare json.loads "
        f"{n / bare:,.0f} lines/s; ratio {full / bare:.1f}x the parse alone"
    )


def bench_images() -> None:
    from semloc.clip.backbone import ImagePreprocessing
    from semloc.clip.images import ImageProblem, load_image_bytes

    prep = ImagePreprocessing(
        True, {"shortest_edge": 224}, 3, True, {"height": 224, "width": 224}, True, 1 / 255,
        True, (0.481, 0.458, 0.408), (0.269, 0.261, 0.276),
    )  # fmt: skip

    def png(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()

    rng = np.random.default_rng(0)
    photo = png(Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8)))

    def run(data: bytes) -> str:
        try:
            prep(load_image_bytes(data, max_pixels=40_000_000))
            return "used"
        except ImageProblem as e:
            return f"refused ({e.reason})"

    base = best_of(lambda: run(photo))
    print(f"640x480 photo: {base * 1000:.1f} ms decode + preprocess (the baseline)")
    for size in ((5000, 1), (1, 5000), (100_000, 1)):
        data = png(Image.new("L", size))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        outcome = run(data)
        t = best_of(lambda d=data: run(d))
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
        print(
            f"{size[0]}x{size[1]} PNG ({len(data)} bytes): {outcome}, {t * 1000:.2f} ms = "
            f"{t / base:.4f}x the photo, peak RSS +{grown:.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    args = parser.parse_args()
    bench_records(args.posts)
    bench_images()


if __name__ == "__main__":
    main()
