"""Experiment grids: models x seeds x feature stores, each cell trained and evaluated the same way,
tabulated as mean ± std over seeds.

A grid file (YAML or JSON; relative paths in it are relative to the file)::

    name: ablations                    # title of the table (default: the file's stem)
    store: feats/                      # one feature store, or a series for a noise study:
    # stores:
    #   - {x: 0.0, store: feats-0.0/}
    #   - {x: 0.2, store: feats-0.2/, key: noise-20}   # key: directory name (default x-0.2)
    # x_label: unrelated-image fraction
    config: base.yaml                  # optional config file every trained cell starts from
    overrides: [train.epochs=30]       # for every trained cell
    seeds: 5                           # seeds 0..4, or an explicit list [0, 1, 2]
    split: test                        # the split reported (default test; selection is on dev)
    models:
      - sgmft                          # a registered model name
      - name: sgmft-no-coarse          # any name; trains model.name from the overrides/config
        overrides: [model.coarse_similarity=false]
      - {name: text-only, model: text_mlp}
      - {name: zeroshot-image, kind: zeroshot, modality: image, prompts: prompts.yaml}
      - {name: linear-probe, kind: linear_probe, Cs: [0.01, 0.1, 1, 10]}

Every trained cell goes through `semloc.runs.train_run` into OUT/<store-key>/<model>/seed-<k>/
and is evaluated by `evaluate_runs`; the training-free baselines (deterministic, one cell per
store) go to OUT/<store-key>/<model>/run/. A cell whose eval-SPLIT/metrics.json exists is finished
and skipped; one interrupted in training resumes from its last.pt. Each cell records what it is
(cell.json: resolved config, seed, store manifest hash), and a cell directory holding something
else is refused instead of silently mixed into the table.

Outputs in OUT/ (see `semloc.experiment_report`): results.md and results.csv (rewritten
atomically after every cell), results.json (per-row aggregates and every cell's metrics) and
results.png (macro-F1 per model with std error bars) or, for a series of stores, noise.png
(macro-F1 against x, one line per model, ± std bands).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from semloc.config import Config, config_to_dict, flatten_dict, load_config, read_config_file
from semloc.data.records import SPLITS
from semloc.errors import ConfigError, SemlocError
from semloc.experiment_report import format_duration, plot_results, write_tables
from semloc.features.store import FeatureStore
from semloc.io import atomic_write_json
from semloc.metrics import SUMMARY_KEYS, aggregate
from semloc.models import MODEL_NAMES, build_model
from semloc.probes.zeroshot import MODALITIES, EncodeTexts, load_prompts, text_encoder_for_store
from semloc.tracking import TrackedRun, log_evaluation

log = logging.getLogger(__name__)

KINDS = ("train", "zeroshot", "linear_probe")
DEFAULT_SEEDS = 5
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
_GRID_KEYS = {
    "name",
    "store",
    "stores",
    "x_label",
    "config",
    "overrides",
    "seeds",
    "split",
    "models",
}
_MODEL_KEYS = {
    "train": {"name", "kind", "model", "overrides"},
    "zeroshot": {"name", "kind", "modality", "prompts"},
    "linear_probe": {"name", "kind", "Cs", "max_iter"},
}
# settings that change how a run is executed, not what it computes: a cell stays the same cell
_NOT_IDENTITY = {
    "progress",
    "device",
    "num_workers",
    "eval_batch_size",
    "num_threads",
    "report_to",
    "tracking_dir",
}


# ----------------------------------------------------------------------------------------------
# the grid


@dataclass(frozen=True)
class StoreSpec:
    key: str  # directory name under OUT
    path: Path
    x: float | None = None  # the varied quantity of a noise study


@dataclass(frozen=True)
class ModelSpec:
    name: str  # row name in the table and directory name
    kind: str = "train"  # train | zeroshot | linear_probe
    overrides: tuple[str, ...] = ()  # trained models: dotted config overrides
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # training-free options


@dataclass
class Grid:
    name: str
    stores: list[StoreSpec]
    models: list[ModelSpec]
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)  # shared, before each model's own
    final_overrides: list[str] = field(default_factory=list)  # the caller's, after the model's
    config: Path | None = None
    split: str = "test"
    x_label: str = "x"

    @property
    def is_series(self) -> bool:
        """Stores along a varied quantity x (a noise study) rather than one store."""
        return any(s.x is not None for s in self.stores)


def _error(where: str, message: str) -> ConfigError:
    return ConfigError(f"grid {where}: {message}")


def _string_list(value: Any, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _error(where, f"'{key}' must be a list of strings like section.key=value")
    return list(value)


def _split(value: Any, where: str) -> str:
    if value is None:
        return "test"
    if not isinstance(value, str) or value not in SPLITS:
        raise _error(where, f"'split' must be one of {', '.join(SPLITS)}, got {value!r}")
    return value


def _seeds(value: Any, where: str) -> list[int]:
    if value is None:
        return list(range(DEFAULT_SEEDS))
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and len(set(value)) == len(value)
    ):
        return list(value)
    raise _error(
        where, f"'seeds' must be a positive count or a list of distinct integers: {value!r}"
    )


def _store_key(text: str) -> str:
    key = re.sub(r"[^A-Za-z0-9_.+=-]+", "-", text).strip("-.") or "store"
    return key


def _parse_stores(data: dict[str, Any], where: str, base: Path) -> list[StoreSpec]:
    if ("store" in data) == ("stores" in data):
        raise _error(where, "give exactly one of 'store' (a path) or 'stores' (a list)")
    if "store" in data:
        if not isinstance(data["store"], str) or not data["store"]:
            raise _error(where, "'store' must be a feature store path")
        path = base / data["store"]
        return [StoreSpec(key=_store_key(path.resolve().name), path=path)]
    entries = data["stores"]
    if not isinstance(entries, list) or not entries:
        raise _error(where, "'stores' must be a non-empty list of {x: NUMBER, store: PATH}")
    stores = []
    for i, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or set(entry) - {"x", "store", "key"}
            or not isinstance(entry.get("store"), str)
        ):
            raise _error(
                where, f"stores[{i}] must look like {{x: 0.2, store: PATH}} (key optional)"
            )
        x = entry.get("x")
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
            raise _error(where, f"stores[{i}].x must be a number, got {x!r}")
        key = entry.get("key") or (f"x-{x:g}" if x is not None else None)
        key = key or _store_key(Path(entry["store"]).resolve().name)
        if not _SAFE_NAME.match(str(key)):
            raise _error(where, f"stores[{i}].key {key!r} is not a safe directory name")
        stores.append(
            StoreSpec(key=str(key), path=base / entry["store"], x=None if x is None else float(x))
        )
    keys = [s.key for s in stores]
    if len(set(keys)) != len(keys):
        raise _error(where, f"store keys must be distinct, got {keys}")
    with_x = [s.x is not None for s in stores]
    if len(stores) > 1 and not all(with_x):
        raise _error(where, "a list of stores is a series: every entry needs its x value")
    return stores


def _parse_model(entry: Any, i: int, where: str, base: Path) -> ModelSpec:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise _error(where, f"models[{i}] must be a model name or a mapping with a 'name'")
    name, kind = entry["name"], entry.get("kind", "train")
    if not _SAFE_NAME.match(name):
        raise _error(where, f"models[{i}].name {name!r} must be usable as a directory name")
    if kind not in KINDS:
        raise _error(where, f"models[{i}] ({name}): kind {kind!r} is not one of {', '.join(KINDS)}")
    unknown = set(entry) - _MODEL_KEYS[kind]
    if unknown:
        raise _error(
            where,
            f"models[{i}] ({name}): unknown key(s) {', '.join(sorted(unknown))} for kind {kind} "
            f"(known: {', '.join(sorted(_MODEL_KEYS[kind]))})",
        )
    if kind == "train":
        overrides = _string_list(entry.get("overrides"), where, f"models[{i}].overrides")
        model = entry.get("model") or (name if name in MODEL_NAMES else None)
        if model is not None:
            overrides = [f"model.name={model}", *overrides]
        return ModelSpec(name=name, kind=kind, overrides=tuple(overrides))
    options: dict[str, Any] = {}
    if kind == "zeroshot":
        options["modality"] = entry.get("modality", "image")
        if options["modality"] not in MODALITIES:
            raise _error(where, f"models[{i}] ({name}): modality must be one of {MODALITIES}")
        if entry.get("prompts") is not None:
            if not isinstance(entry["prompts"], str) or not entry["prompts"]:
                raise _error(where, f"models[{i}] ({name}): prompts must be a prompts file path")
            options["prompts"] = str(base / entry["prompts"])
            try:  # a bad prompts file is refused before any cell runs
                load_prompts(options["prompts"])
            except SemlocError as e:
                raise _error(where, f"models[{i}] ({name}): {e}") from None
    else:
        if "Cs" in entry:
            Cs = entry["Cs"]
            if not isinstance(Cs, list) or not Cs or not all(_positive(c) for c in Cs):
                raise _error(where, f"models[{i}] ({name}): Cs must be a list of positive numbers")
            options["Cs"] = [float(c) for c in Cs]
        if "max_iter" in entry:
            max_iter = entry["max_iter"]
            if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
                raise _error(
                    where,
                    f"models[{i}] ({name}): max_iter must be a positive integer, got {max_iter!r}",
                )
            options["max_iter"] = max_iter
    return ModelSpec(name=name, kind=kind, options=options)


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0 and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def load_grid(
    grid: dict[str, Any] | str | Path,
    *,
    store: str | Path | None = None,
    seeds: int | Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    config: str | Path | None = None,
    split: str | None = None,
) -> Grid:
    """Parse and check a grid (a file or a mapping); keyword arguments replace its entries.

    `store` replaces a grid's single store (or supplies it), `seeds` its seeds, `config` its
    config file, `split` the split it reports (so one grid serves selection on dev and the final
    table on test); `overrides` apply to every trained cell after the grid's and the model's
    own."""
    if isinstance(grid, dict):
        data, where, base, stem = dict(grid), "<dict>", Path("."), "grid"
    else:
        path = Path(grid)
        data, where, base, stem = read_config_file(path), str(path), path.parent, path.stem
    unknown = set(data) - _GRID_KEYS
    if unknown:
        raise _error(
            where,
            f"unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_GRID_KEYS))})",
        )
    for key in ("name", "x_label", "config"):
        if data.get(key) is not None and not (isinstance(data[key], str) and data[key]):
            raise _error(where, f"'{key}' must be a non-empty string, got {data[key]!r}")
    if store is not None:
        if isinstance(data.get("stores"), list) and len(data["stores"]) > 1:
            raise _error(where, "--store replaces a single store; this grid lists a series")
        data.pop("stores", None)
        data["store"] = str(Path(store).resolve())  # absolute: not relative to the grid file
    stores = _parse_stores(data, where, base)
    models_raw = data.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise _error(where, "'models' must be a non-empty list")
    models = [_parse_model(m, i, where, base) for i, m in enumerate(models_raw)]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise _error(where, f"model names must be distinct, got {names}")
    if seeds is not None:
        seed_list = _seeds(seeds if isinstance(seeds, int) else list(seeds), "--seeds")
    else:
        seed_list = _seeds(data.get("seeds"), where)
    config_path = (
        Path(config) if config else (base / data["config"] if data.get("config") else None)
    )
    return Grid(
        name=str(data.get("name") or stem),
        stores=stores,
        models=models,
        seeds=seed_list,
        overrides=_string_list(data.get("overrides"), where, "overrides"),
        final_overrides=list(overrides),
        config=config_path,
        split=_split(data.get("split"), where) if split is None else _split(split, "--split"),
        x_label=str(data.get("x_label", "x")),
    )


# ----------------------------------------------------------------------------------------------
# cells


@dataclass
class Cell:
    store: StoreSpec
    model: ModelSpec
    seed: int | None  # None for the deterministic training-free baselines
    dir: Path


def grid_cells(grid: Grid, out_dir: str | Path) -> list[Cell]:
    """Every cell, stores outermost, then seeds, then models: each seed completes a comparison."""
    out = Path(out_dir)
    cells = []
    for store in grid.stores:
        for k, seed in enumerate(grid.seeds):
            for model in grid.models:
                base = out / store.key / model.name
                if model.kind == "train":
                    cells.append(Cell(store, model, seed, base / f"seed-{seed}"))
                elif k == 0:
                    cells.append(Cell(store, model, None, base / "run"))
    return cells


def cell_config(grid: Grid, cell: Cell) -> Config:
    """The resolved config of a trained cell: grid config file, shared, model, seed overrides."""
    overrides = [
        *grid.overrides,
        *cell.model.overrides,
        *grid.final_overrides,
        f"train.seed={cell.seed}",
    ]
    return load_config(grid.config, overrides)


def _identity(grid: Grid, cell: Cell, store: FeatureStore) -> dict[str, Any]:
    """What a cell computes; a directory holding another cell is refused, not reused."""
    ident: dict[str, Any] = {
        "kind": cell.model.kind,
        "name": cell.model.name,
        "store_manifest_sha256": store.manifest_sha256,
        "split": grid.split,
    }
    if cell.model.kind == "train":
        cfg = config_to_dict(cell_config(grid, cell))
        ident["model"] = cfg["model"]
        ident["train"] = {k: v for k, v in cfg["train"].items() if k not in _NOT_IDENTITY}
    else:
        ident["options"] = cell.model.options
    return ident


def _metrics_path(cell: Cell, split: str) -> Path:
    return cell.dir / f"eval-{split}" / "metrics.json"


def _check_identity(cell: Cell, ident: dict[str, Any]) -> None:
    path = cell.dir / "cell.json"
    if path.exists():
        saved = json.loads(path.read_text())
        now = json.loads(json.dumps(ident, default=str))
        if saved != now:
            a, b = flatten_dict(saved), flatten_dict(now)
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise SemlocError(
                f"{cell.dir} holds a cell computed with other settings ({', '.join(changed)} "
                "differ: a changed grid, config or store); use another --out or delete that "
                "directory"
            )
    elif cell.dir.exists() and any(cell.dir.iterdir()):
        raise SemlocError(f"{cell.dir} exists and is not a cell of this grid; use another --out")


def _device_name(cfg: Config) -> str:
    from semloc.config import resolve_device

    return resolve_device(cfg.train.device, "train.device")


def _tracked_cell(grid: Grid, cell: Cell) -> TrackedRun:
    """A cell as a tracked run (train.report_to): named and tagged by its grid coordinates."""
    tags: dict[str, Any] = {
        "grid": grid.name,
        "store": cell.store.key,
        "model": cell.model.name,
        "kind": cell.model.kind,
        "split": grid.split,
    }
    if cell.store.x is not None:
        tags[grid.x_label] = cell.store.x
    if cell.seed is not None:
        tags["seed"] = cell.seed
    return TrackedRun(
        experiment=grid.name, name=f"{cell.store.key}/{cell.model.name}/{cell.dir.name}", tags=tags
    )


def _track_cell(grid: Grid, cell: Cell, out: Path, metrics: dict[str, Any]) -> None:
    """Log a finished cell's evaluation to its tracked run (trained cells: the training's)."""
    cfg = (
        cell_config(grid, cell)
        if cell.model.kind == "train"
        else load_config(grid.config, [*grid.overrides, *grid.final_overrides])
    )
    if cfg.train.report_to:
        log_evaluation(
            cfg.train.report_to,
            cell.dir,
            metrics,
            split=grid.split,
            tracking_dir=cfg.train.tracking_dir or out,
            run=_tracked_cell(grid, cell),
        )


def _run_cell(
    grid: Grid, cell: Cell, encoders: dict[str, EncodeTexts], plots: bool, out: Path
) -> dict[str, Any]:
    from semloc.evaluation import evaluate_runs
    from semloc.probes.linear_probe import run_linear_probe
    from semloc.probes.zeroshot import evaluate_zero_shot
    from semloc.runs import train_run

    if cell.model.kind == "train":
        cfg = cell_config(grid, cell)
        # every cell's tracked run goes to one store for the grid (default: its output dir)
        cfg.train.tracking_dir = cfg.train.tracking_dir or str(out)
        last = cell.dir / "last.pt"
        # without last.pt nothing can be resumed: start afresh (overwrite drops a lone best.pt
        # left by a kill between the two checkpoint writes of the first epoch)
        train_run(
            cell.store.path,
            cfg,
            cell.dir,
            resume=last.exists(),
            overwrite=True,
            tracked=_tracked_cell(grid, cell),
        )
        result = evaluate_runs(
            [cell.dir],
            grid.split,
            store_path=cell.store.path,
            plots=plots,
            device=_device_name(cfg),
        )
        return result["runs"][0]
    if cell.model.kind == "zeroshot":
        return evaluate_zero_shot(
            cell.store.path,
            grid.split,
            modality=cell.model.options["modality"],
            prompts=cell.model.options.get("prompts"),
            encode_texts=encoders[cell.store.key],
            out_dir=cell.dir,
            name=cell.model.name,
        )
    return run_linear_probe(
        cell.store.path,
        grid.split,
        out_dir=cell.dir,
        name=cell.model.name,
        **cell.model.options,
    )


def _train_seconds(cell: Cell, metrics: dict[str, Any]) -> float:
    if cell.model.kind == "train":
        history = cell.dir / "history.json"
        if history.exists():
            return float(sum(h.get("seconds", 0.0) for h in json.loads(history.read_text())))
        return float("nan")
    return float(metrics.get("train_seconds", 0.0))


# ----------------------------------------------------------------------------------------------
# running


@dataclass
class GridResults:
    """What `run_grid` returns: one row per (store, model), and every cell's metrics."""

    grid: Grid
    out_dir: Path
    rows: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    files: dict[str, Path]

    def row(self, model: str, store: str | None = None) -> dict[str, Any]:
        for r in self.rows:
            if r["model"] == model and (store is None or r["store"] == store):
                return r
        raise KeyError(model)


