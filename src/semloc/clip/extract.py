"""Posts -> frozen CLIP features: the resumable store extraction, and on-the-fly featurisation.

Both go through one code path (`_load_post` in worker processes, `_encode_batch` in the main
process), so features computed on the fly for `predict`/`serve` are the ones extraction writes.
(`semloc.scale.ray_extract` runs the same two functions in Ray tasks and actors.)

Extraction (`extract_to_store`):

* posts are processed in input order; shard k holds the posts at input positions
  [k * shard_size, (k + 1) * shard_size) that were not skipped. Shards are defined over input
  positions, not over surviving posts, so a resumed run cuts exactly the same shards;
* image decoding, resizing and tokenisation run in `extract.num_workers` DataLoader worker
  processes, prefetching while the main process runs the towers; batches are `batch_size`
  consecutive posts that never cross a shard, and each is padded only to its longest text;
* a shard is committed atomically (`FeatureStoreWriter.write_shard`), after its per-shard outcome
  record (image problems, truncations) has been written, so a run killed at any point (kill -9
  included) and restarted with the same command skips the committed shards and ends with the
  store an uninterrupted run writes;
* `extraction/run.json` pins what decides which posts land in which shard (posts file hash,
  shard size, image policy, pixel limit, split settings); resuming with different ones is refused
  rather than silently mixing two extractions.

On-the-fly (`featurize_posts`, `featurize_inputs`, `featurize_one`) returns a `FeatureBatch`.
Stores hold float16 by default; these functions round through the same storage dtype (`dtype`,
default `cfg.dtype`) so a served prediction sees the numbers the model saw offline. One caveat:
CPU/GPU matmuls give results that depend on the batch's shape in the last bits (~1e-6 in fp32),
so a post encoded in a batch of different composition (other padding length, other batch size)
can land one float16 step away in a few elements; extraction itself always forms the same
batches, so a resumed store is bit-identical.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from semloc.clip.backbone import Backbone, load_backbone
from semloc.clip.images import (
    IMAGE_REASONS,
    ImageProblem,
    check_image,
    load_image,
    load_image_bytes,
)
from semloc.config import DataConfig, ExtractConfig
from semloc.errors import SemlocError
from semloc.features.batch import FeatureBatch
from semloc.features.store import FeatureStoreWriter, ShardData
from semloc.io import atomic_write_json, sha256_file
from semloc.precision import resolve_bf16_flag

STATE_DIR = "extraction"  # per-shard outcome records + run.json, inside the store
REPORT_FILE = "image_report.json"


class ImageError(SemlocError):
    """A post's image is unusable and the policy is `fail`."""


@dataclass
class PostOutcome:
    """What happened to one input post."""

    index: int  # position in the input
    post_id: str
    row: int | None  # 1-based row in the posts file (None for in-memory posts)
    status: str  # "ok" | "text_only" (unusable image dropped) | "skipped"
    image: str | None = None  # the image as given (path relative to the posts file)
    reason: str | None = None  # one of IMAGE_REASONS when the image was unusable
    detail: str | None = None
    truncated: bool = False  # text longer than the context was cut

    @property
    def where(self) -> str:
        return f"post {self.post_id!r}" + (f" (row {self.row})" if self.row is not None else "")


@dataclass
class _Loaded:
    """One post after the worker: token ids and pixels (or why there are none)."""

    index: int
    token_ids: list[int]
    truncated: bool
    pixels: np.ndarray | None = None  # (3, H, W) float32; moved into _Batch.pixels by _collate
    reason: str | None = None
    detail: str | None = None
    has_pixels: bool = False


@dataclass
class _Batch:
    items: list[_Loaded]
    pixels: torch.Tensor  # (k, 3, H, W) for the items with pixels, in item order


@dataclass
class _Encoded:
    """Features of kept posts, in input order."""

    indices: list[int] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    image_tokens: list[np.ndarray] = field(default_factory=list)
    image_embed: list[np.ndarray] = field(default_factory=list)
    image_present: list[bool] = field(default_factory=list)
    text_tokens: list[np.ndarray] = field(default_factory=list)
    text_embed: list[np.ndarray] = field(default_factory=list)

    def extend(self, other: _Encoded) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


# ----------------------------------------------------------------------------------------------
# loading (runs in worker processes)


