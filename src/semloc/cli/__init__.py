"""`semloc VERB ...`: a thin dispatcher. Each verb lives in its own module, imported only when
used, so `semloc --help` stays fast and one verb's heavy dependencies never slow another.

A verb module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Every verb also takes ``--config FILE`` and dotted overrides ``section.key=value`` (see
`semloc.config`), and is callable from Python as ``main(["train", ...])``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from semloc.errors import SemlocError

# verb -> module; the order is the order of `semloc --help`
VERBS: dict[str, str] = {
    "demo": "semloc.cli.demo",
    "make-demo-world": "semloc.cli.make_demo_world",
    "pretrain-clip": "semloc.cli.pretrain_clip",
    "extract": "semloc.cli.extract",
    "train": "semloc.cli.train",
    "evaluate": "semloc.cli.evaluate",
    "predict": "semloc.cli.predict",
    "profile": "semloc.cli.profile",
    "experiment": "semloc.cli.experiment",
    "export": "semloc.cli.export",
    "serve": "semloc.cli.serve",
}

_HELP_LINES: dict[str, str] = {
    "demo": "run the whole pipeline offline on a generated demo world",
    "make-demo-world": "generate the demo world (images, posts, captions)",
    "pretrain-clip": "contrastively (pre)train a CLIP on image-caption pairs",
    "extract": "cache frozen CLIP features of posts into a feature store",
    "train": "train a model on a feature store",
    "evaluate": "evaluate trained runs on a split (metrics + plots)",
    "predict": "predict the semantic location of posts with a trained run",
    "profile": "per-user and population location shares and weekly routines from predictions",
    "experiment": "run a grid of models x seeds and tabulate mean +- std",
    "export": "export a trained run to ONNX for serving without PyTorch",
    "serve": "serve a trained run over HTTP with a web page",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML/JSON config file")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="dotted config overrides, e.g. model.dim=128 train.lr=3e-4",
    )


def _available_verbs() -> dict[str, str]:
    found = {}
    for verb, module in VERBS.items():
        if importlib.util.find_spec(module) is not None:
            found[verb] = module
    return found


def build_parser(verbs: dict[str, str]) -> argparse.ArgumentParser:
    from semloc import __version__

    parser = argparse.ArgumentParser(
        prog="semloc",
        description="Semantic location prediction for social-media posts (text + image).",
    )
    parser.add_argument("--version", action="version", version=f"semloc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in verbs:
        sub.add_parser(verb, help=_HELP_LINES.get(verb, ""), add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = _available_verbs()
    top = build_parser(verbs)
    # parse only up to the verb; the verb module owns the rest of the arguments
    verb_pos = next((i for i, a in enumerate(argv) if a in verbs), None)
    if verb_pos is None:
        top.parse_args(argv)  # handles --help / --version / errors
        top.print_help()
        return 2
    top_args = top.parse_args(argv[:verb_pos])
    verb = argv[verb_pos]
    logging.basicConfig(
        level=logging.DEBUG if top_args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(verbs[verb])
    parser = argparse.ArgumentParser(prog=f"semloc {verb}", description=module.HELP)
    module.add_arguments(parser)
    try:
        args = parser.parse_intermixed_args(argv[verb_pos + 1 :])
        return int(module.run(args) or 0)
    except SemlocError as e:
        print(f"semloc {verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"semloc {verb}: interrupted; finished work was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
