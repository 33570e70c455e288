"""Where the noise is, and what each model does with it: per-slice diagnostics of a feature store.

Given, for every post, whether its picture is related to it, unrelated (a selfie, a pet, a meme,
another place's scene) or missing, and whether its text talks about the place or says nothing
about it, this module reports

- how well the CLIP's text-picture cosine (the coarse similarity SG-MFT is guided by) separates
  posts with a related picture from posts with an unrelated one (ROC AUC; 0.5 = blind), and
- each run's accuracy on clean posts, on posts with an unrelated picture, with an uninformative
  text and without a picture, on one split (test by default);
- with `--text-path`, each run's accuracy per slice with every picture withheld: its text path
  alone. Set against the first table it says whether a fusion model loses on unrelated-picture
  posts because it does not fall back to the text enough (the text path alone scores higher) or
  because its text path is weak (it does not).

Where that ground truth comes from:

- a demo world (`--world`): recomputed from the world's own config (the plan is a pure function
  of it);
- any store (`--slices FILE`): a table (CSV, TSV, JSONL or Parquet) with an `id` column and a
  slice column (`--slice-column`, default `slice`) whose value is `clean` or the post's kinds of
  noise joined by `+` (`unrelated_image`, `uninformative_text`, `no_image`, e.g.
  `unrelated_image+uninformative_text`). A posts file with such a column will do, and so does
  the `slices.csv` of a study world (`semloc.features.study`).

    python -m semloc.demo.diagnose --world demo-out/world/<id> --store demo-out/features/<id> \
        runs/sgmft-seed0 runs/cross_transformer-seed0 ...
    python -m semloc.demo.diagnose --slices my-posts.csv --store feats/ runs/sgmft-seed0

Nothing here trains or tunes anything; it reads a finished store and finished runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semloc.errors import SemlocError

UNRELATED_KINDS = frozenset({"selfie", "pet", "meme", "other_class"})
RELATED_KINDS = frozenset({"scene", "confused", "generic"})
UNINFORMATIVE_MODES = frozenset({"chatter", "empty"})
NOISE_SLICES = ("unrelated_image", "uninformative_text", "no_image")

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

    @property
    def kind(self) -> str:
        return self.image_kind

    @property
    def has_picture(self) -> bool:
        return self.image_kind != "none"

    @property
    def unrelated_picture(self) -> bool:
        return self.image_kind in UNRELATED_KINDS

    @property
    def informative_text(self) -> bool:
        return self.text_mode not in UNINFORMATIVE_MODES


@dataclass(frozen=True)
class SliceTags:
    """A post's slices as annotated by a user: `clean`, or a set of NOISE_SLICES."""

    tags: frozenset[str]

    def in_slice(self, name: str) -> bool:
        if name == "all":
            return True
        if name in ("clean", *NOISE_SLICES):
            return name in self.tags
        raise SemlocError(f"unknown slice {name!r}; expected one of {[s for s, _ in SLICES]}")

    @property
    def kind(self) -> str:
        if not self.has_picture:
            return "none"
        return "unrelated" if self.unrelated_picture else "related"

    @property
    def has_picture(self) -> bool:
        return "no_image" not in self.tags

    @property
    def unrelated_picture(self) -> bool:
        return "unrelated_image" in self.tags

    @property
    def informative_text(self) -> bool:
        return "uninformative_text" not in self.tags


Truth = PostTruth | SliceTags


def parse_slice(value: Any, where: str) -> SliceTags:
    """`clean` or noise slice names joined by '+' -> SliceTags; SemlocError naming `where`."""
    if not isinstance(value, str) or not value.strip():
        raise SemlocError(f"{where}: empty slice (expected 'clean' or {'/'.join(NOISE_SLICES)})")
    names = {v.strip() for v in value.split("+")}
    if names == {"clean"}:
        return SliceTags(frozenset(names))
    bad = sorted(names - set(NOISE_SLICES))
    if bad:
        raise SemlocError(
            f"{where}: unknown slice {'+'.join(bad)!r}; expected 'clean' or names from "
            f"{', '.join(NOISE_SLICES)} joined by '+'"
        )
    if {"no_image", "unrelated_image"} <= names:
        raise SemlocError(f"{where}: a post without a picture cannot have an unrelated one")
    return SliceTags(frozenset(names))