def _load_post(
    index: int,
    text: str,
    image: Path | Image.Image | bytes | None,
    backbone_parts: tuple[Any, Any, int],
) -> _Loaded:
    tokenizer, preprocessing, max_pixels = backbone_parts
    enc = tokenizer.encode(text)
    item = _Loaded(index=index, token_ids=enc.ids, truncated=len(enc.overflowing) > 0)
    if image is None:
        return item
    try:
        if isinstance(image, Path):
            img = load_image(image, max_pixels=max_pixels)
        elif isinstance(image, bytes | bytearray):
            img = load_image_bytes(bytes(image), max_pixels=max_pixels)
        else:
            img = check_image(image, max_pixels=max_pixels)
        item.pixels = preprocessing(img)
    except ImageProblem as e:
        item.reason, item.detail = e.reason, e.detail
    except Exception as e:  # a decoder bug on one odd file must not end a long extraction
        item.reason, item.detail = "corrupt", f"{type(e).__name__}: {e}"
    return item


class _PostSource(torch.utils.data.Dataset):
    """Index -> _Loaded. Holds only picklable things (paths, texts, the Rust tokenizer, the
    preprocessing settings), so worker processes start cheaply and never touch the model."""

    def __init__(
        self,
        texts: Sequence[str],
        images: Sequence[Path | Image.Image | bytes | None],
        backbone: Backbone,
        max_pixels: int,
    ) -> None:
        self.texts = texts
        self.images = images
        self.parts = (backbone.text_tokenizer, backbone.preprocessing, max_pixels)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> _Loaded:
        return _load_post(index, self.texts[index], self.images[index], self.parts)


def _collate(items: list[_Loaded]) -> _Batch:
    # pixels travel as one tensor (shared memory), not as pickled per-post arrays
    arrays = [it.pixels for it in items if it.pixels is not None]
    pixels = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0)
    for it in items:
        it.has_pixels, it.pixels = it.pixels is not None, None
    return _Batch(items=items, pixels=pixels)


def _iterate(source: _PostSource, batches: list[list[int]], num_workers: int) -> Iterator[_Batch]:
    """Loaded batches in order; with workers, decoding runs ahead of the model."""
    if num_workers <= 0 or len(batches) <= 1:
        for b in batches:
            yield _collate([source[i] for i in b])
        return
    loader = torch.utils.data.DataLoader(
        source,
        batch_sampler=batches,
        num_workers=min(num_workers, len(batches)),
        collate_fn=_collate,
        prefetch_factor=4,  # a few batches of decoded images queued per worker
    )
    yield from loader


# ----------------------------------------------------------------------------------------------
# encoding (main process)


def _encode_images(
    backbone: Backbone,
    batch: _Batch,
    policy: str,
    outcomes: dict[int, PostOutcome],
) -> _Encoded:
    """The image policy and the vision tower: an `_Encoded` without text features yet."""
    kept: list[_Loaded] = []
    pixel_rows: list[int] = []  # row in batch.pixels of each kept item with an image, else -1
    cursor = 0
    for it in batch.items:
        row = -1
        if it.has_pixels:
            row, cursor = cursor, cursor + 1
        out = outcomes[it.index]
        out.truncated = it.truncated
        if it.reason is not None:
            out.reason, out.detail = it.reason, it.detail
            if policy == "fail":
                raise ImageError(
                    f"{out.where}: image {out.image!r} is unusable ({it.reason}: {it.detail}); "
                    "extract.image_policy=fail stops here. Fix or remove the image and run the "
                    "same command again (finished shards are kept), or choose "
                    "extract.image_policy=text-only or skip"
                )
            if policy == "skip":
                out.status = "skipped"
                continue
            out.status = "text_only"
        else:
            out.status = "ok"
        kept.append(it)
        pixel_rows.append(row)
    enc = _Encoded()
    if not kept:
        return enc
    with_image = [r for r in pixel_rows if r >= 0]
    image_tokens, image_embed = backbone.encode_pixels(batch.pixels[with_image])
    d = backbone.dims
    zero_tokens = np.zeros((d["num_image_tokens"], d["vision_width"]), np.float32)
    zero_embed = np.zeros((d["embed_dim"],), np.float32)
    j = 0
    for it, r in zip(kept, pixel_rows, strict=True):
        enc.indices.append(it.index)
        enc.token_ids.append(it.token_ids)
        if r >= 0:
            enc.image_tokens.append(image_tokens[j])
            enc.image_embed.append(image_embed[j])
            j += 1
        else:
            enc.image_tokens.append(zero_tokens)
            enc.image_embed.append(zero_embed)
        enc.image_present.append(r >= 0)
    return enc


