"""Contrastive (continued) pretraining of a CLIP on image–caption pairs.

    result = pretrain_clip("pairs.jsonl", "my-clip/", PretrainConfig(epochs=10))
    result = pretrain_clip("pairs.jsonl", "my-clip/", cfg, init="openai-clip-dir/")  # adapt

The objective is CLIP's (Radford et al. 2021): for a batch of N pairs, the N x N matrix of
scaled cosines between image and caption embeddings is read row-wise (image -> caption) and
column-wise (caption -> image) as two N-way classifications of the matching partner, and the loss
is the mean of the two cross-entropies. The scale is CLIP's learnable temperature, ``logit_scale``
(stored as a log, initialised at log(1/0.07) from scratch), clamped so that exp(logit_scale)
never exceeds 100, as CLIP does, because an unbounded scale makes training unstable.

Two starting points:

* from scratch (`ScratchClipConfig`): a tokenizer is trained on the training captions (plus any
  extra texts), and a small `CLIPModel` is initialised with the seed (`semloc.clip.tiny`);
* ``init=DIR``: any Hugging Face CLIP directory (a real CLIP adapted to the user's own domain),
  keeping its tokenizer and image preprocessing.

Either way the model is loaded through `load_backbone`, so it is trained on exactly the pixels and
token ids `semloc extract` will feed it later. The result is a complete CLIP directory
(``config.json``, ``model.safetensors``, tokenizer files, image-processor config) written by
``save_pretrained`` into a temporary directory that is renamed into place only when complete, plus
``pretrain_metrics.json``: held-out image -> caption retrieval (R@1, R@5) and the mean cosine of
matched against mismatched pairs, before and after training.

Pairs file: CSV or JSONL with ``image`` (a path relative to the file) and ``caption``; an optional
``split`` column puts ``train`` rows in training and every other row in the held-out set,
otherwise a seeded `holdout_fraction` is held out. Bad rows are reported all at once, by row.
An optional ``related`` column (true/false) marks held-out *probe* pairs: (picture, post text)
pairs whose picture is known to be related to the text or not. They are never trained on and
not retrieval candidates; they give the ROC AUC of the cosine of related against unrelated
pairs (how well the CLIP tells a mismatched picture, which is what a similarity-guided model
needs from it).

Noisy-pair filtering (``filter_fraction=f``), as web-scale CLIP corpora are filtered by a CLIP's
own score: after epoch ``filter_after`` and every epoch from then on, the model scores every
*filterable* training pair (the cosine of its picture and text, in eval mode) and the lowest
``round(f * n)`` of the n filterable pairs are left out of the next epoch (re-scored each time,
so a pair left out once can come back). An optional ``filterable`` column (true/false, default
true) marks the pairs that may be left out: curated captions are marked false and are always
trained on. Each epoch's pairs and steps are known before training starts (the number left out
is fixed), so the learning-rate schedule covers exactly the steps taken. With the default
``filter_fraction=0`` nothing is scored and the build is the unfiltered one, bit for bit.

With ``eval_every=k`` the held-out metrics are also taken every k epochs and written, with the
training time spent so far, to ``curve.json`` in the result: one build gives the whole curve
of R@1 and AUROC against training time.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from semloc.clip.backbone import Backbone, load_backbone
from semloc.clip.images import ImageProblem, load_image
from semloc.errors import DataError, SemlocError
from semloc.io import atomic_write_json
from semloc.precision import autocast
from semloc.training.trainer import warmup_cosine, weight_decay_groups

log = logging.getLogger(__name__)

METRICS_FILE = "pretrain_metrics.json"
CURVE_FILE = "curve.json"  # held-out metrics against training time (with eval_every)
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: exp(logit_scale) <= 100
INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature 0.07
# learning rates that worked for each starting point: a fresh model needs large steps, while a
# pretrained CLIP forgets what it knew with anything much above 1e-5
SCRATCH_LR, FINETUNE_LR = 5e-4, 1e-5


@dataclass
class ScratchClipConfig:
    """Size of a CLIP built from scratch (ignored when continuing from `init`)."""

    vocab_size: int = 2000  # BPE vocabulary learned from the training captions
    text_width: int = 128
    vision_width: int = 128
    embed_dim: int = 128  # the joint embedding width p
    layers: int = 4  # per tower
    heads: int = 4
    image_size: int = 64
    patch_size: int = 8  # (image_size / patch_size)^2 + 1 image tokens
    max_text_tokens: int = 64  # text context, BOS and EOS included


@dataclass
class PretrainConfig:
    """How to train. Every field is deterministic given `seed`."""

    epochs: int = 10
    batch_size: int = 128  # pairs per step; also the number of negatives each pair sees
    lr: float | None = None  # None: 5e-4 from scratch, 1e-5 when continuing from `init`
    weight_decay: float = 0.1  # not applied to biases, norms and the temperature (as open_clip)
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    seed: int = 0
    holdout_fraction: float = 0.1  # held out when the pairs file has no `split` column
    max_eval_pairs: int = 1000  # held-out pairs scored (retrieval gets harder with more)
    eval_every: int = 0  # also evaluate every k epochs (0: only before and after training)
    # and write them with the training time so far to curve.json
    augment: bool = False  # random resized crops (area >= augment_min_scale) of the images
    augment_min_scale: float = 0.6
    bad_images: Literal["fail", "skip"] = "fail"  # an unusable image stops (listing all) or
    # drops its pair (counted in the metrics)
    bf16: bool = False  # bfloat16 autocast for the towers (faster on CPUs with AVX-512 BF16)
    num_workers: int = 2  # image decoding processes
    threads: int = 2  # torch intra-op threads while training; float sums depend on the thread
    # count, so a fixed one makes a build repeat bit for bit on any machine (0: torch's default)
    filter_fraction: float = 0.0  # leave out this fraction of the filterable training pairs
    # that the model scores least related, re-scored every epoch (module docstring; 0: never)
    filter_after: int = 2  # the first scoring follows this epoch; filtered epochs come after it
    progress: bool = True


# ----------------------------------------------------------------------------------------------
# pairs


@dataclass
class Pairs:
    """Image–caption pairs read from a file; images as absolute paths."""

    images: list[Path]
    captions: list[str]
    rows: list[int]  # 1-based data row of each pair, for messages
    holdout: np.ndarray  # (N,) bool: held out from training
    source: Path
    # (N,) int8: 1 / 0 for a held-out probe pair whose picture is related / unrelated to its
    # text, -1 for an ordinary pair (see the module docstring)
    related: np.ndarray | None = None
    # (N,) bool: the pair may be left out by noisy-pair filtering (`filterable`, default true)
    filterable: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.captions)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SemlocError(f"cannot read pairs file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SemlocError(f"pairs file {path} is not UTF-8 text: {e}") from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows, problems = [], []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"line {i}: not valid JSON ({e.msg})")
                continue
            if not isinstance(obj, dict):
                problems.append(f"line {i}: expected a JSON object")
                continue
            rows.append({**obj, "__row": i})
        if problems:
            raise DataError(f"pairs file {path} has malformed lines:", problems)
        return rows
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        # row numbers count the header as row 1, as spreadsheets show them
        return [{**r, "__row": i} for i, r in enumerate(reader, 2)]
    raise SemlocError(f"pairs file {path}: unsupported format {suffix!r} (use .csv or .jsonl)")


def _bool_cell(value: Any) -> bool | None:
    """A true/false cell of a pairs file (JSON boolean, or the text true/false; empty: None);
    ValueError for anything else."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", ""):
        return None if not value.strip() else value.strip().lower() == "true"
    raise ValueError(value)


