"""Where the noise is, and what each model does with it: diagnostics only a generated world allows.

A demo world knows, for every post, whether its picture is the place, an unrelated one (a selfie,
a pet, a meme, another place's scene) or missing, and whether its text talks about the place or
says nothing about it. This module recovers that ground truth from the world's own config (the
plan is a pure function of it) and reports

- how well the CLIP's text-picture cosine (the coarse similarity SG-MFT is guided by) separates
  posts with a related picture from posts with an unrelated one (ROC AUC; 0.5 = blind), and
- each run's accuracy on clean posts, on posts with an unrelated picture, with an uninformative
  text and without a picture, on one split (test by default).

    python -m semloc.demo.diagnose --world demo-out/world/<id> --store demo-out/features/<id> \
        runs/sgmft-seed0 runs/cross_transformer-seed0 ...

Nothing here trains or tunes anything; it reads a finished store and finished runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semloc.errors import SemlocError

UNRELATED_KINDS = frozenset({"selfie", "pet", "meme", "other_class"})
RELATED_KINDS = frozenset({"scene", "confused", "generic"})
UNINFORMATIVE_MODES = frozenset({"chatter", "empty"})

# the slices of posts a run is scored on, in report order
SLICES: tuple[tuple[str, str], ...] = (
    ("all", "every post of the split"),
    ("clean", "clear text and the place's own picture"),
    ("unrelated_image", "the picture is unrelated to the post"),
    ("uninformative_text", "the text says nothing about a place"),
    ("no_image", "no picture"),
)


@dataclass(frozen=True)
class PostTruth:
    """How a demo post was made: its text mode and picture kind (see semloc.demo.world)."""

    text_mode: str  # clear | confused | vague | chatter | empty
    image_kind: str  # scene | confused | generic | selfie | pet | meme | other_class | none

    def in_slice(self, name: str) -> bool:
        if name == "all":
            return True
        if name == "clean":
            return self.text_mode == "clear" and self.image_kind == "scene"
        if name == "unrelated_image":
            return self.image_kind in UNRELATED_KINDS
        if name == "uninformative_text":
            return self.text_mode in UNINFORMATIVE_MODES
        if name == "no_image":
            return self.image_kind == "none"
        raise SemlocError(f"unknown slice {name!r}; expected one of {[s for s, _ in SLICES]}")


def noise_truth(world_dir: str | Path) -> dict[str, PostTruth]:
    """Post id -> how it was made, recomputed from the world's config in world.json."""
    from semloc.demo.world import _make_plan, config_from_dict, normalise_config, read_world_info

    info = read_world_info(world_dir)
    if info is None:
        raise SemlocError(f"{world_dir} is not a finished demo world (no world.json)")
    cfg = normalise_config(config_from_dict(info["config"]))
    plan = _make_plan(cfg)
    return {p.id: PostTruth(p.text_mode, p.image_kind) for p in plan}


def _truth_for(store: Any, indices: np.ndarray, truth: dict[str, PostTruth]) -> list[PostTruth]:
    missing = [store.ids[i] for i in indices if store.ids[i] not in truth]
    if missing:
        raise SemlocError(
            f"{len(missing)} posts of {store.root} are not in this demo world "
            f"(first: {', '.join(missing[:5])}): is it the store of another world?"
        )
    return [truth[store.ids[i]] for i in indices]


def _auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(positive) == 0 or len(negative) == 0:
        return None
    y = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    return float(roc_auc_score(y, np.concatenate([positive, negative])))


def similarity_report(
    store: Any, truth: dict[str, PostTruth], split: str = "test"
) -> dict[str, Any]:
    """The coarse similarity (cosine of CLIP's pooled text and picture embeddings) by post kind.

    `related_vs_unrelated_auroc`: how well the cosine ranks posts with a related picture above
    posts with an unrelated one (1 = perfectly, 0.5 = not at all); `..._informative_text` is the
    same among posts whose text talks about the place (where the cosine has something to match).
    """
    from semloc.probes.pooled import normalize_rows, read_pooled

    idx = store.indices(split)
    pooled = read_pooled(store, idx)
    truths = _truth_for(store, idx, truth)
    cos = np.sum(normalize_rows(pooled.text_embed) * normalize_rows(pooled.image_embed), axis=1)
    kinds = np.array([t.image_kind for t in truths])
    informative = np.array([t.text_mode not in UNINFORMATIVE_MODES for t in truths])
    related = np.isin(kinds, list(RELATED_KINDS)) & pooled.image_present
    unrelated = np.isin(kinds, list(UNRELATED_KINDS)) & pooled.image_present
    by_kind = {
        k: {"posts": int((kinds == k).sum()), "mean_cosine": float(cos[kinds == k].mean())}
        for k in sorted(set(kinds) - {"none"})
    }
    return {
        "split": split,
        "posts": len(idx),
        "by_image_kind": by_kind,
        "related_vs_unrelated_auroc": _auroc(cos[related], cos[unrelated]),
        "related_vs_unrelated_auroc_informative_text": _auroc(
            cos[related & informative], cos[unrelated & informative]
        ),
    }