def _encode_batch(
    backbone: Backbone,
    batch: _Batch,
    policy: str,
    outcomes: dict[int, PostOutcome],
) -> _Encoded:
    """Apply the image policy to a loaded batch, then run both towers on the posts it keeps.

    `outcomes` (index -> outcome, prefilled with id/row/image) is updated in place.
    """
    enc = _encode_images(backbone, batch, policy, outcomes)
    if enc.indices:
        tokens, embeds = backbone.encode_token_ids(enc.token_ids)  # padded to the longest
        enc.text_tokens, enc.text_embed = tokens, list(embeds)
    return enc


def _stack(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros((0, *shape), np.float32)


def _shard_data(enc: _Encoded, posts: Sequence[Any], backbone: Backbone) -> ShardData:
    d = backbone.dims
    return ShardData(
        ids=[posts[i].id for i in enc.indices],
        labels=[posts[i].label for i in enc.indices],
        splits=[posts[i].split for i in enc.indices],
        users=[getattr(posts[i], "user", None) for i in enc.indices],
        created_at=[getattr(posts[i], "created_at", None) for i in enc.indices],
        text_tokens=enc.text_tokens,
        image_tokens=_stack(enc.image_tokens, (d["num_image_tokens"], d["vision_width"])),
        text_embed=_stack(enc.text_embed, (d["embed_dim"],)),
        image_embed=_stack(enc.image_embed, (d["embed_dim"],)),
        image_present=np.asarray(enc.image_present, dtype=bool),
    )


def bf16_agreement(backbone: Backbone, token_ids: Sequence[Sequence[int]], pixels: Any) -> float:
    """Lowest cosine between bf16 and fp32 pooled embeddings (text and image) on these inputs."""
    was = backbone.bf16
    try:
        results = {}
        for flag in (False, True):
            backbone.bf16 = flag
            _, t = backbone.encode_token_ids(token_ids)
            _, v = backbone.encode_pixels(pixels)
            results[flag] = np.concatenate([t, v]) if len(v) else t
    finally:
        backbone.bf16 = was
    a, b = results[False].astype(np.float64), results[True].astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(cos.min()) if cos.size else 1.0


BF16_MIN_COSINE = 0.999


def _check_bf16(backbone: Backbone, batch: _Batch, sample: int = 4) -> None:
    # a few posts suffice to catch a backbone that bf16 breaks; more would cost fp32 passes
    ids = [it.token_ids for it in batch.items[:sample]]
    cos = bf16_agreement(backbone, ids, batch.pixels[:sample])
    if cos < BF16_MIN_COSINE:
        raise SemlocError(
            f"bf16 features of this backbone disagree with fp32 (lowest cosine {cos:.5f} < "
            f"{BF16_MIN_COSINE}); run with extract.bf16=false"
        )


# ----------------------------------------------------------------------------------------------
# on-the-fly featurisation (predict, serve)


def _to_feature_batch(enc: _Encoded, backbone: Backbone, dtype: str) -> FeatureBatch:
    d = backbone.dims
    n = len(enc.indices)

    def rounded(a: np.ndarray) -> torch.Tensor:
        # through the storage dtype and back: the numbers a model sees when reading a store
        return torch.from_numpy(np.asarray(a).astype(dtype).astype(np.float32))

    max_len = max([1, *(t.shape[0] for t in enc.text_tokens)])
    text_tokens = np.zeros((n, max_len, d["text_width"]), np.float32)
    text_mask = np.zeros((n, max_len), dtype=bool)
    for r, t in enumerate(enc.text_tokens):
        text_tokens[r, : t.shape[0]] = t
        text_mask[r, : t.shape[0]] = True
    return FeatureBatch(
        text_tokens=rounded(text_tokens),
        text_mask=torch.from_numpy(text_mask),
        image_tokens=rounded(_stack(enc.image_tokens, (d["num_image_tokens"], d["vision_width"]))),
        image_present=torch.from_numpy(np.asarray(enc.image_present, dtype=bool)),
        text_embed=rounded(_stack(enc.text_embed, (d["embed_dim"],))),
        image_embed=rounded(_stack(enc.image_embed, (d["embed_dim"],))),
        labels=None,
        index=torch.as_tensor(enc.indices, dtype=torch.long),
    )


def _featurize(
    texts: Sequence[str],
    images: Sequence[Path | Image.Image | bytes | None],
    outcomes: list[PostOutcome],
    backbone: Backbone,
    cfg: ExtractConfig,
    dtype: str | None,
) -> tuple[FeatureBatch, list[PostOutcome]]:
    source = _PostSource(texts, images, backbone, cfg.max_image_pixels)
    size = max(1, cfg.batch_size)
    batches = [list(range(s, min(s + size, len(texts)))) for s in range(0, len(texts), size)]
    by_index = {o.index: o for o in outcomes}
    enc = _Encoded()
    for batch in _iterate(source, batches, cfg.num_workers):
        enc.extend(_encode_batch(backbone, batch, cfg.image_policy, by_index))
    return _to_feature_batch(enc, backbone, dtype or cfg.dtype), outcomes


def featurize_posts(
    posts: Sequence[Any],
    base_dir: str | Path,
    backbone: Backbone,
    cfg: ExtractConfig,
    *,
    dtype: str | None = None,
) -> tuple[FeatureBatch, list[PostOutcome]]:
    """Features of `posts` (records from `read_posts`), exactly as extraction stores them.

    Returns the batch of kept posts (``batch.index`` = their positions in `posts`) and one
    outcome per input post. The image policy is `cfg.image_policy`; `dtype` (default
    `cfg.dtype`) is the storage dtype the features are rounded through: pass the dtype of the
    store a model was trained on.
    """
    base = Path(base_dir)
    outcomes = [
        PostOutcome(index=i, post_id=p.id, row=p.row, status="ok", image=p.image)
        for i, p in enumerate(posts)
    ]
    images = [p.image_path(base) for p in posts]
    return _featurize([p.text for p in posts], images, outcomes, backbone, cfg, dtype)


def featurize_inputs(
    items: Sequence[tuple[str, Image.Image | bytes | None]],
    backbone: Backbone,
    cfg: ExtractConfig,
    *,
    ids: Sequence[str] | None = None,
    dtype: str | None = None,
) -> tuple[FeatureBatch, list[PostOutcome]]:
    """Features of in-memory posts (text, PIL image | encoded image bytes | None), e.g. uploads.

    Decoded in this process with the same safety checks as files (size limit before decoding:
    `cfg.max_image_pixels`). Same policy and rounding as `featurize_posts`.
    """
    ids = list(ids) if ids is not None else [str(i) for i in range(len(items))]
    outcomes = [
        PostOutcome(
            index=i,
            post_id=ids[i],
            row=None,
            status="ok",
            image=None if img is None else ("<upload>" if isinstance(img, bytes) else "<image>"),
        )
        for i, (_, img) in enumerate(items)
    ]
    cfg_local = ExtractConfig(**{**asdict(cfg), "num_workers": 0})
    return _featurize(
        [t or "" for t, _ in items], [img for _, img in items], outcomes, backbone, cfg_local, dtype
    )


def featurize_one(
    text: str,
    image: Image.Image | bytes | None,
    backbone: Backbone,
    cfg: ExtractConfig,
    *,
    dtype: str | None = None,
) -> tuple[FeatureBatch, PostOutcome]:
    """One in-memory post: a batch of 1 row (0 rows if the policy skipped it) and its outcome."""
    batch, outcomes = featurize_inputs([(text, image)], backbone, cfg, dtype=dtype)
    return batch, outcomes[0]


# ----------------------------------------------------------------------------------------------
# extraction into a store


@dataclass
class ExtractionResult:
    store: Path
    manifest: dict[str, Any]
    already_complete: bool  # the store was finished before this call: nothing was done
    shards_written: int  # by this call


def _run_record(posts_path: Path, num_posts: int, cfg: ExtractConfig, data_cfg: DataConfig) -> dict:
    return {
        "posts_sha256": sha256_file(posts_path),
        "num_input_posts": num_posts,
        "shard_size": cfg.shard_size,
        "image_policy": cfg.image_policy,
        "max_image_pixels": cfg.max_image_pixels,
        "split": asdict(data_cfg),
    }


def _check_run_record(state: Path, record: dict[str, Any], posts_path: Path) -> None:
    path = state / "run.json"
    if not path.exists():
        atomic_write_json(path, {**record, "posts_file": str(posts_path)})
        return
    have = json.loads(path.read_text())
    diff = [
        f"  {k}: store has {have.get(k)!r}, this run has {v!r}"
        for k, v in record.items()
        if have.get(k) != v
    ]
    if diff:
        raise SemlocError(
            f"{state.parent} holds (part of) an extraction of different posts or settings; "
            "resuming would mix two extractions. Use another --out, delete it, or repeat the "
            "original command. Differences:\n" + "\n".join(diff)
        )


def _shard_record(k: int, start: int, stop: int, outcomes: Sequence[PostOutcome]) -> dict:
    images = Counter()
    problems, truncated = [], []
    for o in outcomes:
        if o.image is None:
            images["no_image"] += 1
        elif o.reason is None:
            images["present"] += 1
        else:
            images[o.reason] += 1
            action = "skipped" if o.status == "skipped" else "text_only"
            problems.append(
                {"id": o.post_id, "row": o.row, "image": o.image, "reason": o.reason,
                 "detail": o.detail, "action": action}
            )  # fmt: skip
        if o.truncated:
            truncated.append(o.post_id)
    return {
        "shard": k,
        "positions": [start, stop],
        "images": dict(images),
        "skipped": sum(o.status == "skipped" for o in outcomes),
        "text_only": sum(o.status == "text_only" for o in outcomes),
        "problems": problems,
        "truncated": truncated,
    }


def _summarise(state: Path, num_shards: int, run: dict[str, Any], backbone: Backbone) -> tuple:
    images = Counter({k: 0 for k in ("present", "no_image", *IMAGE_REASONS)})
    problems, truncated = [], []
    skipped = text_only = 0
    for k in range(num_shards):
        rec = json.loads((state / f"shard-{k:06d}.json").read_text())
        images.update(rec["images"])
        problems += rec["problems"]
        truncated += rec["truncated"]
        skipped += rec["skipped"]
        text_only += rec["text_only"]
    extraction = {
        "posts_file": run.get("posts_file"),
        "posts_sha256": run["posts_sha256"],
        "num_input_posts": run["num_input_posts"],
        "num_skipped": skipped,
        "num_text_only": text_only,  # kept without their unusable image
        "image_policy": run["image_policy"],
        "max_image_pixels": run["max_image_pixels"],
        "shard_size": run["shard_size"],
        "images": dict(images),  # present, no_image, then one count per problem reason
        "image_problems": sum(images[r] for r in IMAGE_REASONS),
        "truncated_texts": len(truncated),
        "max_text_tokens": backbone.max_text_tokens,
        "report": REPORT_FILE,
    }
    report = {
        "image_policy": run["image_policy"],
        "counts": {r: images[r] for r in IMAGE_REASONS},
        "problems": problems,
        "truncated_texts": truncated,
    }
    return extraction, report


def extract_to_store(
    posts_path: str | Path,
    out: str | Path,
    cfg: ExtractConfig,
    *,
    data_cfg: DataConfig | None = None,
    backbone: Backbone | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> ExtractionResult:
    """Extract the features of every post in `posts_path` into the store `out`; resumable.

    `backbone` defaults to `load_backbone(cfg.backbone, ...)`. `on_shard(k)` is called after
    shard k is committed (progress hooks; tests use it to simulate a crash).
    """
    from semloc.data.records import read_posts

    data_cfg = data_cfg or DataConfig()
    posts_path = Path(posts_path)
    if cfg.shard_size < 1 or cfg.batch_size < 1:
        raise SemlocError("extract.shard_size and extract.batch_size must be at least 1")
    table = read_posts(posts_path, data_cfg=data_cfg)  # DataError lists every bad row
    posts = table.records
    device = resolve_device(cfg.device, "extract.device")
    bf16 = resolve_bf16_flag(cfg.bf16, device)  # extract.bf16=auto: bf16 where it is native
    if backbone is None:
        backbone = load_backbone(
            cfg.backbone, allow_network=cfg.allow_network, bf16=bf16, device=device
        )
    elif backbone.bf16 != bf16:
        raise SemlocError(f"backbone has bf16={backbone.bf16} but extract.bf16={cfg.bf16}")
    out = Path(out)
    writer = FeatureStoreWriter(out, backbone.header(cfg.dtype))
    state = out / STATE_DIR
    state.mkdir(exist_ok=True)
    for leftover in state.glob(".*.tmp"):  # an interrupted atomic write
        leftover.unlink(missing_ok=True)
    record = _run_record(posts_path, len(posts), cfg, data_cfg)
    _check_run_record(state, record, posts_path.resolve())
    run = json.loads((state / "run.json").read_text())
    size = cfg.shard_size
    num_shards = -(-len(posts) // size)
    if writer.is_complete:
        return ExtractionResult(out, json.loads((out / "manifest.json").read_text()), True, 0)

    pending = [k for k in range(num_shards) if not writer.has_shard(k)]
    batches = [
        list(range(s, min(s + cfg.batch_size, (k + 1) * size, len(posts))))
        for k in pending
        for s in range(k * size, min((k + 1) * size, len(posts)), cfg.batch_size)
    ]
    source = _PostSource(
        [p.text for p in posts],
        [p.image_path(table.base_dir) for p in posts],
        backbone,
        cfg.max_image_pixels,
    )
    outcomes = {
        i: PostOutcome(index=i, post_id=p.id, row=p.row, status="ok", image=p.image)
        for i, p in enumerate(posts)
    }
    todo = sum(len(b) for b in batches)
    progress = _progress(cfg.progress, todo, len(posts) - todo)
    written = 0
    shard_enc = _Encoded()
    current = pending[0] if pending else None
    checked_bf16 = not backbone.bf16
    try:
        for batch in _iterate(source, batches, cfg.num_workers):
            if not checked_bf16:
                _check_bf16(backbone, batch)
                checked_bf16 = True
            k = batch.items[0].index // size
            if k != current:
                raise AssertionError("batches arrived out of shard order")
            shard_enc.extend(_encode_batch(backbone, batch, cfg.image_policy, outcomes))
            progress.update(len(batch.items))
            last_index = batch.items[-1].index
            if last_index == min((k + 1) * size, len(posts)) - 1:
                start, stop = k * size, min((k + 1) * size, len(posts))
                rec = _shard_record(k, start, stop, [outcomes[i] for i in range(start, stop)])
                # the record first: a committed shard always has one (a record without its
                # shard is simply rewritten by the resumed run)
                atomic_write_json(state / f"shard-{k:06d}.json", rec)
                writer.write_shard(k, _shard_data(shard_enc, posts, backbone))
                written += 1
                if on_shard is not None:
                    on_shard(k)
                shard_enc = _Encoded()
                nxt = pending.index(k) + 1
                current = pending[nxt] if nxt < len(pending) else None
    finally:
        progress.close()
    extraction, report = _summarise(state, num_shards, run, backbone)
    extraction["backbone_path"] = backbone.path
    extraction["records"] = records_summary(table, data_cfg)
    atomic_write_json(out / REPORT_FILE, report)
    manifest = writer.finalize({"extraction": extraction})
    return ExtractionResult(out, manifest, False, written)


def records_summary(tables: Any, data_cfg: DataConfig) -> dict[str, Any]:
    """What reading the posts found (counts, columns used and ignored) for the manifest; for
    several files (`PostTable`s) the counts are summed."""
    tables = tables if isinstance(tables, list | tuple) else [tables]
    counts: Counter = Counter()
    for t in tables:
        counts.update(t.counts)
    return {
        **dict(counts),
        **{f"{f}_column": getattr(data_cfg, f"{f}_column") for f in ("text", "label", "image")},
        "ignored_columns": sorted({c for t in tables for c in t.ignored_columns}),
        "warnings": [w for t in tables for w in t.warnings],
    }


def resolve_device(device: str, key: str = "device") -> str:
    """auto -> cuda when present, else cpu; a device this machine lacks is a ConfigError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    from semloc.config import check_device_available

    check_device_available(device, key)
    return device


def _progress(enabled: bool, total: int, done: int) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="post",
        desc="extract",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
        postfix={"resumed_at": done} if done else None,
    )
