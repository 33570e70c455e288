"""semloc extract POSTS --backbone DIR_OR_HUB_ID --out STORE

Caches frozen CLIP features of every post into a feature store. Resumable: run the same command
again after an interruption; a finished store is left as it is.
"""

from __future__ import annotations

import argparse

from semloc.errors import SemlocError

HELP = "cache frozen CLIP features of posts into a feature store (resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from semloc.cli import add_config_arguments

    parser.add_argument(
        "posts",
        nargs="?",
        help="posts file (.csv, .jsonl or .parquet); with --engine ray also a directory or glob",
    )
    parser.add_argument(
        "--backbone",
        metavar="DIR_OR_HUB_ID",
        help="CLIP directory (save_pretrained format) or hub id; default: extract.backbone",
    )
    parser.add_argument("--out", metavar="STORE", help="feature store directory (required)")
    parser.add_argument(
        "--verify",
        metavar="STORE",
        help="instead of extracting: check a finished store's files against the checksums "
        "recorded when each shard was committed (exit 2 naming every damaged file)",
    )
    parser.add_argument(
        "--allow-network",
        action="store_true",
        help="allow downloading the backbone from the Hugging Face hub (off: local files only)",
    )
    parser.add_argument(
        "--image-policy",
        choices=("text-only", "skip", "fail"),
        help="what a missing or unusable image does (default: extract.image_policy, text-only)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        help="local: this process; ray: Ray Data at extract.ray_address, or a local Ray "
        "instance (default: extract.engine)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from semloc.clip.extract import REPORT_FILE, extract_to_store
    from semloc.config import load_config

    if args.verify:
        from semloc.features.store import verify_store

        if args.posts or args.out:
            raise SemlocError("--verify STORE takes no posts file and no --out")
        report = verify_store(args.verify)
        print(
            f"{args.verify}: ok - {report['posts']} posts in {report['shards']} shard(s), "
            f"{report['files']} file(s) match their checksums"
            + (
                f"; {report['unchecked']} shard(s) predate checksums (only shapes and sizes "
                "were checked)"
                if report["unchecked"]
                else ""
            )
        )
        return 0
    if not args.posts or not args.out:
        raise SemlocError("extract needs a posts file and --out STORE (or --verify STORE)")
    cfg = load_config(args.config, args.overrides)
    ex = cfg.extract
    if args.backbone:
        ex.backbone = args.backbone
    if args.allow_network:
        ex.allow_network = True
    if args.image_policy:
        ex.image_policy = args.image_policy
    if not ex.backbone:
        raise SemlocError("no backbone given: pass --backbone DIR_OR_HUB_ID")
    if args.engine:
        ex.engine = args.engine
    if ex.engine == "ray":
        from semloc.scale.ray_extract import run_ray_extraction

        result = run_ray_extraction(args.posts, args.out, ex, data_cfg=cfg.data)
    else:
        result = extract_to_store(args.posts, args.out, ex, data_cfg=cfg.data)
    m = result.manifest
    info = m.get("extraction", {})
    if result.already_complete:
        print(f"{result.store} is already complete ({m['num_posts']} posts); nothing to do")
        return 0
    images = info.get("images", {})
    problems = {k: v for k, v in images.items() if v and k not in ("present", "no_image")}
    print(
        f"wrote {m['num_posts']} posts in {len(m['shards'])} shard(s) to {result.store} "
        f"({result.shards_written} shard(s) this run)"
    )
    print(
        f"images: {images.get('present', 0)} used, {images.get('no_image', 0)} posts without one"
        + (
            f", {sum(problems.values())} unusable ("
            + ", ".join(f"{k}: {v}" for k, v in problems.items())
            + f"; policy {info.get('image_policy')}: {info.get('num_text_only', 0)} kept "
            f"text-only, {info.get('num_skipped', 0)} skipped) - see {result.store / REPORT_FILE}"
            if problems
            else ""
        )
    )
    for warning in info.get("records", {}).get("warnings", []):
        print(f"warning: {warning}")
    if info.get("truncated_texts"):
        print(
            f"{info['truncated_texts']} text(s) longer than {info.get('max_text_tokens')} tokens "
            "were truncated"
        )
    return 0
