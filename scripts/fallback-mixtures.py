"""How much could SG-MFT's text fallback gain from a better picture-match weight r?

A run trained with `model.text_fallback=true` outputs the mixture r p_fused + (1 - r) p_text
(docs/model.md, "A fallback to the text"). This script takes its two parts, p_fused and p_text,
for every post of a split and mixes them again with other weights r, without retraining:

- `learned r`: the run's own (what it predicts);
- `r = 1/2`: a fixed mix, no similarity;
- `EM posterior`: P(related | cosine) from a two-component Gaussian mixture fitted, without
  labels, to the cosines of the run's training posts (the similarity's own distribution), and
  with three components (related pictures of clear and of vague texts, unrelated pictures),
  r = 1 - P(the lowest component);
- `oracle`: 0 for a post whose picture is unrelated and 1 otherwise, from the slice table (the
  most any per-post r could gain, for this p_fused and p_text);
- `fused only` (r = 1) and `text only` (r = 0).

p_fused was trained inside the run's own mixture, so a row other than the first is what that
weight would do to these two parts, not what a model trained with it would score.

    python scripts/fallback-mixtures.py STORE --slices W/slices.csv --split dev RUN [RUN ...]
    python scripts/fallback-mixtures.py STORE --world demo-out/world/<id> --split dev RUN ...

Prints macro-F1 and per-slice accuracy (%), the mean over the runs, and each slice's mean r.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np
import torch
from scipy.special import log_softmax
from sklearn.metrics import f1_score
from sklearn.mixture import GaussianMixture

from semloc.data.records import SPLITS
from semloc.demo.diagnose import SLICES, Truth, noise_truth, read_slices
from semloc.errors import SemlocError
from semloc.features.loader import make_loader
from semloc.features.store import FeatureStore, label_map_for
from semloc.models.base import unit_rms
from semloc.probes.pooled import normalize_rows, read_pooled
from semloc.runs import LoadedRun, load_run, require_split


def mixture_parts(run: LoadedRun, store: FeatureStore, split: str) -> dict[str, np.ndarray]:
    """Per post of `split`, in store order: fused and text logits, cosine s, picture present,
    the run's own r, the label and the store index."""
    fallback = getattr(run.model, "fallback", None)
    if fallback is None:
        raise SemlocError(f"run {run.path} was not trained with model.text_fallback=true")
    store.check_compatible(run.feature_header, what=f"run {run.path}")
    idx = require_split(store, split, f"the mixtures need its posts (run {run.path})")
    parts: list[tuple[torch.Tensor, ...]] = []

    def keep(module: torch.nn.Module, args: tuple, out: tuple) -> None:
        fused, u, _, s, present, _ = args
        text = module.text_head(unit_rms(u))
        parts.append((fused, text, s, present, out[1]))

    loader = make_loader(store, idx, 256, label_map=label_map_for(store, run.labels))
    labels, index = [], []
    handle = fallback.register_forward_hook(keep)
    run.model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                run.model(batch)
                labels.append(batch.labels.numpy())
                index.append(batch.index.numpy())
    finally:
        handle.remove()
    names = ("fused", "text", "s", "present", "r")
    out = {n: torch.cat([p[i] for p in parts]).numpy() for i, n in enumerate(names)}
    out["present"] = out["present"].astype(bool)
    out["y"], out["index"] = np.concatenate(labels), np.concatenate(index)
    return out


def mix(parts: dict[str, np.ndarray], r: np.ndarray) -> np.ndarray:
    """Predicted codes of r p_fused + (1 - r) p_text (r = 0 without picture)."""
    r = np.clip(np.where(parts["present"], r, 0.0), 1e-12, 1 - 1e-12)
    log_p = np.logaddexp(
        np.log(r)[:, None] + log_softmax(parts["fused"], axis=1),
        np.log1p(-r)[:, None] + log_softmax(parts["text"], axis=1),
    )
    return log_p.argmax(1)


def train_cosines(store: FeatureStore) -> np.ndarray:
    """The pooled text-picture cosine of every training post with a picture (the s the models
    compute; it depends on the store alone)."""
    pooled = read_pooled(store, require_split(store, "train", "the posterior is fitted to it"))
    keep = pooled.image_present
    t, v = normalize_rows(pooled.text_embed[keep]), normalize_rows(pooled.image_embed[keep])
    return (t * v).sum(1)


def em_posterior(cosines: np.ndarray, components: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """1 - P(the lowest-cosine component | s), a Gaussian mixture fitted to the training posts'
    cosines (a picture is unrelated where it is in the lowest component)."""
    gm = GaussianMixture(components, random_state=0).fit(cosines[:, None])
    low = int(np.argmin(gm.means_.ravel()))
    return lambda s: 1.0 - gm.predict_proba(s[:, None])[:, low]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    truth_from = ap.add_mutually_exclusive_group(required=True)
    truth_from.add_argument("--slices", help="a slice table (id, slice), e.g. a study world's")
    truth_from.add_argument("--world", help="a demo world directory")
    ap.add_argument("--split", default="dev", choices=SPLITS)
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args(argv)
    try:
        store = FeatureStore(args.store)
        truth: dict[str, Truth] = dict(
            read_slices(args.slices) if args.slices else noise_truth(args.world)
        )
        cosines = train_cosines(store)
        posteriors = {c: em_posterior(cosines, c) for c in (2, 3)}
        scores: dict[str, list[tuple[float, dict[str, float], dict[str, float]]]] = {}
        for path in args.runs:
            parts = mixture_parts(load_run(path), store, args.split)
            missing = [store.ids[i] for i in parts["index"] if store.ids[i] not in truth]
            if missing:
                raise SemlocError(
                    f"{len(missing)} {args.split} posts have no slice (first: {missing[0]!r})"
                )
            tags = [truth[store.ids[i]] for i in parts["index"]]
            slices = {n: np.array([t.in_slice(n) for t in tags]) for n, _ in SLICES}
            n = len(parts["y"])
            weights = {
                "learned r": parts["r"],
                "r = 1/2": np.full(n, 0.5),
                "EM posterior": posteriors[2](parts["s"]),
                "EM posterior, 3 components": posteriors[3](parts["s"]),
                "oracle": np.array([0.0 if t.unrelated_picture else 1.0 for t in tags]),
                "fused only": np.ones(n),
                "text only": np.zeros(n),
            }
            for name, r in weights.items():
                pred = mix(parts, r)
                f1 = 100 * f1_score(parts["y"], pred, average="macro")
                acc = {k: 100 * float((pred[m] == parts["y"][m]).mean()) for k, m in slices.items()}
                mean_r = {
                    k: float(np.where(parts["present"], r, 0)[m].mean()) for k, m in slices.items()
                }
                scores.setdefault(name, []).append((f1, acc, mean_r))
    except SemlocError as e:
        print(f"fallback-mixtures: {e}", file=sys.stderr)
        return 2
    names = [n for n, _ in SLICES if n != "all"]
    print(
        f"{args.split}, mean of {len(args.runs)} runs: macro-F1, then accuracy % (mean r) per slice"
    )
    print("| r | macro-F1 | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for name, rows in scores.items():
        cells = [
            f"{np.mean([a[k] for _, a, _ in rows]):.1f} ({np.mean([m[k] for _, _, m in rows]):.2f})"
            for k in names
        ]
        print(f"| {name} | {np.mean([f for f, _, _ in rows]):.1f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
