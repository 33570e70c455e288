"""Is model B better than model A on a split, or is the gap the sample of posts? A paired
bootstrap of the macro-F1 difference (semloc.metrics.paired_bootstrap):

    python scripts/paired-bootstrap.py demo-out/features/<id> --split dev \
        --a runs/grid/<store>/sgmft/seed-* --b runs/grid/<store>/sgmft-no-coarse/seed-*

Each model's runs are its seeds (scored on the split's posts); the difference is B minus A of
the mean-over-seeds macro-F1, and the interval resamples the posts, the same ones for every run.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from semloc.data.records import SPLITS
from semloc.errors import SemlocError
from semloc.features.store import FeatureStore
from semloc.metrics import paired_bootstrap
from semloc.prediction import predict_store
from semloc.runs import load_run


def predictions(
    runs: list[str], store: FeatureStore, split: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """The split's label codes, each run's predicted codes (runs, posts) and the class count."""
    codes, labels, num_classes = [], None, 0
    for path in runs:
        run = load_run(path)
        num_classes = max(num_classes, len(run.labels))
        out = predict_store(run, store, store.indices(split))
        if labels is not None and not np.array_equal(labels, out.labels):
            raise SemlocError(f"run {path} labels the posts differently from the runs before it")
        labels = out.labels
        codes.append(out.logits.argmax(1))
    if labels is None or (labels < 0).any():
        raise SemlocError(f"every {split} post needs a label")
    return labels, np.stack(codes), num_classes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--split", default="dev", choices=SPLITS)
    parser.add_argument("--a", nargs="+", required=True, help="model A's runs (its seeds)")
    parser.add_argument("--b", nargs="+", required=True, help="model B's runs (its seeds)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        store = FeatureStore(args.store)
        # one pass over both models' runs: every run must label the posts alike
        labels, codes, num_classes = predictions([*args.a, *args.b], store, args.split)
        a, b = codes[: len(args.a)], codes[len(args.a) :]
        out = paired_bootstrap(labels, a, b, num_classes, resamples=args.resamples, seed=args.seed)
    except (SemlocError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"{args.split}, {len(labels)} posts, {len(a)} runs of A, {len(b)} of B: macro-F1 B - A "
        f"{100 * out['difference']:+.2f} points, 95% interval over the posts "
        f"[{100 * out['low']:+.2f}, {100 * out['high']:+.2f}] ({args.resamples} resamples)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
