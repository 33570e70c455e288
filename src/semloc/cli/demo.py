"""semloc demo [--workdir DIR] [--quick] [--posts N] [--seeds K] [noise knobs]

Runs the whole pipeline offline on a generated world: world -> demo CLIP (pretrained here, on the
world's captions) -> CLIP features -> SG-MFT and baselines -> test metrics, a results table and a
report (DIR/report.md and report.html). Every stage is cached in the work directory. Dotted
overrides (`train.epochs=10`, `model.dim=128`) apply to every trained model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semloc.errors import SemlocError

HELP = "run the whole pipeline offline on a generated demo world and write a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from semloc.cli import add_config_arguments
    from semloc.demo import CLIP_DATA, DEFAULT_CLIP_DATA

    parser.add_argument(
        "--workdir",
        default="demo-out",
        metavar="DIR",
        help="where the world, the demo CLIP, features, runs and the report go (default: demo-out)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
    parser.add_argument("--posts", type=int, help="posts in the world (default 4000)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="training seeds per model (report: mean ± std)"
    )
    parser.add_argument(
        "--models",
        help="comma-separated trained models (default: sgmft, cross_transformer, gmu, "
        "concat_mlp, text_mlp, image_mlp)",
    )
    parser.add_argument(
        "--backbone",
        metavar="CLIP_DIR",
        help="use this CLIP directory instead of building the demo CLIP (e.g. the demo CLIP of "
        "another run, to compare worlds with the same features extractor)",
    )
    parser.add_argument(
        "--clip-data",
        choices=CLIP_DATA,
        default=DEFAULT_CLIP_DATA,
        help="what the demo CLIP learns from: the captions plus as many (picture, text) pairs "
        "from the posts of another world of the same settings, so it never sees the demo's own "
        "posts, as a real CLIP never saw yours (captions+web, the default); the captions plus "
        "the training posts' own pairs (captions+posts: it memorises them, docs/model.md); or "
        "the captions alone",
    )
    parser.add_argument(
        "--clip-web-posts",
        type=int,
        metavar="N",
        help="posts in the second world captions+web learns from, every one with a picture and "
        "a text a training pair (0: a world the demo's size, as many pairs as the demo has "
        "training posts, the rule before 2026-12-06; default 16000; docs/demo.md)",
    )
    parser.add_argument(
        "--clip-web-captions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="captions+web also learns every web picture with its caption, the alt text real "
        "web pairs come with (default: on, off with --quick; docs/demo.md)",
    )
    parser.add_argument(
        "--clip-layers",
        type=int,
        metavar="N",
        help="transformer layers per tower of the demo CLIP (default 2, 1 with --quick; the "
        "CLIP before 2026-12-07 is built again by --clip-layers 4 --no-clip-web-captions)",
    )
    parser.add_argument(
        "--clip-epochs",
        type=int,
        metavar="N",
        help="pretraining epochs of the demo CLIP (default 2): a longer build takes "
        "proportionally longer; what it buys is in docs/demo.md",
    )
    parser.add_argument(
        "--clip-filter",
        type=float,
        metavar="F",
        help="noisy-pair filtering of the demo CLIP: after epoch 2, each epoch leaves out the "
        "fraction F of the training posts it scores least related (captions never; default 0, "
        "none; docs/demo.md)",
    )
    parser.add_argument(
        "--no-training-free",
        action="store_true",
        help="skip the linear-probe and zero-shot baselines",
    )
    noise = parser.add_argument_group("noise knobs of the world")
    noise.add_argument(
        "--unrelated-images",
        type=float,
        metavar="F",
        help="fraction of pictures unrelated to their post (default 0.25)",
    )
    noise.add_argument(
        "--uninformative-texts",
        type=float,
        metavar="F",
        help="fraction of texts that say nothing about a place (default 0.25)",
    )
    noise.add_argument(
        "--no-images", type=float, metavar="F", help="fraction of posts without a picture (0.1)"
    )
    noise.add_argument(
        "--world",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any demo-world setting, e.g. --world dominance=0.5 --world seed=1 (repeatable)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from semloc.cli.make_demo_world import world_settings
    from semloc.demo.pipeline import DemoOptions, run_demo
    from semloc.demo.report import Block, fusion_gain, results_table, to_markdown

    world = world_settings(args.world)
    for key, value in (
        ("unrelated_image_rate", args.unrelated_images),
        ("uninformative_text_rate", args.uninformative_texts),
        ("no_image_rate", args.no_images),
    ):
        if value is not None:
            world[key] = value
    if args.seeds < 1:
        raise SemlocError("--seeds must be at least 1")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    opts = DemoOptions(
        workdir=Path(args.workdir),
        quick=args.quick,
        posts=args.posts,
        seeds=args.seeds,
        world=world,
        models=models,
        training_free=not args.no_training_free,
        config_file=Path(args.config) if args.config else None,
        backbone=Path(args.backbone) if args.backbone else None,
        clip_data=args.clip_data,
        web_posts=args.clip_web_posts,
        web_captions=args.clip_web_captions,
        overrides=list(args.overrides),
        scratch={} if args.clip_layers is None else {"layers": args.clip_layers},
        pretrain={
            **({} if args.clip_epochs is None else {"epochs": args.clip_epochs}),
            **({} if args.clip_filter is None else {"filter_fraction": args.clip_filter}),
        },
    )
    result = run_demo(opts)
    s = result.summary
    rows = s["rows"]
    print()
    print(f"test split, {len(s['seeds'])} seed(s); percent")
    if rows:
        print(to_markdown([Block("table", results_table(rows))]).rstrip())
    gain = fusion_gain(rows)
    if gain:
        print(
            f"\nbest fusion {gain['fusion']} {100 * gain['fusion_f1']:.1f}"
            + "".join(
                f"; best {side}-only {gain[side]} {100 * gain[side + '_f1']:.1f} "
                f"({100 * gain[side + '_gap']:+.1f})"
                for side in ("text", "image")
                if side in gain
            )
        )
    held = (s["clip"].get("metrics") or {}).get("heldout") or {}
    zs = s["clip"].get("zero_shot_images") or {}
    if held:
        print(
            f"demo CLIP: held-out R@1 {100 * held['r_at_1']:.1f}%, R@5 {100 * held['r_at_5']:.1f}%"
            + (
                f", zero-shot on test pictures {100 * zs['accuracy']:.1f}%"
                if zs.get("posts")
                else ""
            )
        )
    t = s["timings"]
    print(
        "time: "
        + ", ".join(f"{k} {t[k]:.0f}s" for k in ("world", "clip", "extract", "models", "report"))
        + f"; total {t['total'] / 60:.1f} min"
    )
    print(f"report: {result.files['report']} (and {result.files['html'].name})")
    return 0
