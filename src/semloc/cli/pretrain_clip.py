"""semloc pretrain-clip PAIRS --out DIR [--init CLIP_DIR]

Contrastive (continued) pretraining of a CLIP on image–caption pairs (CSV or JSONL with `image`
and `caption`, optional `split`). From scratch by default (a small CLIP with its own tokenizer),
or continuing from a Hugging Face CLIP directory with --init (domain adaptation). Writes a
complete CLIP directory that `semloc extract --backbone DIR` loads like any other.

Settings: `pretrain.KEY=VALUE` (see `semloc.clip.pretrain.PretrainConfig`) and, from scratch,
`scratch.KEY=VALUE` (`ScratchClipConfig`), or the same sections in a --config file.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from semloc.clip.pretrain import PretrainConfig, ScratchClipConfig

HELP = "contrastively (pre)train a CLIP on image-caption pairs; saves a Hugging Face CLIP directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from semloc.cli import add_config_arguments

    parser.add_argument(
        "pairs", help="image-caption pairs (.csv or .jsonl: image, caption[, split])"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="CLIP directory to write")
    parser.add_argument(
        "--init",
        metavar="CLIP_DIR",
        help="continue from this Hugging Face CLIP directory (default: a small CLIP from scratch)",
    )
    parser.add_argument("--epochs", type=int, help="shortcut for pretrain.epochs=...")
    parser.add_argument("--seed", type=int, help="shortcut for pretrain.seed=...")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_config_arguments(parser)


@dataclass
class Settings:
    """The config tree of this verb: `pretrain.lr=1e-4`, `scratch.layers=6`."""

    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    scratch: ScratchClipConfig = field(default_factory=ScratchClipConfig)


def load_settings(
    config_file: str | None, overrides: list[str]
) -> tuple[PretrainConfig, ScratchClipConfig]:
    """Defaults, then the config file, then dotted overrides; unknown keys are errors."""
    from semloc.config import load_tree

    settings = load_tree(Settings(), config_file, overrides)
    return settings.pretrain, settings.scratch


def run(args: argparse.Namespace) -> int:
    from semloc.clip.pretrain import METRICS_FILE, iter_lines, pretrain_clip

    cfg, scratch = load_settings(args.config, args.overrides)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.seed is not None:
        cfg.seed = args.seed
    result = pretrain_clip(
        args.pairs, args.out, cfg, scratch=scratch, init=args.init, overwrite=args.overwrite
    )
    for line in iter_lines(result.metrics):
        print(line)
    print(f"saved {result.out_dir} (metrics in {result.out_dir / METRICS_FILE})")
    print(f"use it: semloc extract POSTS --backbone {result.out_dir} --out FEATURES")
    return 0