def run_grid(
    grid: Grid | dict[str, Any] | str | Path,
    out_dir: str | Path,
    *,
    encode_texts: EncodeTexts | None = None,
    plots: bool = True,
    dry_run: bool = False,
) -> GridResults:
    """Run (or resume) every cell of `grid` into `out_dir` and write the results table and plot.

    encode_texts: the CLIP text encoder for zero-shot cells, for every store; by default each
    store's own backbone is loaded from local files. plots: per-cell confusion/per-class plots
    (the grid's own plot is always drawn). dry_run: log each cell's state, run nothing."""
    if not isinstance(grid, Grid):
        grid = load_grid(grid)
    out = Path(out_dir)
    cells = grid_cells(grid, out)
    stores = {}
    for spec in grid.stores:
        stores[spec.key] = FeatureStore(spec.path)  # fail now, not after hours of other cells
    _check_models(grid, cells, stores)
    todo = [c for c in cells if not _metrics_path(c, grid.split).exists()]
    encoders = {} if dry_run else _zero_shot_encoders(todo, stores, encode_texts)
    log.info(
        "grid %s: %d cells (%d stores x %d models x %d seeds), %d finished, %d to run -> %s",
        grid.name,
        len(cells),
        len(grid.stores),
        len(grid.models),
        len(grid.seeds),
        len(cells) - len(todo),
        len(todo),
        out,
    )
    # check every cell directory before running any, so a changed grid fails at once
    idents = [_identity(grid, cell, stores[cell.store.key]) for cell in cells]
    for cell, ident in zip(cells, idents, strict=True):
        _check_identity(cell, ident)
    durations: dict[str, list[float]] = {}
    remaining = len(todo)
    t_start = time.perf_counter()
    for n, (cell, ident) in enumerate(zip(cells, idents, strict=True), 1):
        label = f"[{n}/{len(cells)}] {cell.store.key}/{cell.model.name}" + (
            f" seed {cell.seed}" if cell.seed is not None else ""
        )
        metrics_path = _metrics_path(cell, grid.split)
        if metrics_path.exists():
            m = _read_json(metrics_path)
            log.info("%s: finished earlier, %s macro-F1 %.4f", label, grid.split, m["macro_f1"])
            continue
        if dry_run:
            state = "interrupted, will resume" if (cell.dir / "last.pt").exists() else "to run"
            log.info("%s: %s", label, state)
            continue
        cell.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cell.dir / "cell.json", ident)
        t0 = time.perf_counter()
        m = _run_cell(grid, cell, encoders, plots, out)
        _track_cell(grid, cell, out, m)
        seconds = time.perf_counter() - t0
        durations.setdefault(cell.model.name, []).append(seconds)
        remaining -= 1
        eta = _eta(todo[len(todo) - remaining :], durations)
        log.info(
            "%s: %s macro-F1 %.4f, accuracy %.4f (%s); %d left, elapsed %s, ETA %s",
            label,
            grid.split,
            m["macro_f1"],
            m["accuracy"],
            format_duration(seconds),
            remaining,
            format_duration(time.perf_counter() - t_start),
            format_duration(eta),
        )
        write_tables(grid, collect(grid, cells)[0], out)  # partial results are readable meanwhile
    rows, per_cell = collect(grid, cells)
    files: dict[str, Path] = {}
    if rows and not dry_run:
        files = write_tables(grid, rows, out)
        files["plot"] = plot_results(grid, rows, out)
        files["json"] = out / "results.json"
        atomic_write_json(
            files["json"],
            {"grid": grid.name, "split": grid.split, "rows": rows, "cells": per_cell},
        )
    return GridResults(grid=grid, out_dir=out, rows=rows, cells=per_cell, files=files)


