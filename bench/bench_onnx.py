"""Prediction throughput on onnxruntime vs PyTorch (CPU), measured in the same run.

    python bench/bench_onnx.py [--batch 32] [--rounds 5] [--seconds 3] [--threads 0]
                               [--skip-tower]

Two models, each exported with `semloc.export` (which checks the ONNX graph against PyTorch
before keeping it) and run on the same inputs by both runtimes, alternating for --rounds rounds
of about --seconds each (medians shown), so machine drift hits both alike:

- the fusion model: SG-MFT (default size, random weights) at ViT-B/32 feature widths (text 512,
  vision 768, embed 512), batches of --batch posts with 32 text tokens and 50 image tokens;
- the vision tower of a ViT-B/32-sized CLIP (random weights: 12 layers, width 768, 224 px images
  in 32 px patches), batches of --batch images: the dominant cost of serving a post with an image.

Reports posts/s (images/s) for each runtime and the ratio onnxruntime / PyTorch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from semloc.config import ModelConfig
from semloc.export import VisionTower, example_features, export_model, export_vision_tower
from semloc.models import build_model
from semloc.onnx_runtime import FEATURE_INPUTS, OnnxGraph

B32 = {"text_width": 512, "vision_width": 768, "embed_dim": 512}


def rate(fn: Callable[[], object], items: int, seconds: float) -> float:
    fn()  # warm
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n * items / elapsed


def compare(name: str, torch_fn, onnx_fn, items: int, args: argparse.Namespace) -> None:
    a, b = [], []
    for _ in range(args.rounds):
        a.append(rate(torch_fn, items, args.seconds))
        b.append(rate(onnx_fn, items, args.seconds))
    pa, pb = statistics.median(a), statistics.median(b)
    print(
        f"{name}: PyTorch {pa:8.1f}/s   onnxruntime {pb:8.1f}/s   ratio onnxruntime/PyTorch "
        f"{pb / pa:.2f}x   (batch {items}, median of {args.rounds})"
    )


def fusion(args: argparse.Namespace, work: Path) -> None:
    torch.manual_seed(0)
    from semloc.features.batch import FeatureDims

    model = build_model(ModelConfig(), FeatureDims(**B32), 8).eval()
    export_model(model, B32, work / "model.onnx")
    spec = {
        "inputs": [
            {"name": n, "dtype": "bool" if n in ("text_mask", "image_present") else "float32"}
            for n in FEATURE_INPUTS
        ],
        "outputs": [{"name": n} for n in ("logits", "similarity", "gate", "modality_weights")],
    }
    graph = OnnxGraph(work / "model.onnx", spec, threads=args.threads)
    batch = example_features(B32, args.batch, 32, 50, seed=1)
    arrays = {n: getattr(batch, n).numpy() for n in FEATURE_INPUTS}

    def run_torch() -> object:
        with torch.inference_mode():
            return model(batch)

    compare(
        "SG-MFT fusion model (posts)", run_torch, lambda: graph.run_arrays(arrays), args.batch, args
    )


def vision(args: argparse.Namespace, work: Path) -> None:
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 1,
                     "num_attention_heads": 8, "vocab_size": 1000},
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
        projection_dim=512,
    )  # fmt: skip
    torch.manual_seed(0)
    clip = CLIPModel(config).eval()
    export_vision_tower(clip, 224, work / "vision.onnx")
    spec = {
        "inputs": [{"name": "pixel_values", "dtype": "float32"}],
        "outputs": [{"name": "image_tokens"}, {"name": "image_embed"}],
    }
    graph = OnnxGraph(work / "vision.onnx", spec, threads=args.threads)
    pixels = torch.randn(args.batch, 3, 224, 224)
    tower = VisionTower(clip)
    arrays = {"pixel_values": pixels.numpy()}

    def run_torch() -> object:
        with torch.inference_mode():
            return tower(pixels)

    compare(
        "ViT-B/32 vision tower (images)",
        run_torch,
        lambda: graph.run_arrays(arrays),
        args.batch,
        args,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--threads", type=int, default=0, help="both runtimes' threads (0 = default)"
    )
    parser.add_argument("--skip-tower", action="store_true")
    args = parser.parse_args()
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        print(f"skipped: {e.name} is not installed (pip install 'semloc[export]')")
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        fusion(args, Path(tmp))
        if not args.skip_tower:
            vision(args, Path(tmp))
    print(f"load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
