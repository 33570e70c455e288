"""Feature extraction and batch prediction on Ray Data: the same store, many machines.

    semloc extract POSTS --backbone CLIP --out STORE extract.engine=ray [extract.ray_address=...]

The pipeline, one row per CLIP batch::

    driver: read + validate the posts (the local reader), cut shards and batches as the local path
      -> Ray tasks:  tokenize, decode and resize the images of one batch     (`PostLoader`)
      -> actor pool: one CLIP per actor (a GPU each when the cluster has GPUs) encodes the batch
                     and applies the image policy                           (`encode_batch`)
      -> driver: collects the batches of a shard, commits it atomically      (`StoreExtraction`)

On CPU-only actor pools the loading step runs inside each actor instead (`extract.ray_decode`):
a CPU core decodes or encodes either way, and decoding in the actor spares the object-store round
trip of every batch's pixels and the task workers around it.

Identical to the single-process path by construction: the per-batch functions are the ones
`semloc.clip.extract` runs, the shards are the same input-position ranges, and the batches are the
same index lists (CLIP batches never cross a shard), so each float is computed from the same
inputs in the same batch. Shards arrive in any order and are committed by name; the manifest is
written once every shard is there. Idempotent per shard: a run that dies (driver, worker, or a
`fail` image policy) keeps its committed shards, and the same command completes the missing ones
only. A store may even be started by one engine and finished by the other.

Inputs: one posts file (exactly the local semantics, including the recorded posts hash), or a
directory / glob of CSV, JSONL or Parquet files, read in sorted path order as if concatenated
(images relative to their own file; a seeded split, when no file has a split column, is made over
all of them).

On a cluster every node must see the backbone directory, the images and the output directory at
the same paths (a shared file system), and have semloc installed; see docs/scale.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semloc.clip.backbone import Backbone, load_backbone
from semloc.clip.extract import (
    EncodedPosts,
    ExtractionResult,
    ImageError,
    LoadedBatch,
    PostLoader,
    PostOutcome,
    StoreExtraction,
    check_bf16,
    encode_batch,
    extraction_backbone,
    extraction_progress,
    plan_batches,
    post_outcome,
    records_summary,
    run_record,
    to_feature_batch,
)
from semloc.config import DataConfig, ExtractConfig
from semloc.data.records import FORMATS, Post, PostTable, assign_splits, read_posts
from semloc.errors import DataError, SemlocError
from semloc.io import sha256_file
from semloc.outputs import Predictions, model_outputs

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# inputs


@dataclass
class PostInputs:
    """Validated posts of one or more files, in input order."""

    posts: list[Post]
    images: list[Path | None]  # resolved image path of each post
    files: list[Path]
    sha256: str  # of the single file, or of its `name sha256` lines for several
    tables: list[PostTable]  # what the reader found in each file

    def record(self, cfg: ExtractConfig, data_cfg: DataConfig) -> dict[str, Any]:
        """What pins the shard layout: the local path's run record (for one file, identical)."""
        return run_record(self.sha256, len(self.posts), cfg, data_cfg)

    def records_summary(self, data_cfg: DataConfig) -> dict[str, Any]:
        """The manifest's reading summary, summed over the files (the local path's for one)."""
        return records_summary(self.tables, data_cfg)


