"""semloc predict RUN INPUT -o predictions.csv

INPUT is a feature store directory, or a posts file (CSV/JSONL/Parquet) whose features are
extracted on the fly with the CLIP backbone recorded in the run's checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semloc.errors import SemlocError

HELP = "predict the semantic location of posts (a feature store or a posts file)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory or checkpoint file")
    parser.add_argument(
        "input", help="feature store directory, or posts file (.csv/.jsonl/.parquet)"
    )
    parser.add_argument(
        "-o", "--output", required=True, help="predictions file to write (.csv, .jsonl or .parquet)"
    )
    parser.add_argument("--split", default="all", help="only posts of this split (store input)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="posts per model call, on either engine (CLIP batches: extract.batch_size)",
    )
    parser.add_argument(
        "--device",
        help="where CLIP and the model run, on either engine (Ray: each actor's device): auto "
        "(a GPU when present), cpu, cuda, cuda:N (default: extract.device)",
    )
    parser.add_argument(
        "--backbone",
        metavar="DIR_OR_HUB_ID",
        help="posts input: the run's CLIP if it moved (must be the same weights)",
    )
    parser.add_argument(
        "--image-policy",
        choices=("text-only", "skip", "fail"),
        help="posts input: what an unusable image does (default: extract.image_policy)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        help="posts input: local (this process) or ray (Ray Data at extract.ray_address, "
        "posts file, directory or glob; default: extract.engine)",
    )
    from semloc.cli import add_config_arguments

    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from semloc.config import load_config
    from semloc.prediction import write_predictions
    from semloc.runs import load_run

    cfg = load_config(args.config, args.overrides)
    if args.image_policy:
        cfg.extract.image_policy = args.image_policy
    src = Path(args.input)
    device = args.device or cfg.extract.device
    if (args.engine or cfg.extract.engine) == "ray" and not (src / "manifest.json").is_file():
        from semloc.scale.ray_extract import run_ray_prediction

        counts = run_ray_prediction(
            args.run,
            args.input,
            args.output,
            cfg.extract,
            backbone_override=args.backbone,
            data_cfg=cfg.data,
            batch_size=args.batch_size,
            device=device,
        )
        print("posts: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        print(f"predictions written to {args.output}")
        return 0
    from semloc.config import resolve_device

    device = resolve_device(device, "--device")
    loaded = load_run(args.run, device)
    if src.is_dir():
        from semloc.features.store import FeatureStore
        from semloc.prediction import predict_store, store_prediction_columns

        store = FeatureStore(src)
        idx = store.indices(None if args.split == "all" else args.split)
        if idx.size == 0:
            raise SemlocError(f"{src} has no posts in split {args.split!r}")
        preds = predict_store(
            loaded, store, idx, batch_size=args.batch_size, device=device, progress=True
        )
        write_predictions(args.output, store_prediction_columns(loaded, store, preds))
    elif src.is_file():
        from semloc.prediction import predict_posts

        result = predict_posts(
            loaded,
            src,
            extract_cfg=cfg.extract,
            data_cfg=cfg.data,
            backbone_override=args.backbone,
            batch_size=args.batch_size,
            device=device,
            progress=cfg.extract.progress,
        )
        write_predictions(args.output, result.columns())
        print("posts: " + ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items())))
    else:
        raise SemlocError(f"{src} does not exist")
    print(f"predictions written to {args.output}")
    return 0
