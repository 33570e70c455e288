"""semloc export RUN --format onnx [--with-backbone] [-o DIR]

Writes the trained model as ONNX (dynamic batch and token axes) with a manifest.json, checked
against PyTorch (max difference <= 1e-4) before anything is kept; --with-backbone adds the CLIP
text and vision towers the run's features came from. Serve it with `semloc serve DIR --runtime
onnx`, or load it with `semloc.runs.load_run(DIR, runtime="onnx")`.
"""

from __future__ import annotations

import argparse

from semloc.errors import SemlocError

HELP = "export a trained run to ONNX (with a manifest) for serving without PyTorch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (or checkpoint file) to export")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("-o", "--out", metavar="DIR", help="output directory (default: RUN/onnx)")
    parser.add_argument(
        "--with-backbone",
        action="store_true",
        help="also export the CLIP text and vision towers (token states + pooled projections)",
    )
    parser.add_argument(
        "--backbone",
        metavar="DIR",
        help="CLIP directory, when the one recorded with the run has moved (--with-backbone)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise SemlocError(
            f"semloc export needs onnx, onnxscript and onnxruntime ({e.name} is missing): "
            "pip install 'semloc[export]'"
        ) from None
    from semloc.export import export_run

    manifest = export_run(
        args.run,
        args.out,
        fmt=args.format,
        with_backbone=args.with_backbone,
        backbone_override=args.backbone,
    )
    graphs = manifest["graphs"]
    worst = max(g["max_abs_difference"] for g in graphs.values())
    out = args.out or f"{manifest['run']}/onnx"
    print(
        f"exported {', '.join(g['file'] for g in graphs.values())} to {out} "
        f"(max |onnxruntime - PyTorch| = {worst:.2g})"
    )
    return 0