def input_files(spec: str | Path) -> list[Path]:
    """A posts file, a directory of posts files, or a glob, as a sorted list of files."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
        where = f"directory {path}"
    else:
        files = sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).is_file())
        where = f"pattern {str(spec)!r}"
        if not glob.has_magic(str(spec)):
            raise SemlocError(f"posts file {spec} does not exist")
    if not files:
        raise SemlocError(f"{where} matches no posts files ({', '.join(FORMATS)})")
    return files


def read_inputs(
    spec: str | Path, data_cfg: DataConfig | None = None, *, require_labels: bool = False
) -> PostInputs:
    """Read and validate every file of `spec` with the local reader, as one table."""
    data_cfg = data_cfg or DataConfig()
    files = input_files(spec)
    if len(files) == 1:
        table = read_posts(files[0], data_cfg=data_cfg, require_labels=require_labels)
        images = [p.image_path(table.base_dir) for p in table.records]
        return PostInputs(table.records, images, files, sha256_file(files[0]), [table])
    posts: list[Post] = []
    images: list[Path | None] = []
    assigned: list[bool] = []
    first_seen: dict[str, str] = {}
    problems: list[str] = []
    tables: list[PostTable] = []
    for f in files:
        table = read_posts(f, data_cfg=data_cfg, require_labels=require_labels)
        tables.append(table)
        assigned.append(table.split_assigned)
        for p in table.records:
            where = f"{f.name} row {p.row}"
            if p.id in first_seen:
                problems.append(
                    f"{where}: duplicate id {p.id!r} (first seen at {first_seen[p.id]})"
                )
                continue
            first_seen[p.id] = where
            posts.append(p)
            images.append(p.image_path(table.base_dir))
    if problems:
        raise DataError(f"{len(problems)} duplicate id(s) across {len(files)} files", problems)
    if any(assigned) and not all(assigned):
        without = [f.name for f, a in zip(files, assigned, strict=True) if a]
        raise DataError(
            "some posts files have a split column and others do not",
            [f"no split column: {name}" for name in without],
        )
    if all(assigned):  # one seeded split over all files, not one per file
        assign_splits(posts, data_cfg)
    lines = "".join(f"{f.name} {sha256_file(f)}\n" for f in files)
    return PostInputs(posts, images, files, hashlib.sha256(lines.encode()).hexdigest(), tables)


# ----------------------------------------------------------------------------------------------
# Ray


@contextlib.contextmanager
def ray_session(address: str = "") -> Iterator[None]:
    """Connect to the Ray cluster at `address` ("auto", "HOST:PORT", "ray://HOST:10001"), or start
    a local instance when it is empty; a session the caller already opened is reused as is."""
    import ray

    if ray.is_initialized():
        yield
        return
    # a local instance for one command needs no dashboard; a cluster keeps its own settings
    local = {} if address else {"include_dashboard": False}
    try:
        ray.init(address=address or None, logging_level=logging.WARNING, **local)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise SemlocError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class ActorPlan:
    """How many CLIP actors, and what each reserves."""

    size: int
    num_gpus: float
    num_cpus: float
    threads: int  # torch threads per actor
    decode_in_actor: bool = False  # each actor loads its batches (no decoding tasks)

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus else "cpu"


def plan_actors(
    device: str = "auto", num_actors: int | None = None, decode: str = "auto"
) -> ActorPlan:
    """One actor per GPU when the cluster has GPUs and `device` is "auto", or always when it asks
    for CUDA (an autoscaling cluster adds GPU nodes for the actors' requests); else one
    single-threaded actor per CPU core.

    `decode` (`extract.ray_decode`): "tasks" decodes and resizes images in Ray tasks that feed
    the actors, "actors" inside each actor; "auto" is tasks: a GPU actor would idle while it
    decodes, and on CPU actors decoding in them cost 13-19 CPU-ms/post more than in tasks in
    two measured runs (docs/scale.md). "actors" spares the object store each batch's pixels.

    A CPU actor reserves half a CPU: on a small machine, actors reserving whole CPUs leave Ray
    Data no CPU to schedule the decoding tasks on and the pipeline stalls; physically each actor
    runs one torch thread, so one actor per core keeps every core on CLIP while decoding
    interleaves, as the local path's decoding workers do.
    """
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if device.startswith("cuda") or (gpus and device == "auto"):
        # Ray gives each actor its own GPU (CUDA_VISIBLE_DEVICES), which it sees as "cuda"
        return ActorPlan(
            size=num_actors or max(1, gpus),
            num_gpus=1,
            num_cpus=1,
            threads=1,
            decode_in_actor=decode == "actors",
        )
    cpus = int(resources.get("CPU", 1))
    return ActorPlan(
        size=num_actors or max(1, cpus),
        num_gpus=0,
        num_cpus=0.5,
        threads=1,
        decode_in_actor=decode == "actors",
    )


def _payload(obj: Any) -> bytes:
    # Arrow has no type for these ragged per-batch records; pickled they travel as binary cells
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass
class _BatchSpec:
    """One CLIP batch of posts (a `plan_batches` entry): what the loading task needs."""

    indices: list[int]
    texts: list[str]
    images: list[str | None]
    outcomes: list[PostOutcome]


def _batch_specs(inputs: PostInputs, batches: Sequence[list[int]]) -> list[_BatchSpec]:
    return [
        _BatchSpec(
            indices=idx,
            texts=[inputs.posts[i].text for i in idx],
            images=[str(inputs.images[i]) if inputs.images[i] is not None else None for i in idx],
            outcomes=[post_outcome(i, inputs.posts[i]) for i in idx],
        )
        for idx in batches
    ]


def _load_spec(spec: _BatchSpec, loader: PostLoader) -> LoadedBatch:
    """Tokenize, decode and resize the images of one batch (the local worker code)."""
    images = [Path(img) if img else None for img in spec.images]
    return loader.load_batch(spec.indices, spec.texts, images)


def _load_batch(row: dict[str, Any], loader: PostLoader) -> dict[str, Any]:
    """Ray task: one batch loaded, for an actor that does not decode (`ActorPlan.decode_in_actor`)."""
    spec: _BatchSpec = pickle.loads(row["payload"])
    return {"payload": _payload((spec, _load_spec(spec, loader)))}


class _ClipActor:
    """Ray actor: one CLIP, loaded once, encodes loaded batches (the local main-process code)."""

    def __init__(
        self,
        cfg: ExtractConfig,
        weights_sha256: str,
        device: str,
        threads: int,
        loader: PostLoader | None = None,
    ) -> None:
        torch.set_num_threads(threads)
        backbone = load_backbone(
            cfg.backbone, allow_network=cfg.allow_network, bf16=cfg.bf16, device=device
        )
        self._setup(backbone, weights_sha256, cfg.image_policy, loader)

    def _setup(
        self, backbone: Backbone, weights_sha256: str, policy: str, loader: PostLoader | None
    ) -> None:
        if backbone.weights_sha256 != weights_sha256:
            # another file at the same path on this node: its features would be foreign
            raise SemlocError(
                f"backbone {backbone.path!r} on this Ray node has weights "
                f"{backbone.weights_sha256[:12]}..., the driver's has {weights_sha256[:12]}..."
            )
        self.backbone, self.policy, self.loader = backbone, policy, loader
        self.checked_bf16 = not backbone.bf16

    def unpack(self, cell: bytes) -> tuple[_BatchSpec, LoadedBatch]:
        """A row's batch, loaded here when this actor decodes (`loader`), else by a Ray task."""
        if self.loader is None:
            return pickle.loads(cell)
        spec: _BatchSpec = pickle.loads(cell)
        return spec, _load_spec(spec, self.loader)

    def encode(self, spec: _BatchSpec, loaded: LoadedBatch) -> EncodedPosts | str:
        """The batch's features (its outcomes updated in `spec`), or the `fail` policy's message."""
        if not self.checked_bf16:
            check_bf16(self.backbone, loaded)
            self.checked_bf16 = True
        try:
            return encode_batch(
                self.backbone, loaded, self.policy, {o.index: o for o in spec.outcomes}
            )
        except ImageError as e:  # travels as data, so the driver raises the user's error
            return str(e)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for cell in batch["payload"]:
            spec, loaded = self.unpack(cell)
            out.append(_payload(([spec], self.encode(spec, loaded))))
        return {"payload": np.array(out, dtype=object)}


class _PredictActor(_ClipActor):
    """Ray actor: a trained run and its CLIP. Encodes the CLIP batches of one call, then runs the
    model on them in calls of `batch_size` posts through `semloc.outputs.model_outputs`."""

    def __init__(
        self,
        run: str,
        backbone_override: str | None,
        cfg: ExtractConfig,
        weights_sha256: str,
        device: str,
        threads: int,
        batch_size: int,
        loader: PostLoader | None = None,
    ) -> None:
        from semloc.prediction import load_run_backbone
        from semloc.runs import load_run

        torch.set_num_threads(threads)
        self.run = load_run(run, device)
        backbone = load_run_backbone(
            self.run, backbone_override, allow_network=cfg.allow_network, device=device
        )
        self._setup(backbone, weights_sha256, cfg.image_policy, loader)
        self.dtype = self.run.feature_header["dtype"]
        self.batch_size = max(1, batch_size)

    @torch.inference_mode()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        specs, enc = [], EncodedPosts()
        for cell in batch["payload"]:
            spec, loaded = self.unpack(cell)
            result = self.encode(spec, loaded)
            if isinstance(result, str):
                return {"payload": np.array([_payload(([spec], result))], dtype=object)}
            specs.append(spec)
            enc.extend(result)
        preds = None
        if enc.indices:
            # rounded through the storage dtype: the numbers the model was trained on
            fb = to_feature_batch(enc, self.backbone, self.dtype)
            step = self.batch_size
            pieces = (
                fb.select(list(range(s, min(s + step, len(fb))))) for s in range(0, len(fb), step)
            )
            preds = model_outputs(
                self.run.model, pieces, self.backbone.device, temperature=self.run.temperature
            )
        return {"payload": np.array([_payload((specs, preds))], dtype=object)}


def _pipeline(
    specs: list[_BatchSpec],
    loader: PostLoader,
    actor: type,
    actor_kwargs: dict[str, Any],
    plan: ActorPlan,
    rows_per_call: int = 1,
) -> Iterator[tuple[list[_BatchSpec], Any]]:
    """(specs, actor result) of every actor call (`rows_per_call` CLIP batches each), in
    completion order. The batches are loaded by Ray tasks, or by the actors themselves when
    `plan.decode_in_actor` (`loader` is then passed to the actor's constructor)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's tqdm bar counts posts
    ctx.execution_options.preserve_order = False  # shards are committed by name, in any order
    ds = ray.data.from_items(
        [{"payload": _payload(s)} for s in specs], override_num_blocks=len(specs)
    )
    if plan.decode_in_actor:
        actor_kwargs = {**actor_kwargs, "loader": loader}
    else:
        ds = ds.map(_load_batch, fn_kwargs={"loader": loader})
    ds = ds.map_batches(
        actor,
        fn_constructor_kwargs=actor_kwargs,
        batch_size=rows_per_call,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.size),
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
    )
    try:
        for row in ds.iter_rows():
            yield pickle.loads(row["payload"])
    except Exception as e:
        cause = _semloc_cause(e)
        if cause is not None:  # a clear user error raised inside a worker: say it plainly
            raise SemlocError(str(cause)) from None
        raise


def _semloc_cause(e: BaseException | None) -> SemlocError | None:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, SemlocError):
            return e
        cause = getattr(e, "cause", None)
        e = cause if isinstance(cause, BaseException) else (e.__cause__ or e.__context__)
    return None


# ----------------------------------------------------------------------------------------------
# extraction


def run_ray_extraction(
    posts: str | Path,
    out: str | Path,
    cfg: ExtractConfig,
    *,
    data_cfg: DataConfig | None = None,
    backbone: Backbone | None = None,
    num_actors: int | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> ExtractionResult:
    """`extract_to_store` on Ray: the same store, from a posts file, directory or glob.

    Connects to `cfg.ray_address` (empty: a local Ray instance). `cfg.backbone` is what every
    actor loads, on `cfg.device` (see `plan_actors`); `backbone` (optional) is the driver's copy
    of it. `num_actors` overrides the actor pool size (default: one per GPU, else one per CPU
    core). `on_shard(k)` runs after shard k is committed.
    """
    data_cfg = data_cfg or DataConfig()
    if not cfg.backbone:
        raise SemlocError(
            "no backbone given: pass --backbone DIR_OR_HUB_ID (extract.backbone names the CLIP "
            "every Ray actor loads)"
        )
    inputs = read_inputs(posts, data_cfg)
    # the driver needs the header, the tokenizer and the preprocessing; the towers run in actors
    backbone = extraction_backbone(cfg, backbone, device="cpu")
    cfg = dataclasses.replace(cfg, bf16=backbone.bf16)  # actors use what the driver resolved
    posts_file = inputs.files[0].resolve() if len(inputs.files) == 1 else Path(str(posts))
    job = StoreExtraction(
        out,
        inputs.posts,
        backbone,
        cfg,
        inputs.record(cfg, data_cfg),
        posts_file=posts_file,
        on_shard=on_shard,
    )
    if not job.batches:
        return job.finish(records=inputs.records_summary(data_cfg))
    with job.progress() as progress, ray_session(cfg.ray_address):
        plan = plan_actors(cfg.device, num_actors, cfg.ray_decode)
        actor_kwargs = {
            "cfg": cfg,
            "weights_sha256": backbone.weights_sha256,
            "device": plan.device,
            "threads": plan.threads,
        }
        specs = _batch_specs(inputs, job.batches)
        loader = PostLoader.for_backbone(backbone, cfg.max_image_pixels)
        for (spec,), enc in _pipeline(specs, loader, _ClipActor, actor_kwargs, plan):
            if isinstance(enc, str):
                raise ImageError(enc)
            job.add(spec.indices, enc, spec.outcomes)
            progress.update(len(spec.indices))
    return job.finish(records=inputs.records_summary(data_cfg))


# ----------------------------------------------------------------------------------------------
# batch prediction


def run_ray_prediction(
    run: str | Path,
    posts: str | Path,
    output: str | Path,
    cfg: ExtractConfig,
    *,
    backbone_override: str | None = None,
    data_cfg: DataConfig | None = None,
    num_actors: int | None = None,
    batch_size: int = 256,
    device: str | None = None,
) -> dict[str, int]:
    """`semloc predict RUN POSTS` on Ray: the predictions table `semloc.prediction.predict_posts` gives.

    Each actor holds the run's model and its CLIP (from the checkpoint's `backbone_path`, or
    `backbone_override`; verified against the run's feature header, as the local path does), on
    `device` (default `cfg.device`; see `plan_actors`). Features are computed in the local path's
    CLIP batches (`cfg.batch_size`) exactly as extraction computes them and rounded through the
    run's storage dtype; the model runs on them in calls of `batch_size` posts, through
    `semloc.outputs.model_outputs`, so probabilities equal the local path's up to float rounding
    of the model's batched arithmetic. Returns post counts per image outcome, like
    `PostPredictions.counts`.
    """
    from semloc.prediction import (
        load_run_backbone,
        outcome_counts,
        post_prediction_columns,
        write_predictions,
    )
    from semloc.runs import load_run, resolve_checkpoint

    loaded = load_run(run, "cpu")
    # the driver's copy checks the CLIP once, here, and gives the tokenizer and preprocessing
    backbone = load_run_backbone(loaded, backbone_override, allow_network=cfg.allow_network)
    inputs = read_inputs(posts, data_cfg)
    n = len(inputs.posts)
    clip_batch = max(1, cfg.batch_size)
    # prediction writes no store: one "shard" over all posts, cut into the local path's batches
    specs = _batch_specs(inputs, plan_batches(n, [0], max(n, 1), clip_batch))
    outcomes = [post_outcome(i, p) for i, p in enumerate(inputs.posts)]
    parts: list[Predictions] = []
    with extraction_progress(cfg.progress, n, 0) as progress, ray_session(cfg.ray_address):
        plan = plan_actors(device or cfg.device, num_actors, cfg.ray_decode)
        actor_kwargs = {
            "run": str(resolve_checkpoint(run).resolve()),
            "backbone_override": backbone_override,
            "cfg": cfg,
            "weights_sha256": backbone.weights_sha256,
            "device": plan.device,
            "threads": plan.threads,
            "batch_size": batch_size,
        }
        loader = PostLoader.for_backbone(backbone, cfg.max_image_pixels)
        # each actor call takes enough CLIP batches to fill one model call of `batch_size`
        rows = -(-max(1, batch_size) // clip_batch)
        for call_specs, result in _pipeline(
            specs, loader, _PredictActor, actor_kwargs, plan, rows_per_call=rows
        ):
            if isinstance(result, str):
                raise ImageError(result)
            for spec in call_specs:
                for o in spec.outcomes:
                    outcomes[o.index] = o
                progress.update(len(spec.indices))
            if result is not None:
                parts.append(result)
    # actor calls finish in any order; the table places each row by `preds.index`
    preds = Predictions.concat(parts, temperature=loaded.temperature)
    write_predictions(output, post_prediction_columns(inputs.posts, preds, loaded.labels, outcomes))
    return outcome_counts(outcomes)


__all__ = [
    "ActorPlan",
    "PostInputs",
    "input_files",
    "plan_actors",
    "ray_session",
    "read_inputs",
    "run_ray_extraction",
    "run_ray_prediction",
]
