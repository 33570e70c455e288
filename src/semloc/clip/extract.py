"""Posts -> frozen CLIP features: the resumable store extraction, and on-the-fly featurisation.

The steps, public so every engine runs the same ones (`semloc.scale.ray_extract` runs them in
Ray tasks and actors):

    plan_batches        which input positions form each CLIP batch (never crossing a shard)
    PostLoader.load     tokenise (one batched call) and decode + resize the images of posts;
      + collate         picklable, so it runs in DataLoader workers and Ray tasks
    encode_batch        the image policy, then both towers, on one loaded batch
    StoreExtraction     setup (writer, run record, outcomes, pending batches), `add` an encoded
                        batch (commits its shard when complete), `finish` (report + manifest)

Features computed on the fly for `predict`/`serve` go through the same `PostLoader` and
`encode_batch`, so they are the ones extraction writes.

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

import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from semloc.config import DataConfig, ExtractConfig, resolve_device
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
class LoadedPost:
    """One post after loading: token ids and pixels (or why there are none)."""

    index: int
    token_ids: list[int]
    truncated: bool
    pixels: np.ndarray | None = None  # (3, H, W) float32; moved into LoadedBatch.pixels by collate
    reason: str | None = None
    detail: str | None = None
    has_pixels: bool = False


@dataclass
class LoadedBatch:
    """Loaded posts of one CLIP batch, the pixels of those with an image stacked in one tensor."""

    items: list[LoadedPost]
    pixels: torch.Tensor  # (k, 3, H, W) for the items with pixels, in item order


@dataclass
class EncodedPosts:
    """Features of kept posts, in input order."""

    indices: list[int] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    image_tokens: list[np.ndarray] = field(default_factory=list)
    image_embed: list[np.ndarray] = field(default_factory=list)
    image_present: list[bool] = field(default_factory=list)
    text_tokens: list[np.ndarray] = field(default_factory=list)
    text_embed: list[np.ndarray] = field(default_factory=list)

    def extend(self, other: EncodedPosts) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


# ----------------------------------------------------------------------------------------------
# planning


def plan_batches(
    num_posts: int, shards: Sequence[int], shard_size: int, batch_size: int
) -> list[list[int]]:
    """The CLIP batches of `shards`: `batch_size` consecutive input positions, never crossing a
    shard (shard k = positions [k * shard_size, (k + 1) * shard_size)), in shard order.

    Both engines cut exactly these batches, so every feature is computed from the same inputs in
    the same batch (batched matmuls round in the last bits depending on the batch's shape)."""
    if shard_size < 1 or batch_size < 1:
        raise SemlocError("extract.shard_size and extract.batch_size must be at least 1")
    batches = []
    for k in shards:
        stop = min((k + 1) * shard_size, num_posts)
        for s in range(k * shard_size, stop, batch_size):
            batches.append(list(range(s, min(s + batch_size, stop))))
    return batches


# ----------------------------------------------------------------------------------------------
# loading (runs in worker processes and Ray tasks)


@dataclass(frozen=True)
class PostLoader:
    """Texts and images -> loaded posts: tokenisation, image decoding, resizing, normalising.

    Holds only picklable things (the Rust tokenizer, the preprocessing settings, the pixel
    limit), so worker processes and Ray tasks get it cheaply and never touch the model."""

    tokenizer: Any  # tokenizers.Tokenizer with the backbone's truncation
    preprocessing: Any  # the backbone's ImagePreprocessing
    max_pixels: int

    @classmethod
    def for_backbone(cls, backbone: Backbone, max_pixels: int) -> PostLoader:
        return cls(backbone.text_tokenizer, backbone.preprocessing, max_pixels)

    def load(
        self,
        indices: Sequence[int],
        texts: Sequence[str],
        images: Sequence[Path | Image.Image | bytes | None],
    ) -> list[LoadedPost]:
        """Load posts (input positions `indices`); texts are tokenised in one batched call."""
        encodings = self.tokenizer.encode_batch(list(texts)) if len(texts) else []
        items = []
        for index, enc, image in zip(indices, encodings, images, strict=True):
            item = LoadedPost(index=index, token_ids=enc.ids, truncated=len(enc.overflowing) > 0)
            if image is not None:
                self._load_image(item, image)
            items.append(item)
        return items

    def _load_image(self, item: LoadedPost, image: Path | Image.Image | bytes) -> None:
        try:
            if isinstance(image, Path):
                img = load_image(image, max_pixels=self.max_pixels)
            elif isinstance(image, bytes | bytearray):
                img = load_image_bytes(bytes(image), max_pixels=self.max_pixels)
            else:
                img = check_image(image, max_pixels=self.max_pixels)
            item.pixels = self.preprocessing(img)
        except ImageProblem as e:
            item.reason, item.detail = e.reason, e.detail
        except Exception as e:  # a decoder bug on one odd file must not end a long extraction
            item.reason, item.detail = "corrupt", f"{type(e).__name__}: {e}"

    def load_batch(
        self,
        indices: Sequence[int],
        texts: Sequence[str],
        images: Sequence[Path | Image.Image | bytes | None],
    ) -> LoadedBatch:
        """`load` + `collate`: one CLIP batch, ready for `encode_batch`."""
        return collate(self.load(indices, texts, images))


def collate(items: list[LoadedPost]) -> LoadedBatch:
    """Loaded posts -> one batch; the pixels travel as one tensor (shared memory between
    processes), not as pickled per-post arrays."""
    arrays = [it.pixels for it in items if it.pixels is not None]
    pixels = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0)
    for it in items:
        it.has_pixels, it.pixels = it.pixels is not None, None
    return LoadedBatch(items=items, pixels=pixels)