def _eta(todo: list[Cell], durations: dict[str, list[float]]) -> float:
    """Seconds left: each remaining cell costs what its model's cells cost so far (else the
    mean over all models), since models differ in cost by orders of magnitude."""
    if not durations:
        return float("nan")
    overall = [s for v in durations.values() for s in v]
    mean_all = sum(overall) / len(overall)
    total = 0.0
    for cell in todo:
        done = durations.get(cell.model.name)
        total += sum(done) / len(done) if done else mean_all
    return total


def _check_models(grid: Grid, cells: list[Cell], stores: dict[str, FeatureStore]) -> None:
    """Build every trained model once on the meta device, so a bad config fails before training."""
    seen: set[str] = set()
    for cell in cells:
        if cell.model.kind != "train" or cell.model.name in seen:
            continue
        seen.add(cell.model.name)
        store = stores[cell.store.key]
        try:
            cfg = cell_config(grid, cell)  # value errors (model.dim=-1) are named here too
            with torch.device("meta"):
                build_model(cfg.model, store.dims, max(2, len(store.labels)))
        except ConfigError as e:
            raise ConfigError(f"grid model {cell.model.name}: {e}") from None


def _zero_shot_encoders(
    todo: list[Cell], stores: dict[str, FeatureStore], encode_texts: EncodeTexts | None
) -> dict[str, EncodeTexts]:
    """A text encoder for each store with zero-shot cells to run, loaded once per distinct
    backbone, and up front, so a missing backbone fails before hours of training."""
    encoders: dict[str, EncodeTexts] = {}
    by_backbone: dict[str, EncodeTexts] = {}
    for cell in todo:
        if cell.model.kind != "zeroshot" or cell.store.key in encoders:
            continue
        if encode_texts is not None:
            encoders[cell.store.key] = encode_texts
            continue
        store = stores[cell.store.key]
        backbone = repr(sorted((store.manifest.get("backbone") or {}).items()))
        if backbone not in by_backbone:
            by_backbone[backbone] = text_encoder_for_store(store)
        encoders[cell.store.key] = by_backbone[backbone]
    return encoders


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------------
# aggregation


