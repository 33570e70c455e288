"""A logistic-regression linear probe on CLIP's pooled embeddings: the cheap trained baseline.

Features are [u; w; present] with u, w the L2-normalised text and image embeddings (w = 0 and
present = 0 for a post without an image), standardised with statistics of the train split. The
inverse regularisation strength C is chosen on the dev split's macro-F1 from a logarithmic grid,
as the CLIP paper and CLIP_benchmark do; the test split is read only by `evaluate_linear_probe`,
after the choice is made.

    python -m semloc.probes.linear_probe STORE [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from semloc.errors import SemlocError
from semloc.features.store import FeatureStore
from semloc.io import atomic_write_json
from semloc.metrics import HEADLINE, classification_metrics
from semloc.probes.pooled import PooledEmbeddings, labelled, normalize_rows, read_pooled

log = logging.getLogger(__name__)

# 1e-4 .. 1e4: wide enough that the choice lands inside it on every data set we tried
DEFAULT_CS: tuple[float, ...] = tuple(10.0**k for k in range(-4, 5))


def probe_features(pooled: PooledEmbeddings) -> np.ndarray:
    """(N, 2p + 1): [u; w; present]."""
    present = pooled.image_present.astype(np.float32)[:, None]
    return np.concatenate(
        [normalize_rows(pooled.text_embed), normalize_rows(pooled.image_embed), present], axis=1
    )


@dataclass
class LinearProbe:
    classifier: Pipeline
    C: float
    dev_scores: dict[float, float]  # C -> dev macro-F1
    labels: list[str]
    fit_seconds: float
    dev_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        lr: LogisticRegression = self.classifier[-1]
        return int(lr.coef_.size + lr.intercept_.size)

    def logits(self, pooled: PooledEmbeddings) -> np.ndarray:
        """(N, C) decision values over the full label list (-inf for classes unseen in train)."""
        lr: LogisticRegression = self.classifier[-1]
        scores = self.classifier.decision_function(probe_features(pooled))
        if scores.ndim == 1:  # scikit-learn's binary case: one column, positive class
            scores = np.stack([-scores, scores], axis=1)
        out = np.full((len(pooled), len(self.labels)), -np.inf, dtype=np.float64)
        out[:, lr.classes_] = scores
        return out


def _fit(x: np.ndarray, y: np.ndarray, C: float, max_iter: int) -> Pipeline:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings():
        # an unconverged fit at an extreme C is a worse candidate, which dev selection handles
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def fit_linear_probe(
    store: FeatureStore | str | Path,
    Cs: Sequence[float] = DEFAULT_CS,
    *,
    max_iter: int = 1000,
) -> LinearProbe:
    """Fit on train for every C, keep the one with the best dev macro-F1 (ties: the smaller C,
    i.e. the stronger regularisation). Reads the train and dev splits only."""
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    if not Cs or any(c <= 0 for c in Cs):
        raise SemlocError(f"linear probe: the C grid must hold positive numbers, got {list(Cs)}")
    train_idx, dev_idx = labelled(store, "train"), labelled(store, "dev")
    if train_idx.size == 0 or dev_idx.size == 0:
        raise SemlocError(
            f"feature store {store.root} needs labelled train and dev posts for a linear probe "
            "(C is chosen on dev, never on test)"
        )
    train, dev = read_pooled(store, train_idx), read_pooled(store, dev_idx)
    if len(np.unique(train.labels)) < 2:
        raise SemlocError(f"the train split of {store.root} holds fewer than 2 classes")
    x_train, x_dev = probe_features(train), probe_features(dev)
    t0 = time.perf_counter()
    best: tuple[float, float, Pipeline] | None = None
    scores: dict[float, float] = {}
    for C in sorted(float(c) for c in Cs):
        model = _fit(x_train, train.labels, C, max_iter)
        pred = model.predict(x_dev)
        score = classification_metrics(dev.labels, pred, store.labels)[HEADLINE]
        scores[C] = score
        log.info("linear probe C=%g: dev macro-F1 %.4f", C, score)
        if best is None or score > best[1]:
            best = (C, score, model)
    assert best is not None
    C, _, model = best
    probe = LinearProbe(
        classifier=model,
        C=C,
        dev_scores=scores,
        labels=list(store.labels),
        fit_seconds=time.perf_counter() - t0,
    )
    probe.dev_metrics = classification_metrics(
        dev.labels, probe.logits(dev).argmax(1), store.labels
    )
    return probe


def evaluate_linear_probe(
    probe: LinearProbe, store: FeatureStore | str | Path, split: str = "test"
) -> dict[str, Any]:
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    if list(store.labels) != probe.labels:
        raise SemlocError(f"feature store {store.root} has other labels than the probe")
    idx = labelled(store, split)
    if idx.size == 0:
        raise SemlocError(f"feature store {store.root} has no labelled '{split}' posts")
    pooled = read_pooled(store, idx)
    return classification_metrics(pooled.labels, probe.logits(pooled).argmax(1), probe.labels)


def run_linear_probe(
    store: FeatureStore | str | Path,
    split: str = "test",
    *,
    Cs: Sequence[float] = DEFAULT_CS,
    max_iter: int = 1000,
    out_dir: str | Path | None = None,
    name: str = "linear_probe",
) -> dict[str, Any]:
    """Fit (choosing C on dev), then evaluate on `split`; written to OUT/ if given."""
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    probe = fit_linear_probe(store, Cs, max_iter=max_iter)
    metrics = evaluate_linear_probe(probe, store, split)
    metrics.update(
        split=split,
        run=str(out_dir) if out_dir else None,
        model=name,
        seed=None,
        num_params=probe.num_params,
        C=probe.C,
        train_seconds=probe.fit_seconds,
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_json(
            out_dir / "probe.json",
            {
                "C": probe.C,
                "dev_macro_f1_by_C": {f"{c:g}": s for c, s in probe.dev_scores.items()},
                "dev_metrics": probe.dev_metrics,
                "fit_seconds": probe.fit_seconds,
                "num_params": probe.num_params,
            },
        )
        atomic_write_json(out_dir / f"eval-{split}" / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m semloc.probes.linear_probe",
        description="Logistic-regression probe on CLIP's pooled embeddings, C chosen on dev.",
    )
    parser.add_argument("store", help="feature store directory")
    parser.add_argument("--split", default="test", help="split to report (default: test)")
    parser.add_argument("--out", help="directory for probe.json and eval-SPLIT/metrics.json")
    parser.add_argument("--max-iter", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        m = run_linear_probe(args.store, args.split, max_iter=args.max_iter, out_dir=args.out)
    except SemlocError as e:
        print(f"linear_probe: error: {e}", file=sys.stderr)
        return 2
    print(f"C={m['C']:g}  {args.split}: macro-F1 {m['macro_f1']:.4f}, accuracy {m['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