def slice_scores(
    run_dir: str | Path, store: Any, truth: dict[str, PostTruth], split: str = "test"
) -> dict[str, Any]:
    """One run's accuracy and macro-F1 on each slice of `split` (see SLICES)."""
    from semloc.metrics import classification_metrics
    from semloc.prediction import predict_store
    from semloc.probes.pooled import labelled
    from semloc.runs import load_run

    run = load_run(run_dir)
    store.check_compatible(run.feature_header, what=f"the features run {run.path} was trained on")
    idx = labelled(store, split)
    if idx.size == 0:
        raise SemlocError(f"the '{split}' posts of {store.root} carry no labels")
    store.check_labels(run.labels, idx, what=f"run {run.path}")
    preds = predict_store(run, store, idx)
    truths = _truth_for(store, preds.index, truth)
    y_pred = preds.logits.argmax(1)
    out: dict[str, Any] = {"run": str(run.path), "model": run.meta["model_name"], "slices": {}}
    for name, _ in SLICES:
        mask = np.array([t.in_slice(name) for t in truths])
        if not mask.any():
            out["slices"][name] = {"posts": 0, "accuracy": None, "macro_f1": None}
            continue
        m = classification_metrics(preds.labels[mask], y_pred[mask], run.labels)
        out["slices"][name] = {
            "posts": int(mask.sum()),
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
        }
        # SG-MFT's own view of the post: the gate and the picture's weight in the fusion
        if "gate" in preds.extras:
            out["slices"][name]["mean_gate"] = float(np.mean(preds.extras["gate"][mask]))
        if "modality_weights" in preds.extras:
            w = preds.extras["modality_weights"][mask, 1]
            out["slices"][name]["mean_image_weight"] = float(np.mean(w))
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def render(sim: dict[str, Any], runs: Sequence[dict[str, Any]]) -> str:
    """Both reports as Markdown."""
    lines = [
        f"Coarse similarity on the {sim['split']} split ({sim['posts']} posts): cosine of CLIP's "
        "pooled text and picture embeddings.",
        "",
        "| picture kind | posts | mean cosine |",
        "|---|---|---|",
    ]
    for kind, row in sim["by_image_kind"].items():
        lines.append(f"| {kind} | {row['posts']} | {row['mean_cosine']:.3f} |")
    auc, auc_inf = (
        sim["related_vs_unrelated_auroc"],
        sim["related_vs_unrelated_auroc_informative_text"],
    )
    lines += [
        "",
        f"Related vs unrelated picture, ROC AUC of the cosine: {_fmt(auc)} "
        f"(posts with an informative text: {_fmt(auc_inf)}; 0.5 = blind).",
    ]
    if runs:
        names = [n for n, _ in SLICES]
        counts = runs[0]["slices"]
        lines += [
            "",
            "Accuracy (%) per slice of the split:",
            "",
            "| run | " + " | ".join(f"{n} ({counts[n]['posts']})" for n in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for r in runs:
            cells = " | ".join(_pct(r["slices"][n]["accuracy"]) for n in names)
            lines.append(f"| {r['model']} `{Path(r['run']).name}` | {cells} |")
        guided = [r for r in runs if "mean_image_weight" in r["slices"]["all"]]
        if guided:
            lines += [
                "",
                "Picture's weight in the fusion (mean π_image) and gate (mean a) per slice:",
                "",
                "| run | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
            ]
            for r in guided:
                cells = " | ".join(
                    f"{r['slices'][n].get('mean_image_weight', 0):.2f} / "
                    f"{r['slices'][n].get('mean_gate', 0):.2f}"
                    if r["slices"][n]["posts"]
                    else "–"
                    for n in names
                )
                lines.append(f"| {r['model']} `{Path(r['run']).name}` | {cells} |")
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    from semloc.features.store import FeatureStore

    parser = argparse.ArgumentParser(
        prog="python -m semloc.demo.diagnose",
        description="coarse-similarity separability and per-slice accuracy on a demo world",
    )
    parser.add_argument("runs", nargs="*", help="finished runs to score per slice")
    parser.add_argument("--world", required=True, help="the demo world directory (world.json)")
    parser.add_argument("--store", required=True, help="that world's feature store")
    parser.add_argument("--split", default="test", help="split to report (default test)")
    args = parser.parse_args(argv)
    try:
        truth = noise_truth(args.world)
        store = FeatureStore(args.store)
        sim = similarity_report(store, truth, args.split)
        runs = [slice_scores(r, store, truth, args.split) for r in args.runs]
    except SemlocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(render(sim, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