def read_slices(
    path: str | Path, column: str = "slice", id_column: str = "id"
) -> dict[str, SliceTags]:
    """Post id -> slices, from a CSV/TSV/JSONL/Parquet table with an id and a slice column."""
    path = Path(path)
    if not path.is_file():
        raise SemlocError(f"slice file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8") as f:
                records = [json.loads(line) for line in f if line.strip()]
            columns = sorted({k for r in records for k in r})
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            columns, records = table.column_names, table.to_pylist()
        elif suffix in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
                records = list(reader)
                columns = list(reader.fieldnames or [])
        else:
            raise SemlocError(f"{path}: unknown table format {suffix!r} (csv, tsv, jsonl, parquet)")
    except (ValueError, OSError) as e:
        raise SemlocError(f"{path}: cannot read the slice table: {e}") from e
    for col in (id_column, column):
        if col not in columns:
            raise SemlocError(f"{path} has no column {col!r} (columns: {columns})")
    out: dict[str, SliceTags] = {}
    for row, record in enumerate(records, 1):
        pid, value = str(record.get(id_column)), record.get(column)
        if pid in out:
            raise SemlocError(f"{path}, data row {row}: id {pid!r} appears twice")
        out[pid] = parse_slice(value, f"{path}, data row {row} (id {pid!r})")
    return out


def noise_truth(world_dir: str | Path) -> dict[str, PostTruth]:
    """Post id -> how it was made, recomputed from the world's config in world.json."""
    from semloc.demo.world import config_from_dict, make_plan, normalise_config, read_world_info

    info = read_world_info(world_dir)
    if info is None:
        raise SemlocError(f"{world_dir} is not a finished demo world (no world.json)")
    cfg = normalise_config(config_from_dict(info["config"]))
    plan = make_plan(cfg)
    return {p.id: PostTruth(p.text_mode, p.image_kind) for p in plan}


def _truth_for(store: Any, indices: np.ndarray, truth: dict[str, Truth]) -> list[Truth]:
    missing = [store.ids[i] for i in indices if store.ids[i] not in truth]
    if missing:
        demo = all(isinstance(t, PostTruth) for t in truth.values())
        where = "this demo world" if demo else "the slice file"
        raise SemlocError(
            f"{len(missing)} posts of {store.root} are not in {where} "
            f"(first: {', '.join(missing[:5])}): is it the store of other posts?"
        )
    return [truth[store.ids[i]] for i in indices]


def similarity_report(store: Any, truth: dict[str, Truth], split: str = "test") -> dict[str, Any]:
    """The coarse similarity (cosine of CLIP's pooled text and picture embeddings) by post kind.

    `related_vs_unrelated_auroc`: how well the cosine ranks posts with a related picture above
    posts with an unrelated one (1 = perfectly, 0.5 = not at all); `..._informative_text` is the
    same among posts whose text talks about the place (where the cosine has something to match).
    """
    from semloc.features.study import auroc
    from semloc.probes.pooled import normalize_rows, read_pooled

    idx = store.indices(split)
    pooled = read_pooled(store, idx)
    truths = _truth_for(store, idx, truth)
    cos = np.sum(normalize_rows(pooled.text_embed) * normalize_rows(pooled.image_embed), axis=1)
    kinds = np.array([t.kind for t in truths])
    informative = np.array([t.informative_text for t in truths])
    has_picture = np.array([t.has_picture for t in truths]) & pooled.image_present
    unrelated = np.array([t.unrelated_picture for t in truths]) & has_picture
    related = has_picture & ~unrelated
    by_kind = {
        k: {"posts": int((kinds == k).sum()), "mean_cosine": float(cos[kinds == k].mean())}
        for k in sorted(set(kinds) - {"none"})
    }
    return {
        "split": split,
        "posts": len(idx),
        "by_image_kind": by_kind,
        "related_vs_unrelated_auroc": auroc(cos[related], cos[unrelated]),
        "related_vs_unrelated_auroc_informative_text": auroc(
            cos[related & informative], cos[unrelated & informative]
        ),
    }