def collect(grid: Grid, cells: list[Cell]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows (store, model) aggregated over the finished cells, and the finished cells' metrics."""
    per_cell: list[dict[str, Any]] = []
    for cell in cells:
        path = _metrics_path(cell, grid.split)
        if not path.exists():
            continue
        m = _read_json(path)
        per_cell.append(
            {
                "store": cell.store.key,
                "x": cell.store.x,
                "model": cell.model.name,
                "kind": cell.model.kind,
                "seed": cell.seed,
                "dir": str(cell.dir),
                "num_params": m.get("num_params"),
                "train_seconds": _train_seconds(cell, m),
                **{k: m[k] for k in SUMMARY_KEYS if k in m},
            }
        )
    rows = []
    for store in grid.stores:
        for model in grid.models:
            runs = [c for c in per_cell if c["store"] == store.key and c["model"] == model.name]
            if not runs:
                continue
            agg = aggregate(runs)
            times = [c["train_seconds"] for c in runs if math.isfinite(c["train_seconds"])]
            rows.append(
                {
                    "store": store.key,
                    "x": store.x,
                    "store_path": str(store.path),
                    "model": model.name,
                    "kind": model.kind,
                    "runs": agg.pop("num_runs"),
                    **agg,
                    "num_params": runs[0]["num_params"],
                    "train_seconds": sum(times) / len(times) if times else float("nan"),
                }
            )
    return rows, per_cell
