"""Plot and tabulate demo-CLIP curves (curve.json of builds made with eval_every):

    python scripts/clip-curves.py docs/figures/demo-clip-curve.png \
        "8 epochs=demo-out/clip/<key>" "24 epochs=demo-out/clip/<key2>"

prints a Markdown table (epoch, steps, training CPU and wall seconds, R@1, R@5, AUROC) of each
build and writes the plot of AUROC and R@1 against training CPU seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from semloc.clip.pretrain import CURVE_FILE
from semloc.plots import plot_clip_curves


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, builds = Path(argv[0]), argv[1:]
    curves = {}
    for spec in builds:
        name, _, directory = spec.rpartition("=")
        curve = json.loads((Path(directory) / CURVE_FILE).read_text())
        curves[name or Path(directory).name] = curve["points"]
    for name, points in curves.items():
        print(f"\n{name}\n")
        print("| epoch | steps | training CPU s | training wall s | R@1 | R@5 | AUROC |")
        print("|---|---|---|---|---|---|---|")
        for p in points:
            auc = p.get("related_vs_unrelated_auroc")
            print(
                f"| {p['epoch']} | {p['steps']} | {p['train_cpu_seconds']:.0f} | "
                f"{p['train_seconds']:.0f} | {100 * p['r_at_1']:.1f}% | {100 * p['r_at_5']:.1f}% | "
                f"{'–' if auc is None else f'{auc:.3f}'} |"
            )
    plot_clip_curves(curves, out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