def slice_scores(
    run_dir: str | Path,
    store: Any,
    truth: dict[str, Truth],
    split: str = "test",
    *,
    withhold_images: bool = False,
) -> dict[str, Any]:
    """One run's accuracy and macro-F1 on each slice of `split` (see SLICES); with
    `withhold_images`, of its text path alone (every post scored as if it had no picture)."""
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
    preds = predict_store(run, store, idx, withhold_images=withhold_images)
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
        if "picture_match" in preds.extras:  # the text fallback's r
            r = preds.extras["picture_match"][mask]
            out["slices"][name]["mean_picture_match"] = float(np.mean(r))
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def render(
    sim: dict[str, Any],
    runs: Sequence[dict[str, Any]],
    text_paths: Sequence[dict[str, Any]] = (),
) -> str:
    """The reports as Markdown (`text_paths`: `slice_scores(..., withhold_images=True)`)."""
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
    names = [n for n, _ in SLICES]
    for title, scored in (
        ("Accuracy (%) per slice of the split:", runs),
        ("Text path alone (every picture withheld), accuracy (%) per slice:", text_paths),
    ):
        if not scored:
            continue
        counts = scored[0]["slices"]
        lines += [
            "",
            title,
            "",
            "| run | " + " | ".join(f"{n} ({counts[n]['posts']})" for n in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for r in scored:
            cells = " | ".join(_pct(r["slices"][n]["accuracy"]) for n in names)
            lines.append(f"| {r['model']} `{_run_label(r['run'])}` | {cells} |")

    def per_slice(title: str, key: str, cell: Callable[[dict[str, Any]], str]) -> None:
        # one row per run that reports `key`; "–" for an empty slice
        having = [r for r in runs if key in r["slices"]["all"]]
        if not having:
            return
        lines.extend(["", title, "", "| run | " + " | ".join(names) + " |"])
        lines.append("|---|" + "---|" * len(names))
        for r in having:
            cells = " | ".join(
                cell(r["slices"][n]) if r["slices"][n]["posts"] else "–" for n in names
            )
            lines.append(f"| {r['model']} `{_run_label(r['run'])}` | {cells} |")

    per_slice(
        "Picture's weight in the fusion (mean π_image) and gate (mean a) per slice:",
        "mean_image_weight",
        lambda row: f"{_mean(row, 'mean_image_weight')} / {_mean(row, 'mean_gate')}",
    )
    per_slice(
        "The text fallback's picture-match probability (mean r) per slice:",
        "mean_picture_match",
        lambda row: _mean(row, "mean_picture_match"),
    )
    return "\n".join(lines) + "\n"


def _mean(row: dict[str, Any], key: str) -> str:
    # a model without the quantity (the unguided transformer has no gate) shows "–", not 0
    return f"{row[key]:.2f}" if key in row else "–"


def _run_label(run: str) -> str:
    """The run directory's name, with its parent when it is only a seed (grid cells)."""
    path = Path(run)
    return f"{path.parent.name}/{path.name}" if path.name.startswith("seed-") else path.name


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    from semloc.features.store import FeatureStore

    parser = argparse.ArgumentParser(
        prog="python -m semloc.demo.diagnose",
        description="coarse-similarity separability and per-slice accuracy on a feature store",
    )
    parser.add_argument("runs", nargs="*", help="finished runs to score per slice")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--world", help="a demo world directory (world.json): slices recomputed")
    where.add_argument(
        "--slices",
        metavar="FILE",
        help="a table (csv/tsv/jsonl/parquet) with an id column and a slice column: 'clean' or "
        "unrelated_image / uninformative_text / no_image joined by '+'",
    )
    parser.add_argument("--slice-column", default="slice", help="column of --slices (slice)")
    parser.add_argument("--store", required=True, help="the posts' feature store")
    parser.add_argument("--split", default="test", help="split to report (default test)")
    parser.add_argument(
        "--text-path",
        action="store_true",
        help="also score each run with every picture withheld (its text path alone)",
    )
    args = parser.parse_args(argv)
    try:
        if args.world:
            truth: dict[str, Truth] = dict(noise_truth(args.world))
        else:
            truth = dict(read_slices(args.slices, args.slice_column))
        store = FeatureStore(args.store)
        sim = similarity_report(store, truth, args.split)
        runs = [slice_scores(r, store, truth, args.split) for r in args.runs]
        text_paths = (
            [slice_scores(r, store, truth, args.split, withhold_images=True) for r in args.runs]
            if args.text_path
            else []
        )
    except SemlocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(render(sim, runs, text_paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