class _PostSource(torch.utils.data.Dataset):
    """Positions -> loaded posts, for the local engine's DataLoader (batched fetches)."""

    def __init__(
        self,
        texts: Sequence[str],
        images: Sequence[Path | Image.Image | bytes | None],
        loader: PostLoader,
    ) -> None:
        self.texts = texts
        self.images = images
        self.loader = loader

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> LoadedPost:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[LoadedPost]:
        # the DataLoader fetches a whole batch at once: one batched tokeniser call per batch
        return self.loader.load(
            indices, [self.texts[i] for i in indices], [self.images[i] for i in indices]
        )


def _iterate(
    source: _PostSource, batches: list[list[int]], num_workers: int
) -> Iterator[LoadedBatch]:
    """Loaded batches in order; with workers, decoding runs ahead of the model."""
    if num_workers <= 0 or len(batches) <= 1:
        for b in batches:
            yield collate(source.__getitems__(b))
        return
    loader = torch.utils.data.DataLoader(
        source,
        batch_sampler=batches,
        num_workers=min(num_workers, len(batches)),
        collate_fn=collate,
        prefetch_factor=4,  # a few batches of decoded images queued per worker
    )
    yield from loader


# ----------------------------------------------------------------------------------------------
# encoding (the process that holds the model)


def _encode_images(
    backbone: Backbone,
    batch: LoadedBatch,
    policy: str,
    outcomes: Mapping[int, PostOutcome],
) -> EncodedPosts:
    """The image policy and the vision tower: an `EncodedPosts` without text features yet."""
    kept: list[LoadedPost] = []
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
    enc = EncodedPosts()
    if not kept:
        return enc
    with_image = [r for r in pixel_rows if r >= 0]
    # the usual case keeps every image: no copy of the batch's pixels
    everyone = len(with_image) == batch.pixels.shape[0]
    pixels = batch.pixels if everyone else batch.pixels[with_image]
    image_tokens, image_embed = backbone.encode_pixels(pixels)
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