def read_pairs(path: str | Path, *, holdout_fraction: float = 0.1, seed: int = 0) -> Pairs:
    """Read and check a pairs file; every bad row is reported at once (`DataError`)."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise SemlocError(f"pairs file {path} holds no pairs")
    base = path.parent
    images, captions, numbers, splits, related, problems = [], [], [], [], [], []
    filterable: list[bool] = []
    has_split = any(r.get("split") not in (None, "") for r in rows)
    for r in rows:
        where = f"row {r['__row']}"
        image, caption = r.get("image"), r.get("caption")
        if not isinstance(image, str) or not image.strip():
            problems.append(f"{where}: no 'image' path")
            continue
        if not isinstance(caption, str) or not caption.strip():
            problems.append(f"{where}: no 'caption' text")
            continue
        image_path = (base / image).resolve()
        if not image_path.is_file():
            problems.append(f"{where}: image {image!r} not found at {image_path}")
            continue
        split = r.get("split")
        if has_split and split not in (None, "") and not isinstance(split, str):
            problems.append(f"{where}: 'split' must be a string, got {split!r}")
            continue
        try:
            rel = _bool_cell(r.get("related"))
        except ValueError:
            problems.append(f"{where}: 'related' must be true or false, got {r['related']!r}")
            continue
        try:
            may_filter = _bool_cell(r.get("filterable"))
        except ValueError:
            problems.append(f"{where}: 'filterable' must be true or false, got {r['filterable']!r}")
            continue
        if rel is not None and (not has_split or split == "train"):
            problems.append(
                f"{where}: a probe pair (with 'related') must be held out (a 'split' other "
                "than 'train'): probe pairs are never trained on"
            )
            continue
        images.append(image_path)
        captions.append(caption.strip())
        related.append(-1 if rel is None else int(rel))
        filterable.append(may_filter is not False)
        numbers.append(int(r["__row"]))
        splits.append(split if isinstance(split, str) and split else None)
    if problems:
        raise DataError(f"pairs file {path} has {len(problems)} bad row(s):", problems)
    n = len(captions)
    if has_split:
        holdout = np.array([s != "train" for s in splits], dtype=bool)
    else:
        if not 0.0 <= holdout_fraction < 1.0:
            raise SemlocError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
        order = np.random.default_rng(seed).permutation(n)
        holdout = np.zeros(n, dtype=bool)
        holdout[order[: round(holdout_fraction * n)]] = True
    if holdout.all():
        raise SemlocError(
            f"pairs file {path}: no training pairs (with a 'split' column, training uses the "
            "rows whose split is 'train')"
        )
    return Pairs(
        images,
        captions,
        numbers,
        holdout,
        path,
        np.array(related, dtype=np.int8),
        np.array(filterable, dtype=bool),
    )


# ----------------------------------------------------------------------------------------------
# images: decoded once with the model's own preprocessing, then served from a memory map


class _DecodeSource(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], preprocessing: Any) -> None:
        self.paths = paths
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            img = load_image(self.paths[i], max_pixels=40_000_000)
            return i, self.preprocessing(img).astype(np.float16), None
        except ImageProblem as e:
            return i, None, f"{e.reason}: {e.detail}"
        except Exception as e:  # one decoder bug must not end a long run without a row number
            return i, None, f"corrupt: {type(e).__name__}: {e}"


def _decode_images(
    paths: Sequence[Path], backbone: Backbone, out_file: Path, num_workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Each distinct picture decoded once, with the model's own preprocessing.

    Returns a (K, 3, H, W) float16 memory map of the K distinct pictures, the (N,) row of each
    pair's picture in it, and pair index -> problem for the pairs whose picture is unusable.
    """
    from tqdm import tqdm

    rows: dict[Path, int] = {}
    row_of = np.array([rows.setdefault(p, len(rows)) for p in paths], dtype=np.int64)
    distinct = list(rows)
    size = backbone.image_size
    pixels = np.lib.format.open_memmap(
        out_file, mode="w+", dtype=np.float16, shape=(len(distinct), 3, size, size)
    )
    source = _DecodeSource(distinct, backbone.preprocessing)
    bad_rows: dict[int, str] = {}
    loader = torch.utils.data.DataLoader(
        source,
        batch_size=64,
        num_workers=num_workers if len(distinct) > 256 else 0,
        collate_fn=list,
    )
    with tqdm(
        total=len(distinct),
        desc="decode images",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for batch in loader:
            for i, arr, problem in batch:
                if arr is None:
                    bad_rows[i] = problem or "unusable"
                else:
                    pixels[i] = arr
            bar.update(len(batch))
    problems = {i: bad_rows[r] for i, r in enumerate(row_of) if r in bad_rows}
    return pixels, row_of, problems


# ----------------------------------------------------------------------------------------------
# the model's two embeddings, the loss and the metrics


def _pad(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(t) for t in token_ids)
    ids = torch.full((len(token_ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), longest), dtype=torch.long)
    for i, row in enumerate(token_ids):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def embed_texts(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, p) caption embeddings, computed as `Backbone` computes `text_embed`."""
    out = model.text_model(input_ids=ids, attention_mask=mask)
    return model.text_projection(out.pooler_output)


def embed_images(model: Any, pixels: torch.Tensor) -> torch.Tensor:
    """(B, p) image embeddings: the projected, post-layernormed CLS token (`image_embed`)."""
    out = model.vision_model(pixel_values=pixels)
    return model.visual_projection(out.pooler_output)


def contrastive_loss(
    image_embed: torch.Tensor, text_embed: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over a batch of B pairs.

    A caption that occurs twice in a batch needs no special target: its two columns are equal,
    so what one pair's loss pushes down the other pushes up by the same amount.
    """
    v = F.normalize(image_embed.float(), dim=-1)  # (B, p)
    t = F.normalize(text_embed.float(), dim=-1)  # (B, p)
    logits = logit_scale.exp() * v @ t.T  # (B, B): image i vs caption j
    target = torch.arange(len(v), device=v.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def alignment_metrics(
    image_embed: np.ndarray, text_embed: np.ndarray, captions: Sequence[str]
) -> dict[str, float]:
    """Image -> caption retrieval and matched/mismatched cosines of held-out pairs.

    Identical captions are one retrieval candidate (an image described by a common caption is
    not penalised for ranking the identical caption of another image first). R@k is the fraction
    of images whose caption is among the k most similar distinct captions; chance is k / (number
    of distinct captions). Mismatched pairs are (image, caption) with different caption texts.
    """
    v = image_embed / np.maximum(np.linalg.norm(image_embed, axis=1, keepdims=True), 1e-12)
    t = text_embed / np.maximum(np.linalg.norm(text_embed, axis=1, keepdims=True), 1e-12)
    distinct: dict[str, int] = {}
    target = np.array([distinct.setdefault(c, len(distinct)) for c in captions])
    first = np.array(sorted({j: i for i, j in reversed(list(enumerate(target)))}.values()))
    candidates = t[first]  # (K, p): one embedding per distinct caption
    sim = v @ candidates.T  # (N, K)
    own = sim[np.arange(len(v)), target]
    rank = (sim > own[:, None]).sum(1)  # 0 = retrieved first
    cos = v @ t.T  # (N, N)
    matched = np.sum(v * t, axis=1)
    mismatched = target[:, None] != target[None, :]
    k = len(distinct)
    return {
        "pairs": len(v),
        "distinct_captions": k,
        "r_at_1": float(np.mean(rank < 1)),
        "r_at_5": float(np.mean(rank < 5)),
        "chance_r_at_1": 1.0 / k,
        "chance_r_at_5": min(1.0, 5.0 / k),
        "cos_matched": float(matched.mean()),
        "cos_mismatched": float(cos[mismatched].mean()) if mismatched.any() else float("nan"),
    }


def pair_cosines(image_embed: np.ndarray, text_embed: np.ndarray) -> np.ndarray:
    """(N,) cosine of each pair's image and text embedding."""
    v = image_embed / np.maximum(np.linalg.norm(image_embed, axis=1, keepdims=True), 1e-12)
    t = text_embed / np.maximum(np.linalg.norm(text_embed, axis=1, keepdims=True), 1e-12)
    return np.sum(v * t, axis=1)


def least_related(cosines: np.ndarray, count: int) -> np.ndarray:
    """Sorted positions of the `count` pairs with the lowest cosine (of equal cosines, the
    earlier pair goes first): the pairs noisy-pair filtering leaves out."""
    if not 0 <= count <= len(cosines):
        raise ValueError(f"cannot leave out {count} of {len(cosines)} pairs")
    return np.sort(np.argsort(cosines, kind="stable")[:count])


def related_auroc(
    image_embed: np.ndarray, text_embed: np.ndarray, related: np.ndarray
) -> dict[str, Any]:
    """ROC AUC of the pairs' cosine, related (`related` true) against unrelated pictures."""
    from semloc.features.study import auroc

    cos = pair_cosines(image_embed, text_embed)
    related = np.asarray(related, dtype=bool)
    return {
        "probe_pairs": len(cos),
        "probe_unrelated": int((~related).sum()),
        "related_vs_unrelated_auroc": auroc(cos[related], cos[~related]),
        "cos_related": float(cos[related].mean()) if related.any() else None,
        "cos_unrelated": float(cos[~related].mean()) if (~related).any() else None,
    }


# ----------------------------------------------------------------------------------------------
# training


@dataclass
class PretrainResult:
    out_dir: Path
    metrics: dict[str, Any]  # the content of pretrain_metrics.json
    history: list[dict[str, Any]] = field(default_factory=list)


def _autocast(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    return autocast(torch.bfloat16 if enabled else None, "cpu")


@torch.no_grad()
def _embed_pairs(
    model: Any,
    pixels: np.ndarray,
    token_ids: list[list[int]],
    pad_id: int,
    bf16: bool,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, p) image and text embeddings of N pairs, in eval mode."""
    was_training = model.training
    model.eval()
    v_parts, t_parts = [], []
    for s in range(0, len(token_ids), batch_size):
        px = torch.from_numpy(np.asarray(pixels[s : s + batch_size], dtype=np.float32))
        ids, mask = _pad(token_ids[s : s + batch_size], pad_id)
        with _autocast(bf16):
            v_parts.append(embed_images(model, px).float().numpy())
            t_parts.append(embed_texts(model, ids, mask).float().numpy())
    model.train(was_training)
    return np.concatenate(v_parts), np.concatenate(t_parts)


def _augment(px: torch.Tensor, min_scale: float, gen: torch.Generator) -> torch.Tensor:
    """Random resized crops: area in [min_scale, 1], aspect ratio in [3/4, 4/3], resized back.

    Done on normalised pixels: bilinear resampling commutes with the per-channel affine
    normalisation, so this equals cropping the decoded image."""
    b, _, h, w = px.shape
    out = torch.empty_like(px)
    u = torch.rand((b, 4), generator=gen)
    for i in range(b):
        area = min_scale + (1 - min_scale) * float(u[i, 0])
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * float(u[i, 1]))
        ch = min(h, max(1, round(h * math.sqrt(area / ratio))))
        cw = min(w, max(1, round(w * math.sqrt(area * ratio))))
        top = int(float(u[i, 2]) * (h - ch + 1))
        left = int(float(u[i, 3]) * (w - cw + 1))
        crop = px[i : i + 1, :, top : top + ch, left : left + cw]
        out[i] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
    return out


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' own per-file progress bars, which would interleave with ours."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _prepare_model(
    pairs: Pairs,
    work: Path,
    init: str | Path | None,
    scratch: ScratchClipConfig,
    seed: int,
    tokenizer_texts: Sequence[str],
) -> tuple[Backbone, Any]:
    """The starting CLIP, loaded through `load_backbone`, and its HF image processor."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    if init is not None:
        source = Path(init)
        backbone = load_backbone(source)
        if not backbone.family.pretrainable:
            raise SemlocError(
                f"--init {source}: pretrain-clip trains CLIP models only (CLIPModel's contrastive "
                f"softmax loss), and this is a {backbone.family.architecture}; other families "
                "are supported for extraction, training and prediction, not for pretraining"
            )
    else:
        from semloc.clip.tiny import build_clip_from_scratch

        train_captions = [c for c, h in zip(pairs.captions, pairs.holdout, strict=True) if not h]
        source = build_clip_from_scratch(
            work / "init", [*train_captions, *tokenizer_texts], **asdict(scratch), seed=seed
        )
        _canonical_token_ids(source)
        backbone = load_backbone(source)
        with torch.no_grad():
            backbone.model.logit_scale.fill_(INIT_LOGIT_SCALE)
    # kept to be saved with the result: its settings are what the model was trained on, and
    # `load_backbone` refuses a directory without them
    image_processor = CLIPImageProcessorPil.from_pretrained(source, local_files_only=True)
    return backbone, image_processor


def _canonical_token_ids(directory: Path) -> None:
    """Renumber a freshly trained tokenizer so the same texts always give the same token ids.

    The BPE trainer numbers its single-character symbols in hash-set order, which differs from
    run to run; the seeded embedding rows would then belong to other tokens and training would
    not repeat exactly. Single symbols are numbered in sorted order, merges in the order they
    were learned, special tokens keep their ids (last)."""
    from transformers import AutoTokenizer, CLIPTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    specials = {tokenizer.bos_token, tokenizer.eos_token}
    learned = {a + b: i for i, (a, b) in enumerate(merges)}
    ordinary = sorted(
        (t for t in vocab if t not in specials),
        key=lambda t: (t in learned, learned.get(t, 0), t),
    )
    ids = {t: i for i, t in enumerate(ordinary)}
    for t in sorted(specials, key=vocab.__getitem__):
        ids[t] = len(ids)
    assert all(ids[t] == vocab[t] for t in specials), "special tokens must keep their ids"
    CLIPTokenizer(
        vocab=ids,
        merges=merges,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
        unk_token=tokenizer.unk_token,
        model_max_length=tokenizer.model_max_length,
    ).save_pretrained(directory)


def _save(model: Any, backbone: Backbone, image_processor: Any, tmp: Path) -> None:
    from transformers import CLIPProcessor

    model.save_pretrained(tmp)
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=backbone.tokenizer)
    processor.save_pretrained(tmp)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` to `out`; an existing `out` is swapped out, then removed."""
    # mkdtemp (and safetensors) create owner-only entries; give the result the permissions of
    # anything else this user writes
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for f in tmp.iterdir():
        os.chmod(f, 0o666 & ~umask)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def check_config(cfg: PretrainConfig) -> None:
    """SemlocError for a setting pretraining cannot run with."""
    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise SemlocError("pretraining needs epochs >= 1 and batch_size >= 2")
    if cfg.threads < 0:
        raise SemlocError(f"pretrain threads must be >= 0, got {cfg.threads}")
    if not 0.0 <= cfg.filter_fraction < 1.0:
        raise SemlocError(f"pretrain filter_fraction must be in [0, 1), got {cfg.filter_fraction}")
    if cfg.filter_fraction > 0 and not 1 <= cfg.filter_after < cfg.epochs:
        raise SemlocError(
            f"pretrain filter_after must be at least 1 and below the {cfg.epochs} epochs (the "
            f"first scoring follows that epoch), got {cfg.filter_after}"
        )


def check_scratch(scratch: ScratchClipConfig) -> None:
    """SemlocError for a from-scratch CLIP size that cannot be built."""
    bad = [
        f"{name}={value!r}"
        for name, value in asdict(scratch).items()
        if isinstance(value, bool) or not isinstance(value, int) or value < 1
    ]
    if bad:
        raise SemlocError(f"every CLIP size must be an integer >= 1, got {', '.join(bad)}")
    if scratch.text_width % scratch.heads or scratch.vision_width % scratch.heads:
        raise SemlocError(
            f"CLIP widths ({scratch.text_width}, {scratch.vision_width}) must be divisible by "
            f"heads={scratch.heads}"
        )
    if scratch.image_size % scratch.patch_size:
        raise SemlocError(
            f"CLIP image_size={scratch.image_size} must be a multiple of "
            f"patch_size={scratch.patch_size}"
        )


def pretrain_clip(
    pairs: str | Path | Pairs,
    out_dir: str | Path,
    cfg: PretrainConfig | None = None,
    *,
    scratch: ScratchClipConfig | None = None,
    init: str | Path | None = None,
    tokenizer_texts: Sequence[str] = (),
    overwrite: bool = False,
) -> PretrainResult:
    """Train a CLIP contrastively on `pairs` and save it as a Hugging Face CLIP directory.

    From scratch (size `scratch`) unless `init` names a CLIP directory to continue from.
    `tokenizer_texts`: extra texts the from-scratch tokenizer learns its merges from (e.g. the
    texts the model will later encode), besides the training captions.
    """
    cfg = cfg or PretrainConfig()
    scratch = scratch or ScratchClipConfig()
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise SemlocError(f"{out} already exists; pass --overwrite to replace it, or another --out")
    check_config(cfg)
    if init is None:
        check_scratch(scratch)
    if not isinstance(pairs, Pairs):
        pairs = read_pairs(pairs, holdout_fraction=cfg.holdout_fraction, seed=cfg.seed)
    t_start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    # everything is written into a hidden sibling and renamed at the end: `out` is either the
    # complete result or untouched
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    threads = torch.get_num_threads()
    try:
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        with quiet_transformers():
            result = _pretrain(pairs, out, tmp, cfg, scratch, init, tokenizer_texts, t_start)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    return result


def _pretrain(
    pairs: Pairs,
    out: Path,
    tmp: Path,
    cfg: PretrainConfig,
    scratch: ScratchClipConfig,
    init: str | Path | None,
    tokenizer_texts: Sequence[str],
    t_start: float,
) -> PretrainResult:
    from tqdm import tqdm

    work = tmp / ".work"
    work.mkdir()
    backbone, image_processor = _prepare_model(
        pairs, work, init, scratch, cfg.seed, tokenizer_texts
    )
    model = backbone.model
    pad_id = backbone.pad_token_id

    pixels, row_of, problems = _decode_images(
        pairs.images, backbone, work / "pixels.npy", cfg.num_workers, cfg.progress
    )
    if problems and cfg.bad_images == "fail":
        raise DataError(
            f"{len(problems)} image(s) in {pairs.source} cannot be used (pass "
            "pretrain.bad_images=skip to drop their pairs):",
            [
                f"row {pairs.rows[i]}: {pairs.images[i].name}: {p}"
                for i, p in sorted(problems.items())
            ],
        )
    usable = np.array([i not in problems for i in range(len(pairs))], dtype=bool)
    token_ids, truncated = backbone.tokenize(pairs.captions)
    train_idx = np.flatnonzero(usable & ~pairs.holdout)
    probe = pairs.related >= 0 if pairs.related is not None else np.zeros(len(pairs), bool)
    eval_idx = np.flatnonzero(usable & pairs.holdout & ~probe)
    probe_idx = np.flatnonzero(usable & probe)
    if len(eval_idx) > cfg.max_eval_pairs:  # a fixed subset: comparable before and after
        eval_idx = np.sort(
            np.random.default_rng(cfg.seed).choice(eval_idx, cfg.max_eval_pairs, replace=False)
        )
    if len(train_idx) < 2:
        raise SemlocError(f"{pairs.source}: fewer than 2 usable training pairs")
    # noisy-pair filtering: the filterable training pairs, and how many each filtered epoch
    # leaves out (a fixed number, so every epoch's steps are known before training)
    filterable = pairs.filterable if pairs.filterable is not None else np.ones(len(pairs), bool)
    filter_idx = train_idx[filterable[train_idx]] if cfg.filter_fraction > 0 else train_idx[:0]
    if cfg.filter_fraction > 0 and len(filter_idx) == 0:
        raise SemlocError(
            f"{pairs.source}: filter_fraction {cfg.filter_fraction} but no training pair is "
            "filterable (every one has filterable=false)"
        )
    n_left_out = round(cfg.filter_fraction * len(filter_idx))
    epoch_pairs = [
        len(train_idx) - (n_left_out if epoch > cfg.filter_after else 0)
        for epoch in range(1, cfg.epochs + 1)
    ]
    if min(epoch_pairs) < 2:
        raise SemlocError(f"{pairs.source}: fewer than 2 training pairs left after filtering")

    def embed(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _embed_pairs(
            model, pixels[row_of[idx]], [token_ids[i] for i in idx], pad_id, cfg.bf16
        )

    def evaluate() -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if len(eval_idx) >= 2:
            out.update(alignment_metrics(*embed(eval_idx), [pairs.captions[i] for i in eval_idx]))
        if len(probe_idx) >= 2:
            assert pairs.related is not None
            out.update(related_auroc(*embed(probe_idx), pairs.related[probe_idx] == 1))
        return out or None

    curve: list[dict[str, Any]] = []
    train_cpu = 0.0  # CPU seconds of the training steps (all threads), evaluation excluded

    def record(epoch: int, steps: int, seconds: float, m: dict[str, Any] | None) -> None:
        if m is None:
            return
        keep = ("r_at_1", "r_at_5", "related_vs_unrelated_auroc", "cos_related", "cos_unrelated")
        curve.append(
            {
                "epoch": epoch,
                "steps": steps,
                "train_seconds": seconds,
                "train_cpu_seconds": train_cpu,
                **{k: m[k] for k in keep if k in m},
            }
        )

    lr = cfg.lr if cfg.lr is not None else (FINETUNE_LR if init is not None else SCRATCH_LR)
    model.train().requires_grad_(True)  # load_backbone hands out a frozen model
    before = evaluate()
    if cfg.eval_every:
        record(0, 0, 0.0, before)
    optimizer = torch.optim.AdamW(
        weight_decay_groups(model, cfg.weight_decay), lr=lr, betas=(0.9, 0.98)
    )
    batch_size = min(cfg.batch_size, min(epoch_pairs))
    # full batches: every step sees B-1 negatives
    epoch_steps = [n // batch_size for n in epoch_pairs]
    total_steps = sum(epoch_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, cfg.warmup_fraction)
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
    history: list[dict[str, Any]] = []
    log.info(
        "pretraining %s on %d pairs (%d held out), %d epochs, %d steps of %d, lr %g%s",
        "from scratch" if init is None else f"from {init}",
        len(train_idx),
        len(eval_idx),
        cfg.epochs,
        total_steps,
        batch_size,
        lr,
        f"; {n_left_out} of {len(filter_idx)} filterable pairs left out of each epoch after "
        f"epoch {cfg.filter_after}"
        if n_left_out
        else "",
    )
    bar = tqdm(
        total=total_steps * batch_size,
        desc="pretrain-clip",
        unit="pair",
        disable=not cfg.progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    t_train = time.perf_counter()
    eval_seconds = 0.0  # evaluation time inside the loop, not counted as training time
    kept = train_idx  # the training pairs of the coming epoch (sorted)
    steps_done = 0
    try:
        for epoch in range(1, cfg.epochs + 1):
            c_epoch = time.process_time()
            order = kept[torch.randperm(len(kept), generator=gen).numpy()]
            losses = []
            t_epoch = time.perf_counter()
            for s in range(epoch_steps[epoch - 1]):
                batch = np.sort(order[s * batch_size : (s + 1) * batch_size])
                px = torch.from_numpy(np.asarray(pixels[row_of[batch]], dtype=np.float32))
                if cfg.augment:
                    px = _augment(px, cfg.augment_min_scale, aug_gen)
                ids, mask = _pad([token_ids[i] for i in batch], pad_id)
                with _autocast(cfg.bf16):
                    v = embed_images(model, px)
                    t = embed_texts(model, ids, mask)
                loss = contrastive_loss(v, t, model.logit_scale)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
                losses.append(loss.item())
                bar.update(batch_size)
                bar.set_postfix(
                    epoch=epoch,
                    loss=f"{losses[-1]:.3f}",
                    scale=f"{model.logit_scale.exp().item():.1f}",
                )
            steps_done += epoch_steps[epoch - 1]
            entry: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "logit_scale": model.logit_scale.exp().item(),
            }
            if n_left_out:
                entry["pairs_trained"] = len(kept)
                if cfg.filter_after <= epoch < cfg.epochs:  # part of training: timed with it
                    cos = pair_cosines(*embed(filter_idx))
                    kept = np.setdiff1d(train_idx, filter_idx[least_related(cos, n_left_out)])
                    entry["left_out_next"] = n_left_out
            train_cpu += time.process_time() - c_epoch
            entry["seconds"] = time.perf_counter() - t_epoch
            if cfg.eval_every and epoch % cfg.eval_every == 0 and epoch < cfg.epochs:
                t_eval = time.perf_counter()
                m = evaluate()
                eval_seconds += time.perf_counter() - t_eval
                if m is not None:
                    entry.update({f"heldout_{k}": v for k, v in m.items() if k.startswith("r_")})
                    if "cos_matched" in m:
                        entry["heldout_cos_gap"] = m["cos_matched"] - m["cos_mismatched"]
                    if m.get("related_vs_unrelated_auroc") is not None:
                        entry["heldout_auroc"] = m["related_vs_unrelated_auroc"]
                    record(
                        epoch,
                        steps_done,
                        time.perf_counter() - t_train - eval_seconds,
                        m,
                    )
            history.append(entry)
            log.debug("pretrain epoch %d: %s", epoch, entry)
    finally:
        bar.close()
    train_seconds = time.perf_counter() - t_train - eval_seconds
    model.eval()
    after = evaluate()
    if cfg.eval_every:
        record(cfg.epochs, total_steps, train_seconds, after)
        atomic_write_json(
            tmp / CURVE_FILE,
            {
                "format": "semloc-clip-curve-1",
                "threads": torch.get_num_threads(),
                "pairs_per_step": batch_size,
                "points": curve,
            },
        )
    shutil.rmtree(work)
    _save(model, backbone, image_processor, tmp)
    metrics = {
        "format": "semloc-clip-pretrain-1",
        "init": str(init) if init is not None else None,
        "pairs_file": str(pairs.source),
        "pairs": {
            "total": len(pairs),
            "train": len(train_idx),
            "heldout_scored": len(eval_idx),
            "probe": len(probe_idx),
            "heldout_total": int((usable & pairs.holdout).sum()),
            "bad_images_skipped": len(problems),
            "truncated_captions": int(sum(truncated)),
            **({"filterable_train": len(filter_idx)} if n_left_out else {}),
        },
        "heldout_before": before,
        "heldout": after,
        "logit_scale": model.logit_scale.exp().item(),
        "lr": lr,
        "steps": total_steps,
        "train_seconds": train_seconds,
        "pairs_per_second": total_steps * batch_size / max(train_seconds, 1e-9),
        "seconds": time.perf_counter() - t_start,
        "config": asdict(cfg),
        "scratch": asdict(scratch) if init is None else None,
        "history": history,
    }
    atomic_write_json(tmp / METRICS_FILE, metrics)
    _replace_dir(tmp, out)
    return PretrainResult(out_dir=out, metrics=metrics, history=history)


def iter_lines(metrics: dict[str, Any]) -> Iterator[str]:
    """Human-readable summary lines of a pretrain_metrics.json."""
    after, before = metrics.get("heldout"), metrics.get("heldout_before")
    p = metrics["pairs"]
    yield (
        f"trained on {p['train']} pairs for {metrics['steps']} steps in "
        f"{metrics['train_seconds']:.0f}s ({metrics['pairs_per_second']:.0f} pairs/s); "
        f"temperature 1/{metrics['logit_scale']:.1f}"
    )
    if after is None:
        yield "no held-out pairs: nothing to evaluate"
        return
    if "r_at_1" not in after:
        after = {**after, **dict.fromkeys(("distinct_captions", "r_at_1", "r_at_5"), float("nan"))}
        after.update(chance_r_at_1=float("nan"), chance_r_at_5=float("nan"))
        after.update(cos_matched=float("nan"), cos_mismatched=float("nan"))
    yield (
        f"held-out image->caption retrieval over {after['distinct_captions']} captions: "
        f"R@1 {after['r_at_1']:.3f}, R@5 {after['r_at_5']:.3f} (chance {after['chance_r_at_1']:.3f}, "
        f"{after['chance_r_at_5']:.3f})"
        + (
            f"; before training R@1 {before['r_at_1']:.3f}, R@5 {before['r_at_5']:.3f}"
            if before
            else ""
        )
    )
    yield (
        f"mean cosine: matched pairs {after['cos_matched']:.3f}, mismatched "
        f"{after['cos_mismatched']:.3f} (gap {after['cos_matched'] - after['cos_mismatched']:.3f})"
    )
    if after.get("related_vs_unrelated_auroc") is not None:
        yield (
            f"probe pairs: related vs unrelated picture, ROC AUC of the cosine "
            f"{after['related_vs_unrelated_auroc']:.3f} ({after['probe_pairs']} pairs, "
            f"{after['probe_unrelated']} unrelated)"
        )
