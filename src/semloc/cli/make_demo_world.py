"""`semloc make-demo-world --out DIR`: generate the offline demo world (pictures, posts, captions).

Settings come from the defaults of `semloc.demo.world.WorldConfig`, then ``--config FILE``
(a YAML/JSON mapping of its fields, optionally under a ``world:`` key), then ``key=value``
overrides (``world.key=value`` works too), then the explicit flags below.
"""

from __future__ import annotations

import argparse
import time
import typing

from semloc.errors import SemlocError

if typing.TYPE_CHECKING:  # the world module pulls in PIL and numpy: imported only when run
    from semloc.demo.world import WorldConfig

HELP = "generate the demo world: rendered scene pictures, post texts and picture captions"

# flag -> WorldConfig field; flags are the knobs people turn most, the rest go through overrides
_FLAGS: dict[str, str] = {
    "posts": "num_posts",
    "seed": "seed",
    "image_size": "image_size",
    "no_image_rate": "no_image_rate",
    "unrelated_image_rate": "unrelated_image_rate",
    "uninformative_text_rate": "uninformative_text_rate",
    "typo_rate": "typo_rate",
    "text_dominant": "text_dominant_classes",
    "image_dominant": "image_dominant_classes",
}


def _class_list(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    parser.add_argument("--posts", type=int, metavar="N", help="number of posts (default 4000)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--image-size", type=int, metavar="PX", help="picture side, >= 96")
    parser.add_argument("--no-image-rate", type=float, metavar="F", help="posts without a picture")
    parser.add_argument(
        "--unrelated-image-rate",
        type=float,
        metavar="F",
        help="posts with a picture whose picture is unrelated (selfie, pet, meme, other place)",
    )
    parser.add_argument(
        "--uninformative-text-rate",
        type=float,
        metavar="F",
        help="posts whose text says nothing about the place",
    )
    parser.add_argument("--typo-rate", type=float, metavar="F", help="per-word typo chance")
    parser.add_argument(
        "--text-dominant",
        type=_class_list,
        metavar="A,B",
        help="classes mostly revealed by text (their pictures are usually generic); '' for none",
    )
    parser.add_argument(
        "--image-dominant",
        type=_class_list,
        metavar="A,B",
        help="classes mostly revealed by the picture (their texts are usually vague); '' for none",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="render processes (default: automatic)"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite a world made with a different config"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--config", metavar="FILE", help="YAML/JSON mapping of WorldConfig fields (or under world:)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="WorldConfig overrides, e.g. dominance=0.6 text_confusion=0.3",
    )


def world_settings(items: typing.Sequence[str]) -> dict[str, typing.Any]:
    """``KEY=VALUE`` / ``world.KEY=VALUE`` items, read by the config module's override parser."""
    from semloc.config import parse_override

    out: dict[str, typing.Any] = {}
    for item in items:
        if "=" not in item:
            raise SemlocError(f"world setting {item!r}: expected KEY=VALUE, e.g. dominance=0.5")
        path, value = parse_override(item)
        if path[0] == "world":
            path = path[1:]
        if len(path) != 1:
            raise SemlocError(f"{item!r}: demo-world settings are flat (world.KEY=VALUE)")
        out[path[0]] = value
    return out


def build_config(args: argparse.Namespace) -> WorldConfig:
    """Defaults, then --config (a mapping of WorldConfig fields, optionally under `world:`),
    then overrides, then the flags; typed and checked like every config (unknown keys named)."""
    from semloc.config import read_config_file
    from semloc.demo.world import config_from_dict, validate_config

    data: dict[str, typing.Any] = {}
    if args.config:
        file_data = read_config_file(args.config)
        if "world" in file_data and isinstance(file_data["world"], dict):
            file_data = file_data["world"]
        data.update(file_data)
    data.update(world_settings(args.overrides or []))
    for flag, name in _FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            data[name] = value
    cfg = config_from_dict(data)
    validate_config(cfg)
    return cfg


def run(args: argparse.Namespace) -> int:
    from semloc.demo.world import make_world

    cfg = build_config(args)
    if args.workers is not None and args.workers < 1:
        raise SemlocError("--workers must be >= 1")
    start = time.perf_counter()
    info = make_world(
        args.out, cfg, progress=not args.no_progress, force=args.force, workers=args.workers
    )
    counts = info["counts"]
    real = counts["realised"]
    print(
        f"demo world in {args.out}: {counts['posts']} posts, {counts['images']} pictures, "
        f"{counts['distinct_words']} distinct words "
        f"({time.perf_counter() - start:.1f}s)\n"
        f"  no picture {real['no_image_rate']:.1%}, unrelated picture "
        f"{real['unrelated_image_rate']:.1%} (of posts with one), uninformative text "
        f"{real['uninformative_text_rate']:.1%}\n"
        f"  splits: " + ", ".join(f"{k} {v}" for k, v in counts["by_split"].items())
    )
    return 0
