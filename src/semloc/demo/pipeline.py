"""`semloc demo`: the whole pipeline, offline, on a generated world.

    result = run_demo(DemoOptions(workdir=Path("demo-out")))

Stages, each cached in the work directory so that a second run only redoes what changed:

1. **world** (`semloc.demo.world`): posts, pictures and captions, in ``world/<fingerprint>/``;
2. **demo CLIP** (`semloc.clip.pretrain`): a small CLIP trained contrastively from scratch on the
   world's training captions and training posts, saved in the Hugging Face format, in
   ``clip/<key>/``; the key hashes the world's content and every pretraining setting, so a
   changed world or setting builds a new one and nothing stale is reused;
3. **features** (`semloc.clip.extract.extract_to_store`): the code path a real CLIP takes, with the
   demo CLIP directory as the backbone, into ``features/<key>/``;
4. **models** (`semloc.experiment.run_grid`): SG-MFT and the baselines, trained on train,
   selected on dev, evaluated on test, in ``runs/<key>/``; plus the training-free zero-shot and
   linear-probe baselines;
5. **report** (`semloc.demo.report`): ``report.md``, ``report.html``, ``results.md``,
   ``summary.json`` and ``figures/``, rewritten on every run.

No weights are shipped: the demo CLIP is rebuilt from its seed on a fresh machine (docs/demo.md
says why). The default sizes fit the whole run in about ten minutes on two
CPU cores; ``quick`` shrinks every stage to seconds for tests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from semloc.clip.pretrain import (
    METRICS_FILE,
    PretrainConfig,
    ScratchClipConfig,
    check_config,
    check_scratch,
    pretrain_clip,
)
from semloc.demo import CLIP_DATA, DEFAULT_CLIP_DATA
from semloc.errors import SemlocError
from semloc.io import atomic_write_json, atomic_write_text, sha256_json

log = logging.getLogger(__name__)

# bump when a stage would compute something different from the same inputs (cache keys)
# 2: dev posts as probe pairs of the demo CLIP; 3: the tokenizer is trained the same in every
# process (before, two builds of the same settings could differ)
PIPELINE_VERSION = "3"
# bump when the same resolved config trains differently (a model's own default for a setting
# left at None changed): only the runs' key, so the CLIP, world and features stay cached.
# 2: SG-MFT's deep supervision default 1.0 -> 0 (docs/model.md)
RUNS_VERSION = "2"

# -- default sizes, chosen to fit about ten minutes on two cores (stage timings: docs/demo.md).
# The pictures keep their full 96 px in 16 px patches: a 6 x 6 grid (37 image tokens, like
# ViT-B/32's 7 x 7), which keeps every downstream model that attends over image tokens cheap.
DEMO_SCRATCH = ScratchClipConfig(
    vocab_size=3000,
    text_width=128,
    vision_width=128,
    embed_dim=128,
    layers=2,
    heads=4,
    image_size=96,
    patch_size=16,
    max_text_tokens=64,
)
# lr 1.5e-3 rather than the library's 5e-4 from scratch: at the same 8 epochs, held-out R@1 5.1%
# vs 4.3% and dev AUROC 0.701 vs 0.687 (one build each, docs/demo.md); 2 epochs over the
# DEMO_WEB_POSTS web world and its captions (484 steps) with 2 layers per tower: dev AUROC 0.78
# against 0.73-0.76 for the 4-layer towers without web captions (258 steps, the default until
# 2026-12-07; seeds 0-1), for 10% less CPU at one thread but 22 s more training at the pinned 2
# threads, which the 2-layer towers use less well; 3 epochs give 0.80-0.81 but take the demo to
# 9.6 minutes (docs/demo.md, "Web captions and shallower towers"); eval_every=1 writes
# curve.json (held-out R@1 and AUROC after every epoch)
DEMO_PRETRAIN = PretrainConfig(epochs=2, batch_size=128, lr=1.5e-3, eval_every=1, augment=False)
# every trained model gets the same trainer settings; sizes stay at the library defaults except
# for the epoch budget, which the two-core time budget sets, and the learning rate: at 8 epochs
# the library's 1e-4 under-trains, and 1e-3 scored at least as high on the demo world's dev
# split for every trained model (seeds 0-2; docs/model.md, "The demo's learning rate")
DEMO_TRAIN_OVERRIDES = [
    "train.epochs=8",
    "train.lr=1e-3",
    "train.patience=5",
    "train.progress=false",
    "model.dim=128",
]
DEMO_MODELS: tuple[str, ...] = (
    "sgmft",
    "cross_transformer",
    "gmu",
    "concat_mlp",
    "text_mlp",
    "image_mlp",
)
TRAINING_FREE: tuple[dict[str, Any], ...] = (
    # C from a coarser grid than the library's nine values: each fit takes seconds on two cores
    {"name": "linear-probe", "kind": "linear_probe", "Cs": [0.001, 0.01, 0.1, 1.0, 10.0]},
    {"name": "zeroshot-image", "kind": "zeroshot", "modality": "image"},
)

# the "web" of captions+web: a second world of the same settings, this much further in seeds
WEB_SEED_OFFSET = 1_000_003
# its size when DemoOptions.web_posts is None: 16,000 posts (about 14,100 pairs) for 2 epochs
# took the demo CLIP's dev AUROC from 0.64 to 0.73-0.76 (seeds 0-1) in fewer steps than the 8
# epochs on 2,464 pairs before (docs/demo.md, "More web posts"); 0 = a world the demo's size,
# of which as many pairs as the demo world has training posts (the rule before, and the quick
# demo's)
DEMO_WEB_POSTS = 16_000
QUICK_WEB_POSTS = 0
# captions+web also learns the web pictures' captions (the alt texts real web pairs come with):
# with them a build of the same cost ranks related above unrelated pictures better (docs/demo.md)
DEMO_WEB_CAPTIONS = True
QUICK_WEB_CAPTIONS = False

QUICK_POSTS = 120
QUICK_SCRATCH = ScratchClipConfig(
    vocab_size=400,
    text_width=32,
    vision_width=32,
    embed_dim=32,
    layers=1,
    heads=2,
    image_size=32,
    patch_size=16,
    max_text_tokens=48,
)
QUICK_PRETRAIN = PretrainConfig(epochs=1, batch_size=32, num_workers=0)
QUICK_TRAIN_OVERRIDES = [
    "train.epochs=2",
    "train.batch_size=16",
    "train.progress=false",
    "model.dim=32",
    "model.num_heads=2",
    "model.sim_layers=1",
]
QUICK_MODELS: tuple[str, ...] = ("sgmft", "text_mlp", "concat_mlp")

# Zero-shot prompts in the words the demo CLIP learned: the world's captions name scenes
# ("a photo of a classroom with ..."), so each class is described by the scenes its pictures
# show, the way one writes prompts for any CLIP in its own vocabulary. Templates are the
# library's (baselines/prompts.yaml).
DEMO_PROMPT_PHRASES: dict[str, list[str]] = {
    "home": ["living room", "kitchen", "bedroom", "home"],
    "office": ["office", "meeting room"],
    "school": ["classroom", "school"],
    "restaurant": ["restaurant", "cafe counter"],
    "shop": ["store aisle", "shop checkout", "shop"],
    "park": ["park"],
    "station": ["train platform", "station"],
    "gym": ["gym"],
}


@dataclass
class DemoOptions:
    """What `semloc demo` runs. Fields left at None take the default (or quick) sizes."""

    workdir: Path = Path("demo-out")
    quick: bool = False  # tiny sizes everywhere: seconds, for tests
    posts: int | None = None  # posts in the world (default: the world's default, 4000)
    seeds: int = 1  # training seeds per model; the report gives mean ± std when > 1
    world: dict[str, Any] = field(default_factory=dict)  # WorldConfig overrides (noise knobs)
    models: list[str] | None = None  # trained models (default: DEMO_MODELS / QUICK_MODELS)
    training_free: bool = True  # also the linear probe and zero-shot baselines
    config_file: Path | None = None  # semloc config file every trained model starts from
    overrides: list[str] = field(default_factory=list)  # dotted overrides for trained models
    backbone: Path | None = None  # use this CLIP directory instead of building the demo CLIP
    clip_data: str = DEFAULT_CLIP_DATA  # what the demo CLIP learns from (see write_clip_pairs)
    # posts of the web world captions+web learns from, every one with a picture and a text a
    # pair; 0: a world the demo's size, as many pairs as the demo has training posts; None: the
    # default (DEMO_WEB_POSTS, QUICK_WEB_POSTS)
    web_posts: int | None = None
    # captions+web also learns every web picture's caption (the alt text web pairs come with);
    # None: the default (DEMO_WEB_CAPTIONS, QUICK_WEB_CAPTIONS)
    web_captions: bool | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)  # PretrainConfig overrides
    scratch: dict[str, Any] = field(default_factory=dict)  # ScratchClipConfig overrides
    progress: bool = True


@dataclass
class DemoResult:
    workdir: Path
    summary: dict[str, Any]  # also in summary.json
    files: dict[str, Path]  # report, html, results, summary, figures


Say = Callable[[str], None]


def cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes: on a shared machine a
    steadier measure of a stage's cost than wall time."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _say_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# configuration of each stage


def world_config(opts: DemoOptions) -> Any:
    """The WorldConfig of this run, checked (SemlocError naming every bad setting)."""
    from semloc.demo.world import WorldConfig, config_from_dict, config_to_dict, validate_config

    data = config_to_dict(WorldConfig())
    if opts.quick:
        data["num_posts"] = QUICK_POSTS
    if opts.posts is not None:
        data["num_posts"] = opts.posts
    data.update(opts.world)
    cfg = config_from_dict(data)
    validate_config(cfg)
    return cfg


def _replace(obj: Any, changes: dict[str, Any], what: str) -> Any:
    known = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise SemlocError(
            f"unknown {what} setting(s) {', '.join(unknown)} (known: {sorted(known)})"
        )
    return dataclasses.replace(obj, **changes)


def clip_configs(opts: DemoOptions) -> tuple[PretrainConfig, ScratchClipConfig]:
    pretrain = QUICK_PRETRAIN if opts.quick else DEMO_PRETRAIN
    scratch = QUICK_SCRATCH if opts.quick else DEMO_SCRATCH
    pretrain = _replace(pretrain, {**opts.pretrain, "progress": opts.progress}, "pretraining")
    return pretrain, _replace(scratch, opts.scratch, "demo-CLIP size")


def train_overrides(opts: DemoOptions) -> list[str]:
    base = QUICK_TRAIN_OVERRIDES if opts.quick else DEMO_TRAIN_OVERRIDES
    return [*base, *opts.overrides]


def _key(obj: Any) -> str:
    return sha256_json(obj)[:12]


def check_clip_data(clip_data: str) -> None:
    """Raise SemlocError unless `clip_data` is one of CLIP_DATA."""
    if clip_data not in CLIP_DATA:
        raise SemlocError(f"clip data {clip_data!r} is not one of {', '.join(CLIP_DATA)}")


def check_options(opts: DemoOptions) -> None:
    """Raise SemlocError for any bad setting, before anything is written or trained."""
    from semloc.config import load_config
    from semloc.models import MODEL_NAMES

    world_config(opts)
    load_config(opts.config_file, train_overrides(opts))
    unknown = [m for m in opts.models or () if m not in MODEL_NAMES]
    if unknown:
        raise SemlocError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_NAMES)}")
    if opts.seeds < 1:
        raise SemlocError("seeds must be at least 1")
    if "epochs" in opts.pretrain and not (
        isinstance(opts.pretrain["epochs"], int) and opts.pretrain["epochs"] >= 1
    ):
        raise SemlocError(f"clip epochs must be an integer >= 1, got {opts.pretrain['epochs']!r}")
    pretrain, scratch = clip_configs(opts)
    check_config(pretrain)
    if opts.backbone is None:
        check_scratch(scratch)
    check_clip_data(opts.clip_data)
    size = opts.web_posts
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise SemlocError(f"web posts must be an integer >= 0, got {size!r}")
    if size is not None and opts.clip_data != "captions+web":
        raise SemlocError(
            f"web posts ({size}) are only used with clip data 'captions+web', "
            f"not {opts.clip_data!r}"
        )
    captions = opts.web_captions
    if captions is not None and not isinstance(captions, bool):
        raise SemlocError(f"web captions must be true or false, got {captions!r}")
    if captions and opts.clip_data != "captions+web":
        raise SemlocError(
            f"web captions are only used with clip data 'captions+web', not {opts.clip_data!r}"
        )
    if opts.clip_data == "captions+web" and web_posts(opts):
        try:
            world_config(dataclasses.replace(opts, posts=web_posts(opts)))  # a world that size
        except SemlocError as e:
            raise SemlocError(f"the web world of {web_posts(opts)} posts: {e}") from None


# ----------------------------------------------------------------------------------------------
# stages


def _stage_world(opts: DemoOptions, say: Say) -> tuple[Path, dict[str, Any]]:
    from semloc.demo.world import fingerprint, make_world

    cfg = world_config(opts)
    out = opts.workdir / "world" / fingerprint(cfg)[:12]
    info = make_world(out, cfg, progress=opts.progress)
    return out, info


def _paired_posts(world_dir: Path, splits: tuple[str, ...] = ("train",)) -> list[dict[str, Any]]:
    """The posts of `splits` with a picture and some text (by default the training posts: never
    dev or test posts; never labels)."""
    posts = []
    with open(world_dir / "posts.jsonl", encoding="utf-8") as f:
        for line in f:
            post = json.loads(line)
            if post.get("split") in splits and post.get("image") and post.get("text", "").strip():
                posts.append(post)
    return posts


def web_posts(opts: DemoOptions) -> int:
    """How many posts the web world of `captions+web` has (0: the demo world's number, see
    `web_pairs`)."""
    if opts.web_posts is not None:
        return opts.web_posts
    return QUICK_WEB_POSTS if opts.quick else DEMO_WEB_POSTS


def web_captions(opts: DemoOptions) -> bool:
    """Whether the demo CLIP also learns the web world's captions (only `captions+web` has a
    web world)."""
    if opts.clip_data != "captions+web":
        return False
    if opts.web_captions is not None:
        return opts.web_captions
    return QUICK_WEB_CAPTIONS if opts.quick else DEMO_WEB_CAPTIONS


def web_world_config(opts: DemoOptions) -> Any:
    """The world `captions+web` takes its (picture, post) pairs from: the demo world's settings
    with another seed, so other posts by other people, none of which the models train or are
    scored on (as a real CLIP's web pairs are not the user's data), and `web_posts(opts)` posts
    where that is not 0."""
    cfg = world_config(opts)
    size = web_posts(opts)
    return dataclasses.replace(
        cfg, seed=cfg.seed + WEB_SEED_OFFSET, num_posts=size or cfg.num_posts
    )


def web_pairs(world_dir: Path, web_dir: Path, every: bool = False) -> list[dict[str, Any]]:
    """The web world's posts with a picture and a text (every split: none of them is the demo's
    data): all of them with `every`, else as many as the demo world has training posts, so the
    build costs what `captions+posts` costs."""
    posts = _paired_posts(web_dir, ("train", "dev", "test"))
    return posts if every else posts[: len(_paired_posts(world_dir))]


def write_clip_pairs(
    world_dir: Path,
    out: Path,
    clip_data: str,
    web_dir: Path | None = None,
    every_web_post: bool = False,
    with_web_captions: bool = False,
) -> Path:
    """The demo CLIP's training data as a pairs file (`semloc pretrain-clip`'s format).

    ``captions``: every picture's caption, with the world's split (dev and test captions are
    the held-out set). ``captions+posts`` adds the training posts' own (picture, text) pairs,
    the kind of noisy web pair a real CLIP learned from (unrelated pictures and chatter
    included): without them the text tower never sees the words people post with, so the
    text-picture cosine SG-MFT is guided by would say little about a post.
    But then the CLIP has seen the very pairs the models train on: it matches them far better
    than unseen ones (on the default world the training posts' cosine is about 0.6 for related
    and unrelated pictures alike, the dev posts' 0.3 and 0.1), so the similarity SG-MFT is
    guided by is nearly blind on the training split and shifted on every other.
    ``captions+web`` adds as many (picture, text) pairs from the posts of `web_dir`, a world of
    the same settings with another seed (`web_world_config`): the words people post with,
    without the demo's own posts; with `every_web_post`, every pair `web_dir` has; with
    `with_web_captions`, also every picture of `web_dir` with its caption (the alt text a real
    CLIP's web pairs come with).
    Every way the dev posts are added as held-out probe pairs (``related``), scored only.
    The captions are marked ``filterable: false``: noisy-pair filtering
    (``PretrainConfig.filter_fraction``) only ever leaves out training posts.
    """
    check_clip_data(clip_data)

    def rel(image: str, world: Path = world_dir) -> str:
        return os.path.relpath(world / image, out.parent)

    def caption_rows(world: Path, split: str | None = None) -> list[dict[str, Any]]:
        """Every picture of `world` with its caption, in the world's split unless `split`."""
        with open(world / "captions.jsonl", encoding="utf-8") as f:
            captions = [json.loads(line) for line in f]
        return [
            {
                "image": rel(r["image"], world),
                "caption": r["caption"],
                "split": split or r["split"],
                "filterable": False,
            }
            for r in captions
        ]

    rows = caption_rows(world_dir)
    if clip_data == "captions+posts":
        for post in _paired_posts(world_dir):
            rows.append({"image": rel(post["image"]), "caption": post["text"], "split": "train"})
    if clip_data == "captions+web":
        if web_dir is None:
            raise SemlocError("clip data captions+web needs the web world's directory")
        for post in web_pairs(world_dir, web_dir, every_web_post):
            rows.append(
                {"image": rel(post["image"], web_dir), "caption": post["text"], "split": "train"}
            )
        if with_web_captions:
            rows += caption_rows(web_dir, "train")
    # dev posts with a picture and a text, each marked with whether its picture is related
    # (the world's ground truth): held-out probe pairs, never trained on, for the ROC AUC of
    # related against unrelated pictures that pretraining reports (and curve.json tracks)
    from semloc.demo.diagnose import noise_truth

    truth = noise_truth(world_dir)
    for post in _paired_posts(world_dir, ("dev",)):
        rows.append(
            {
                "image": rel(post["image"]),
                "caption": post["text"],
                "split": "dev",
                "related": not truth[post["id"]].unrelated_picture,
            }
        )
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def clip_identity(opts: DemoOptions, world_sha256: str) -> dict[str, Any]:
    """What decides the demo CLIP's weights: its cache key is a hash of this."""
    pretrain, scratch = clip_configs(opts)
    settings = asdict(pretrain)
    del settings["progress"]
    if pretrain.filter_fraction == 0:  # unfiltered: the key of the builds made before filtering
        del settings["filter_fraction"], settings["filter_after"]
    identity = {
        "pipeline": PIPELINE_VERSION,
        "world": world_sha256,
        "data": opts.clip_data,
        "pretrain": settings,
        "scratch": asdict(scratch),
    }
    if opts.clip_data == "captions+web" and web_posts(opts):
        identity["web_posts"] = web_posts(opts)  # 0: the key of the builds made before it
    if web_captions(opts):
        identity["web_captions"] = True  # absent: the key of the builds made before it
    return identity


def _stage_clip(
    opts: DemoOptions, world_dir: Path, world_info: dict[str, Any], say: Say
) -> tuple[Path, dict[str, Any], bool]:
    pretrain, scratch = clip_configs(opts)
    identity = clip_identity(opts, world_info["content_sha256"])
    key = _key(identity)
    out = opts.workdir / "clip" / key
    metrics_path = out / METRICS_FILE
    if metrics_path.is_file():
        return out, json.loads(metrics_path.read_text()), True
    web_dir = None
    if opts.clip_data == "captions+web":
        from semloc.demo.world import fingerprint, make_world

        web = web_world_config(opts)
        web_dir = opts.workdir / "web" / fingerprint(web)[:12]
        say(f"      the web: a world of the same settings, seed {web.seed}: {web_dir}")
        make_world(web_dir, web, progress=opts.progress)
    pairs = write_clip_pairs(
        world_dir,
        opts.workdir / "clip" / f"{key}.pairs.jsonl",
        opts.clip_data,
        web_dir,
        every_web_post=web_posts(opts) > 0,
        with_web_captions=web_captions(opts),
    )
    # the tokenizer learns its merges from the training pairs' texts; with captions only, the
    # training posts' texts are added so their words are tokens rather than bytes
    extra = [p["text"] for p in _paired_posts(world_dir)] if opts.clip_data == "captions" else []
    result = pretrain_clip(
        pairs,
        out,
        pretrain,
        scratch=scratch,
        tokenizer_texts=extra,
        overwrite=True,  # a directory without metrics is an interrupted build
    )
    atomic_write_json(opts.workdir / "clip" / f"{key}.identity.json", identity)
    return out, result.metrics, False


def _given_clip(opts: DemoOptions) -> tuple[Path, dict[str, Any]]:
    """A CLIP passed with `backbone`; its own pretrain_metrics.json when it has one."""
    from semloc.clip.backbone import load_backbone

    assert opts.backbone is not None
    path = Path(opts.backbone)
    load_backbone(path)  # a clear error now for a directory that is not a complete CLIP
    metrics_path = path / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return path, metrics


def _stage_features(
    opts: DemoOptions, world_dir: Path, world_info: dict[str, Any], clip_dir: Path
) -> tuple[Path, bool]:
    from semloc.clip.backbone import weight_files, weights_sha256
    from semloc.clip.extract import extract_to_store
    from semloc.config import ExtractConfig

    cfg = ExtractConfig(
        backbone=str(clip_dir),
        batch_size=64,
        num_workers=0 if opts.quick else 2,
        progress=opts.progress,
        device="cpu",
    )
    # one store per (world, CLIP weights): a given CLIP may be used with several worlds
    key = _key(
        {
            "world": world_info["content_sha256"],
            "clip": weights_sha256(weight_files(clip_dir)),
            "version": PIPELINE_VERSION,
        }
    )
    out = opts.workdir / "features" / key
    result = extract_to_store(world_dir / "posts.jsonl", out, cfg)
    return out, result.already_complete


def write_demo_prompts(path: Path) -> Path:
    from semloc.probes.zeroshot import load_prompts

    templates = load_prompts().templates
    text = (
        "# Zero-shot prompts for the demo world, written in the words of its captions\n"
        + yaml.safe_dump({"templates": templates, "classes": DEMO_PROMPT_PHRASES}, sort_keys=False)
    )
    atomic_write_text(path, text)
    return path


def demo_grid(opts: DemoOptions, store: Path, prompts: Path) -> dict[str, Any]:
    models: list[Any] = list(opts.models or (QUICK_MODELS if opts.quick else DEMO_MODELS))
    if opts.training_free:
        for entry in TRAINING_FREE:
            models.append(
                {**entry, "prompts": str(prompts)} if entry["kind"] == "zeroshot" else entry
            )
    grid: dict[str, Any] = {
        "name": "semloc demo",
        "store": str(store.resolve()),
        "seeds": max(1, opts.seeds),
        "split": "test",
        "overrides": train_overrides(opts),
        "models": models,
    }
    if opts.config_file is not None:
        grid["config"] = str(Path(opts.config_file).resolve())
    return grid


def runs_key(opts: DemoOptions, store_key: str, overrides: list[str]) -> str:
    """The key of the demo's runs directory: what the runs compute (the store, the config file,
    the overrides and the config they resolve to), so changing an override or the config file's
    content, or a newer semloc changing a default or adding a setting, starts a fresh set of
    cells instead of colliding with cells computed otherwise (which the grid would refuse)."""
    from semloc.config import config_to_dict, load_config

    return _key(
        {
            "store": store_key,
            "config": str(opts.config_file) if opts.config_file else None,
            "overrides": overrides,
            "resolved": config_to_dict(load_config(opts.config_file, overrides)),
            "version": PIPELINE_VERSION,
            "runs": RUNS_VERSION,
        }
    )


def _stage_models(opts: DemoOptions, store: Path, store_key: str) -> Any:
    from semloc.experiment import run_grid

    prompts = write_demo_prompts(opts.workdir / "prompts.yaml")
    grid = demo_grid(opts, store, prompts)
    key = runs_key(opts, store_key, grid["overrides"])
    # per-run plots (confusion, per-class F1) cost seconds each; the quick run skips them
    return run_grid(grid, opts.workdir / "runs" / key, plots=not opts.quick)


def _stage_people(
    opts: DemoOptions, world_dir: Path, store: Path, grid_results: Any
) -> dict[str, Any] | None:
    """Profile the test users with the trained run best on dev (never test) and compare with
    the world's true routines (semloc.demo.people). None when no run finished."""
    from semloc.demo.people import best_run_on_dev, profile_test_users

    runs = [Path(c["dir"]) for c in grid_results.cells if c.get("dir")]
    run = best_run_on_dev(runs)
    if run is None:
        return None
    return profile_test_users(world_dir, run, store, opts.workdir / "people", quick=opts.quick)


def zero_shot_on_images(store_path: Path, prompts: Path, split: str = "test") -> dict[str, Any]:
    """Zero-shot accuracy of the demo CLIP on the pictures of `split` alone (posts with one).

    This scores the CLIP, not the post: unrelated pictures (selfies, memes) are counted as
    errors, so the ceiling is the share of related pictures."""
    from semloc.features.store import FeatureStore
    from semloc.metrics import classification_metrics
    from semloc.probes.pooled import labelled, read_pooled
    from semloc.probes.zeroshot import (
        build_zero_shot_classifier,
        load_prompts,
        text_encoder_for_store,
        zero_shot_logits,
    )

    store = FeatureStore(store_path)
    idx = labelled(store, split)
    pooled = read_pooled(store, idx)
    keep = pooled.image_present
    if not keep.any():
        return {"posts": 0}
    classifier = build_zero_shot_classifier(
        text_encoder_for_store(store), store.labels, load_prompts(prompts)
    )
    logits = zero_shot_logits(classifier, pooled, "image")[keep]
    m = classification_metrics(pooled.labels[keep], logits.argmax(1), store.labels)
    return {
        "posts": int(keep.sum()),
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "chance": 1.0 / len(store.labels),
    }


# ----------------------------------------------------------------------------------------------
# the whole demo


def run_demo(opts: DemoOptions, say: Say = _say_stderr) -> DemoResult:
    """Run (or resume) every stage, then write the report. Returns the summary and files."""
    from semloc.clip.pretrain import quiet_transformers

    check_options(opts)
    opts.workdir = Path(opts.workdir)
    opts.workdir.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        return _run(opts, say)


@contextmanager
def _timed(stage: str, timings: dict[str, float], cpu: dict[str, float]) -> Iterator[None]:
    """Record the wall and CPU seconds of the enclosed stage under `stage`."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    yield
    timings[stage] = time.perf_counter() - t0
    cpu[stage] = cpu_seconds() - c0


def _run(opts: DemoOptions, say: Say) -> DemoResult:
    from semloc.demo.report import write_report

    timings: dict[str, float] = {}  # wall seconds per stage
    cpu: dict[str, float] = {}  # CPU seconds (all threads and worker processes) per stage
    cached: dict[str, bool] = {}
    t_all, c_all = time.perf_counter(), cpu_seconds()

    say(f"[1/5] demo world -> {opts.workdir / 'world'}")
    with _timed("world", timings, cpu):
        world_dir, world_info = _stage_world(opts, say)
    counts = world_info["counts"]
    say(
        f"      {counts['posts']} posts, {counts['images']} pictures, "
        f"{counts['distinct_words']} distinct words ({timings['world']:.0f}s)"
    )

    with _timed("clip", timings, cpu):
        if opts.backbone is not None:
            say(f"[2/5] CLIP: {opts.backbone} (given; no demo CLIP is built)")
            clip_dir, clip_metrics = _given_clip(opts)
            cached["clip"] = True
        else:
            what = {
                "captions+posts": "captions and training posts",
                "captions+web": "captions and the posts of another world",
            }.get(opts.clip_data, "captions")
            say(f"[2/5] demo CLIP: contrastive pretraining on the world's {what}")
            clip_dir, clip_metrics, cached["clip"] = _stage_clip(opts, world_dir, world_info, say)
    held = clip_metrics.get("heldout") or {}
    if held:
        say(
            f"      {'cached' if cached['clip'] else 'built'}: {clip_dir}; held-out R@1 "
            f"{held['r_at_1']:.3f}, R@5 {held['r_at_5']:.3f}, cosine matched "
            f"{held['cos_matched']:.3f} vs mismatched {held['cos_mismatched']:.3f} "
            f"({timings['clip']:.0f}s)"
        )

    say("[3/5] CLIP features of every post (semloc extract's code path)")
    with _timed("extract", timings, cpu):
        store, cached["features"] = _stage_features(opts, world_dir, world_info, clip_dir)
    say(
        f"      {'cached' if cached['features'] else 'written'}: {store} ({timings['extract']:.0f}s)"
    )

    say("[4/5] SG-MFT and baselines: train on train, select on dev, evaluate on test")
    with _timed("models", timings, cpu):
        grid_results = _stage_models(opts, store, store.name)
        zero_shot = zero_shot_on_images(store, opts.workdir / "prompts.yaml")
    say(
        f"      {len(grid_results.cells)} runs in {grid_results.out_dir} ({timings['models']:.0f}s)"
    )

    say("      people: profile of the test users, recovered vs true routines")
    with _timed("people", timings, cpu):
        people = _stage_people(opts, world_dir, store, grid_results)
    if people:
        errors = ", ".join(f"{k} {v['abs_error']:.3f}" for k, v in people["population"].items())
        say(
            f"      {people['profiled_users']} of {people['test_users']} test users profiled "
            f"({people['model']}); share error per estimator: {errors} ({timings['people']:.0f}s)"
        )

    say("[5/5] report")
    # summary holds `timings` and `cpu` themselves: the report stage's figures reach summary.json
    with _timed("report", timings, cpu):
        summary = {
            "format": "semloc-demo-summary-1",
            "command": demo_command(opts),
            "workdir": str(opts.workdir),
            "quick": opts.quick,
            "seeds": list(range(max(1, opts.seeds))),
            "world": {
                "dir": str(world_dir),
                "fingerprint": world_info["fingerprint"],
                "config": world_info["config"],
                "counts": {k: counts[k] for k in ("posts", "images", "by_split", "realised")},
                "distinct_words": counts["distinct_words"],
            },
            "clip": {
                "dir": str(clip_dir),
                "given": opts.backbone is not None,
                "cached": cached["clip"],
                "metrics": {k: clip_metrics.get(k) for k in _CLIP_KEYS} if clip_metrics else None,
                "zero_shot_images": zero_shot,
            },
            "features": {"dir": str(store), "cached": cached["features"]},
            "runs": {"dir": str(grid_results.out_dir), "overrides": train_overrides(opts)},
            "rows": _plain(grid_results.rows),
            "cells": _plain(grid_results.cells),
            "people": _plain(people),
            "timings": timings,
            "cpu_seconds": cpu,
        }
        files = write_report(summary, opts.workdir)
    timings["total"] = time.perf_counter() - t_all
    cpu["total"] = cpu_seconds() - c_all
    atomic_write_json(opts.workdir / "summary.json", summary)
    files["summary"] = opts.workdir / "summary.json"
    return DemoResult(workdir=opts.workdir, summary=summary, files=files)


_CLIP_KEYS = (
    "heldout",
    "heldout_before",
    "pairs",
    "logit_scale",
    "steps",
    "train_seconds",
    "pairs_per_second",
    "config",
    "scratch",
    "history",
)


def _plain(obj: Any) -> Any:
    """JSON-ready copy (paths and numpy scalars to plain values)."""
    return json.loads(json.dumps(obj, default=_default))


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def demo_command(opts: DemoOptions) -> str:
    """The command line that reproduces this run."""
    parts = ["semloc", "demo"]
    if str(opts.workdir) != "demo-out":
        parts += ["--workdir", str(opts.workdir)]
    if opts.quick:
        parts.append("--quick")
    if opts.posts is not None:
        parts += ["--posts", str(opts.posts)]
    if opts.seeds != 1:
        parts += ["--seeds", str(opts.seeds)]
    for k, v in opts.world.items():
        parts += ["--world", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    if opts.models:
        parts += ["--models", ",".join(opts.models)]
    if opts.backbone is not None:
        parts += ["--backbone", str(opts.backbone)]
    if opts.clip_data != DemoOptions.clip_data:
        parts += ["--clip-data", opts.clip_data]
    if opts.web_posts is not None:
        parts += ["--clip-web-posts", str(opts.web_posts)]
    if opts.web_captions is not None:
        parts.append("--clip-web-captions" if opts.web_captions else "--no-clip-web-captions")
    if "layers" in opts.scratch:
        parts += ["--clip-layers", str(opts.scratch["layers"])]
    if "epochs" in opts.pretrain:
        parts += ["--clip-epochs", str(opts.pretrain["epochs"])]
    if "filter_fraction" in opts.pretrain:
        parts += ["--clip-filter", str(opts.pretrain["filter_fraction"])]
    if opts.config_file:
        parts += ["--config", str(opts.config_file)]
    parts += opts.overrides
    return " ".join(parts)