def encode_batch(
    backbone: Backbone,
    batch: LoadedBatch,
    policy: str,
    outcomes: Mapping[int, PostOutcome],
) -> EncodedPosts:
    """Apply the image policy to a loaded batch, then run both towers on the posts it keeps.

    `outcomes` (input position -> outcome, prefilled with id/row/image; at least the batch's
    posts) is updated in place. Raises `ImageError` under the `fail` policy.
    """
    enc = _encode_images(backbone, batch, policy, outcomes)
    if enc.indices:
        tokens, embeds = backbone.encode_token_ids(enc.token_ids)  # padded to the longest
        enc.text_tokens, enc.text_embed = tokens, list(embeds)
    return enc


def _stack(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros((0, *shape), np.float32)


def _shard_data(enc: EncodedPosts, posts: Sequence[Any], backbone: Backbone) -> ShardData:
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


def check_bf16(backbone: Backbone, batch: LoadedBatch, sample: int = 4) -> None:
    """Refuse a backbone whose bf16 features disagree with fp32 on a few posts of `batch`."""
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


def to_feature_batch(enc: EncodedPosts, backbone: Backbone, dtype: str) -> FeatureBatch:
    """Encoded posts as a model batch, rounded through the storage `dtype` and back: the numbers
    a model sees when reading a store of that dtype."""
    d = backbone.dims
    n = len(enc.indices)

    def rounded(a: np.ndarray) -> torch.Tensor:
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
    source = _PostSource(texts, images, PostLoader.for_backbone(backbone, cfg.max_image_pixels))
    n = len(texts)
    batches = plan_batches(n, [0], max(n, 1), max(1, cfg.batch_size))
    by_index = {o.index: o for o in outcomes}
    enc = EncodedPosts()
    # decoding workers by the budget; torch threads stay the caller's (a server, a notebook)
    workers = thread_budget(cfg.num_workers, cfg.num_threads)[0]
    for batch in _iterate(source, batches, workers):
        enc.extend(encode_batch(backbone, batch, cfg.image_policy, by_index))
    return to_feature_batch(enc, backbone, dtype or cfg.dtype), outcomes


def post_outcome(index: int, post: Any) -> PostOutcome:
    """The outcome record of a post (a `Post` of `read_posts`) before it is loaded."""
    return PostOutcome(index=index, post_id=post.id, row=post.row, status="ok", image=post.image)


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
    outcomes = [post_outcome(i, p) for i, p in enumerate(posts)]
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


def run_record(
    posts_sha256: str, num_posts: int, cfg: ExtractConfig, data_cfg: DataConfig
) -> dict[str, Any]:
    """What decides which posts land in which shard: resuming with a different one is refused."""
    return {
        "posts_sha256": posts_sha256,
        "num_input_posts": num_posts,
        "shard_size": cfg.shard_size,
        "image_policy": cfg.image_policy,
        "max_image_pixels": cfg.max_image_pixels,
        "split": asdict(data_cfg),
    }


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


def extraction_backbone(
    cfg: ExtractConfig, backbone: Backbone | None = None, *, device: str | None = None
) -> Backbone:
    """`backbone`, checked against `cfg`, or the one `cfg.backbone` names, loaded on `device`
    (default: `cfg.device` resolved). `extract.bf16=auto` is decided for `cfg.device`, where the
    towers run (`semloc.precision.resolve_bf16_flag`)."""
    towers = resolve_device(cfg.device, "extract.device")
    bf16 = resolve_bf16_flag(cfg.bf16, towers)
    if backbone is not None:
        if backbone.bf16 != bf16:
            raise SemlocError(f"backbone has bf16={backbone.bf16} but extract.bf16={cfg.bf16}")
        return backbone
    if not cfg.backbone:
        raise SemlocError("no backbone given: pass --backbone DIR_OR_HUB_ID")
    return load_backbone(
        cfg.backbone, allow_network=cfg.allow_network, bf16=bf16, device=device or towers
    )


class StoreExtraction:
    """One extraction into a store, whichever engine computes the features.

    Opening it does the setup both engines share: the store writer (its header refuses features
    of another backbone), the extraction state directory, the run record (refuses other posts or
    settings), the outcome of every post and the batches still to compute
    (`plan_batches` over the shards not yet committed). The engine then loads and encodes
    `batches` however it likes and hands each encoded batch to `add`, in any order; a shard is
    committed as soon as all its batches are in. `finish` writes the report and the manifest.
    """

    def __init__(
        self,
        out: str | Path,
        posts: Sequence[Any],
        backbone: Backbone,
        cfg: ExtractConfig,
        record: dict[str, Any],
        *,
        posts_file: str | Path,
        on_shard: Callable[[int], None] | None = None,
    ) -> None:
        if cfg.shard_size < 1 or cfg.batch_size < 1:
            raise SemlocError("extract.shard_size and extract.batch_size must be at least 1")
        self.out = Path(out)
        self.posts = posts
        self.backbone = backbone
        self.cfg = cfg
        self.on_shard = on_shard
        self.writer = FeatureStoreWriter(self.out, backbone.header(cfg.dtype))
        self.state = self.out / STATE_DIR
        self.state.mkdir(exist_ok=True)
        for leftover in self.state.glob(".*.tmp"):  # an interrupted atomic write
            leftover.unlink(missing_ok=True)
        path = self.state / "run.json"
        if path.exists():
            have = json.loads(path.read_text())
            diff = [
                f"  {k}: store has {have.get(k)!r}, this run has {v!r}"
                for k, v in record.items()
                if have.get(k) != v
            ]
            if diff:
                raise SemlocError(
                    f"{self.out} holds (part of) an extraction of different posts or settings; "
                    "resuming would mix two extractions. Use another --out, delete it, or repeat "
                    "the original command. Differences:\n" + "\n".join(diff)
                )
        else:
            atomic_write_json(path, {**record, "posts_file": str(posts_file)})
        self.run = json.loads(path.read_text())
        self.num_shards = -(-len(posts) // cfg.shard_size)
        self.complete = self.writer.is_complete
        self.pending = (
            []
            if self.complete
            else [k for k in range(self.num_shards) if not self.writer.has_shard(k)]
        )
        self.batches = plan_batches(len(posts), self.pending, cfg.shard_size, cfg.batch_size)
        self.outcomes = {i: post_outcome(i, p) for i, p in enumerate(posts)}
        self.shards_written = 0
        self._waiting = {k: self.shard_bounds(k)[1] - self.shard_bounds(k)[0] for k in self.pending}
        self._arrived: dict[int, list[tuple[int, EncodedPosts]]] = {}

    def shard_bounds(self, k: int) -> tuple[int, int]:
        """The input positions [start, stop) of shard k."""
        size = self.cfg.shard_size
        return k * size, min((k + 1) * size, len(self.posts))

    @property
    def todo(self) -> int:
        """Posts still to compute."""
        return sum(len(b) for b in self.batches)

    def progress(self) -> Any:
        """A tqdm bar over the posts still to compute (posts/s, ETA)."""
        return extraction_progress(self.cfg.progress, self.todo, len(self.posts) - self.todo)

    def add(
        self,
        indices: Sequence[int],
        enc: EncodedPosts,
        outcomes: Sequence[PostOutcome] | None = None,
    ) -> int | None:
        """Hand in the encoded batch of input positions `indices` (with the batch's outcomes
        when another process computed them); commits and returns its shard when complete."""
        for o in outcomes or ():
            self.outcomes[o.index] = o
        k = indices[0] // self.cfg.shard_size
        if k not in self._waiting:
            raise SemlocError(f"{self.out}: a batch of shard {k}, which is not pending")
        self._arrived.setdefault(k, []).append((indices[0], enc))
        self._waiting[k] -= len(indices)
        if self._waiting[k] > 0:
            return None
        del self._waiting[k]
        shard = EncodedPosts()
        for _, part in sorted(self._arrived.pop(k), key=lambda t: t[0]):
            shard.extend(part)
        self.commit_shard(k, shard)
        return k

    def commit_shard(self, k: int, enc: EncodedPosts) -> None:
        """Write shard k (all its kept posts, in input order) and its outcome record."""
        start, stop = self.shard_bounds(k)
        rec = _shard_record(k, start, stop, [self.outcomes[i] for i in range(start, stop)])
        # the record first: a committed shard always has one (a record without its shard is
        # simply rewritten by the resumed run)
        atomic_write_json(self.state / f"shard-{k:06d}.json", rec)
        self.writer.write_shard(k, _shard_data(enc, self.posts, self.backbone))
        self.shards_written += 1
        if self.on_shard is not None:
            self.on_shard(k)

    def finish(self, records: dict[str, Any] | None = None) -> ExtractionResult:
        """The result of a complete store, or write the report and the manifest of one whose
        shards are all committed (`records`: what reading the posts found, `records_summary`)."""
        if self.complete:
            manifest = json.loads((self.out / "manifest.json").read_text())
            return ExtractionResult(self.out, manifest, True, 0)
        if self._waiting:
            missing = sorted(self._waiting)
            raise SemlocError(f"{self.out}: shards {missing} are not complete yet")
        extraction, report = _summarise(self.state, self.num_shards, self.run, self.backbone)
        extraction["backbone_path"] = self.backbone.path
        if records is not None:
            extraction["records"] = records
        atomic_write_json(self.out / REPORT_FILE, report)
        manifest = self.writer.finalize({"extraction": extraction})
        return ExtractionResult(self.out, manifest, False, self.shards_written)


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
    backbone = extraction_backbone(cfg, backbone)
    record = run_record(sha256_file(posts_path), len(posts), cfg, data_cfg)
    job = StoreExtraction(
        out, posts, backbone, cfg, record, posts_file=posts_path.resolve(), on_shard=on_shard
    )
    if job.complete:
        return job.finish()
    source = _PostSource(
        [p.text for p in posts],
        [p.image_path(table.base_dir) for p in posts],
        PostLoader.for_backbone(backbone, cfg.max_image_pixels),
    )
    checked_bf16 = not backbone.bf16
    workers, threads = thread_budget(cfg.num_workers, cfg.num_threads)
    with job.progress() as progress, torch_threads(threads):
        for batch in _iterate(source, job.batches, workers):
            if not checked_bf16:
                check_bf16(backbone, batch)
                checked_bf16 = True
            enc = encode_batch(backbone, batch, cfg.image_policy, job.outcomes)
            job.add([it.index for it in batch.items], enc)
            progress.update(len(batch.items))
    return job.finish(records=records_summary(table, data_cfg))


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


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_budget(
    num_workers: int = -1, num_threads: int = 0, cores: int | None = None
) -> tuple[int, int]:
    """(decoding workers, torch threads) for extraction: each as given when set (>= 0 workers,
    >= 1 threads), else chosen for `cores` (default: `usable_cores()`).

    The towers are the work: at ViT-B/32 size decoding + resizing a photo costs about a tenth of
    the towers' time on it (docs/scale.md has the profile), so the towers get every core and one
    decoding worker per 8 cores (at least one) runs ahead of them, sleeping on its full prefetch
    queue most of the time. Fewer torch threads than cores would idle a core for the towers;
    more workers would only add processes fighting the towers for the same cores.
    """
    cores = cores or usable_cores()
    workers = num_workers if num_workers >= 0 else max(1, cores // 8)
    threads = num_threads if num_threads >= 1 else cores
    return workers, threads


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """torch's intra-op thread count set for the duration (it is process-wide), then restored."""
    before = torch.get_num_threads()
    if num_threads != before:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def extraction_progress(enabled: bool, total: int, done: int) -> Any:
    """The progress bar of an extraction: `total` posts to go, `done` already in the store."""
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
