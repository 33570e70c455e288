"""A feature-level study world: CLIP-like features whose noise *and* similarity signal are knobs.

The demo world (`semloc.demo.world`) needs a CLIP to be trained and run; its text-picture cosine
is whatever that CLIP learned. This world skips pictures and CLIPs: it writes CLIP-like features
straight into a feature store (through the real `FeatureStoreWriter`), with

- controlled rates of unrelated pictures (`unrelated_image_rate`, of posts with a picture),
  uninformative texts (`uninformative_text_rate`) and posts without a picture (`no_image_rate`);
- a controlled strength of the text-picture similarity signal: `similarity_auroc` is the ROC AUC
  with which the cosine of the pooled embeddings ranks posts with a related picture above posts
  with an unrelated one (0.5 = the cosine is blind to mismatches, 1 = it sees every one);
- token features related to the pooled embeddings as in a real CLIP: the pooled text embedding
  is a linear projection of the last text token (CLIP's EOS token) and the pooled image embedding
  one of the first image token (CLS), so a model reading tokens sees what the pooled cosine sees.

How a post is made. Every class k has a concept c_k that both modalities express in a shared
direction (what a CLIP aligns), and modality-specific class directions (what each tower knows
about the class but does not align). A post of class y with a related picture shares a
post-specific latent z between its text and its picture (the scene the text talks about). Its
pooled embeddings are

    g_t = s (c_y [informative text only] + z)   + b m^t_y [informative only] + noise
    g_v = s (c_k + z_v)                         + b m^v_k                    + noise

where k = y and z_v = z for a related picture, and k is another class or one of four unrelated
picture kinds (selfie, pet, meme, other place), with a fresh z_v, for an unrelated one. The shared
strength s is found by bisection so that the cosine's AUROC on the world's own posts equals
`similarity_auroc`. Text tokens are words (class words of y with probability `text_signal` for
an informative text, filler words otherwise) plus the EOS token that carries g_t; image tokens
are patches (objects of the picture's content with probability `image_signal`, background
otherwise) after the CLS token that carries g_v.

    from semloc.features.study import StudyConfig, make_study_world
    world = make_study_world("study/", StudyConfig(similarity_auroc=0.95))
    # world.store: a finished FeatureStore; study/slices.csv: id -> slice; study/world.json

    python -m semloc.features.study study/ --similarity-auroc 0.95 --unrelated-images 0.25

`slices.csv` (columns `id`, `slice`) is what `python -m semloc.demo.diagnose --slices` reads for
per-slice accuracy; a post with both an unrelated picture and an uninformative text has the slice
`unrelated_image+uninformative_text`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semloc.errors import SemlocError
from semloc.features.store import FeatureStore, FeatureStoreWriter, ShardData
from semloc.io import atomic_path, atomic_write_json

STUDY_DIMS = {"text_width": 64, "vision_width": 96, "embed_dim": 32, "num_image_tokens": 17}
UNRELATED_KINDS = ("selfie", "pet", "meme", "other_class")
SLICES_FILE = "slices.csv"
WORLD_FILE = "world.json"


@dataclass
class StudyConfig:
    """Every knob of the study world; the world is a pure function of it."""

    num_posts: int = 4000
    num_classes: int = 8
    unrelated_image_rate: float = 0.25  # of posts with a picture
    uninformative_text_rate: float = 0.25
    no_image_rate: float = 0.1
    similarity_auroc: float = 0.9  # related vs unrelated picture, ROC AUC of the pooled cosine
    text_signal: float = 0.35  # chance that a word of an informative text is a class word
    image_signal: float = 0.35  # chance that a patch shows an object of the picture's content
    pooled_class_signal: float = 0.5  # b: modality-specific class direction in the embeddings
    token_noise: float = 1.0  # std of the noise added to every token (word / object ~ norm 1)
    max_text_tokens: int = 16  # words + EOS
    dims: dict[str, int] = field(default_factory=lambda: dict(STUDY_DIMS))
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0


@dataclass
class StudyWorld:
    root: Path
    store: FeatureStore
    slices_file: Path
    info: dict[str, Any]  # also in world.json: config, strength s, measured AUROC, rates


def validate_study_config(cfg: StudyConfig) -> None:
    """SemlocError naming every bad setting."""
    problems = []
    for name in ("unrelated_image_rate", "uninformative_text_rate", "no_image_rate"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {v}")
    for name in ("text_signal", "image_signal"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {v}")
    if not 0.5 <= cfg.similarity_auroc < 1.0:
        problems.append(f"similarity_auroc must be in [0.5, 1), got {cfg.similarity_auroc}")
    if cfg.num_classes < 2:
        problems.append(f"num_classes must be >= 2, got {cfg.num_classes}")
    if cfg.num_posts < 10 * cfg.num_classes:
        problems.append(f"num_posts must be >= 10 per class, got {cfg.num_posts}")
    if cfg.max_text_tokens < 2:
        problems.append(f"max_text_tokens must be >= 2, got {cfg.max_text_tokens}")
    if cfg.pooled_class_signal < 0 or cfg.token_noise < 0:
        problems.append("pooled_class_signal and token_noise must be >= 0")
    d = cfg.dims
    keys = ("text_width", "vision_width", "embed_dim", "num_image_tokens")
    if set(d) != set(keys):
        problems.append(f"dims must have exactly the keys {keys}, got {sorted(d)}")
    elif d["text_width"] < d["embed_dim"] or d["vision_width"] < d["embed_dim"]:
        problems.append("dims: text_width and vision_width must be >= embed_dim")
    elif d["num_image_tokens"] < 2:
        problems.append("dims: num_image_tokens must be >= 2 (CLS and a patch)")
    if len(cfg.splits) != 3 or abs(sum(cfg.splits) - 1.0) > 1e-6 or min(cfg.splits) < 0:
        problems.append(f"splits must be three fractions summing to 1, got {cfg.splits}")
    if problems:
        raise SemlocError("bad study-world settings: " + "; ".join(problems))


def auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """ROC AUC of scores: positives ranked above negatives (None when a side is empty)."""
    from scipy.stats import rankdata

    if len(positive) == 0 or len(negative) == 0:
        return None
    # Mann-Whitney U: the chance that a random positive outranks a random negative (ties half)
    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q[:, :cols]  # (rows, cols), q.T @ q = I


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)


def _plan(cfg: StudyConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Labels, splits and which posts carry which noise: exact counts, random members."""
    n, c = cfg.num_posts, cfg.num_classes
    y = rng.permutation(np.arange(n) % c)

    def exact(pool: np.ndarray, rate: float) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        out[rng.choice(pool, round(rate * len(pool)), replace=False)] = True
        return out

    everyone = np.arange(n)
    no_image = exact(everyone, cfg.no_image_rate)
    unrelated = exact(np.flatnonzero(~no_image), cfg.unrelated_image_rate)
    uninformative = exact(everyone, cfg.uninformative_text_rate)
    # an unrelated picture shows another class's place or one of three non-place kinds
    kind = np.full(n, -1)  # -1 related; index into UNRELATED_KINDS
    kind[unrelated] = rng.integers(0, len(UNRELATED_KINDS), int(unrelated.sum()))
    other = (y + rng.integers(1, c, n)) % c
    # content of the picture: a class index, or c + j for non-place kind j
    content = np.where(kind < 0, y, np.where(kind == 3, other, c + np.maximum(kind, 0)))
    cut = np.cumsum(cfg.splits)
    u = rng.random(n)
    split = np.where(u < cut[0], "train", np.where(u < cut[1], "dev", "test"))
    return {
        "y": y,
        "no_image": no_image,
        "unrelated": unrelated,
        "uninformative": uninformative,
        "kind": kind,
        "content": content,
        "split": split,
    }


def _pooled_parts(
    cfg: StudyConfig, plan: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The shared (scaled by s) and the rest of both pooled embeddings, before choosing s."""
    n, c, p = cfg.num_posts, cfg.num_classes, cfg.dims["embed_dim"]
    kinds = c + len(UNRELATED_KINDS) - 1  # classes and the three non-place kinds
    concept = _unit_rows(rng, kinds, p)
    own_t, own_v = _unit_rows(rng, kinds, p), _unit_rows(rng, kinds, p)
    informative = ~plan["uninformative"]
    z = _unit_rows(rng, n, p)
    z_other = _unit_rows(rng, n, p)
    z_v = np.where(plan["unrelated"][:, None], z_other, z)
    b = cfg.pooled_class_signal
    shared_t = concept[plan["y"]] * informative[:, None] + z
    shared_v = concept[plan["content"]] + z_v
    rest_t = b * own_t[plan["y"]] * informative[:, None] + rng.standard_normal((n, p)) / np.sqrt(p)
    rest_v = b * own_v[plan["content"]] + rng.standard_normal((n, p)) / np.sqrt(p)
    return {"shared_t": shared_t, "shared_v": shared_v, "rest_t": rest_t, "rest_v": rest_v}


def _pooled_auroc(parts: dict[str, np.ndarray], plan: dict[str, np.ndarray], s: float) -> float:
    g_t = s * parts["shared_t"] + parts["rest_t"]
    g_v = s * parts["shared_v"] + parts["rest_v"]
    cos = _cosine(g_t, g_v)
    present = ~plan["no_image"]
    value = auroc(cos[present & ~plan["unrelated"]], cos[present & plan["unrelated"]])
    return 0.5 if value is None else value


def _calibrate(
    parts: dict[str, np.ndarray], plan: dict[str, np.ndarray], target: float
) -> tuple[float, float]:
    """The strength s at which the world's own cosine AUROC is `target` (bisection)."""
    lo, hi = 0.0, 1.0
    while _pooled_auroc(parts, plan, hi) < target:
        hi *= 2
        if hi > 1e4:
            raise SemlocError(
                f"similarity_auroc={target} cannot be reached with these settings (the highest "
                f"reachable is {_pooled_auroc(parts, plan, hi):.3f})"
            )
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _pooled_auroc(parts, plan, mid) < target else (lo, mid)
    s = (lo + hi) / 2
    return s, _pooled_auroc(parts, plan, s)


def slice_name(unrelated: bool, uninformative: bool, no_image: bool) -> str:
    """The slice label of a post: clean, or its kinds of noise joined by '+'."""
    parts = []
    if no_image:
        parts.append("no_image")
    if unrelated:
        parts.append("unrelated_image")
    if uninformative:
        parts.append("uninformative_text")
    return "+".join(parts) or "clean"


def make_study_world(
    out_dir: str | Path, cfg: StudyConfig | None = None, *, shard_size: int = 512
) -> StudyWorld:
    """Write the store (`out_dir/store`), `slices.csv` and `world.json`; returns them.

    An existing finished world in `out_dir` is an error (choose another directory)."""
    cfg = cfg or StudyConfig()
    validate_study_config(cfg)
    root = Path(out_dir)
    if (root / WORLD_FILE).exists() or (root / "store").exists():
        raise SemlocError(f"{root} already holds a study world; choose another directory")
    rng = np.random.default_rng(cfg.seed)
    plan = _plan(cfg, rng)
    parts = _pooled_parts(cfg, plan, rng)
    s, measured = _calibrate(parts, plan, cfg.similarity_auroc)
    g_t = s * parts["shared_t"] + parts["rest_t"]  # (n, p) pooled text embedding
    g_v = s * parts["shared_v"] + parts["rest_v"]  # (n, p) pooled image embedding

    n, c = cfg.num_posts, cfg.num_classes
    dt, dv, p, nv = (
        cfg.dims[k] for k in ("text_width", "vision_width", "embed_dim", "num_image_tokens")
    )
    kinds = c + len(UNRELATED_KINDS) - 1
    words_per_class, fillers, objects_per_kind, backgrounds = 6, 40, 6, 12
    class_words = _unit_rows(rng, c * words_per_class, dt).reshape(c, words_per_class, dt)
    filler_words = _unit_rows(rng, fillers, dt)
    objects = _unit_rows(rng, kinds * objects_per_kind, dv).reshape(kinds, objects_per_kind, dv)
    background = _unit_rows(rng, backgrounds, dv)
    # pooled = last text token @ proj_t (EOS) and first image token @ proj_v (CLS), exactly
    proj_t = _orthonormal_columns(rng, dt, p)  # (dt, p)
    proj_v = _orthonormal_columns(rng, dv, p)  # (dv, p)

    def lift(g: np.ndarray, proj: np.ndarray) -> np.ndarray:
        # a token whose projection is g, plus noise in the directions the projection ignores
        noise = rng.standard_normal((g.shape[0], proj.shape[0])) * cfg.token_noise
        noise -= (noise @ proj) @ proj.T
        return g @ proj.T + noise / np.sqrt(proj.shape[0])

    eos = lift(g_t, proj_t)  # (n, dt)
    cls = lift(g_v, proj_v)  # (n, dv)
    lengths = rng.integers(2, cfg.max_text_tokens + 1, n)  # words + EOS
    noise_t = cfg.token_noise / np.sqrt(dt)
    noise_v = cfg.token_noise / np.sqrt(dv)

    header = {
        "backbone": {"name": "study-world", "weights_sha256": "none"},
        "preprocessing": {"kind": "study-world", "max_text_tokens": cfg.max_text_tokens},
        "dtype": "float16",
        "dims": dict(cfg.dims),
    }
    root.mkdir(parents=True, exist_ok=True)
    writer = FeatureStoreWriter(root / "store", header)
    labels = [f"class_{k}" for k in range(c)]
    ids = [f"study-{i:06d}" for i in range(n)]
    for shard_index, start in enumerate(range(0, n, shard_size)):
        rows = range(start, min(n, start + shard_size))
        text_tokens = []
        for i in rows:
            k = int(lengths[i]) - 1  # words
            informative = not plan["uninformative"][i]
            is_class = rng.random(k) < (cfg.text_signal if informative else 0.0)
            words = np.where(
                is_class[:, None],
                class_words[plan["y"][i], rng.integers(0, words_per_class, k)],
                filler_words[rng.integers(0, fillers, k)],
            )
            words = words + rng.standard_normal((k, dt)) * noise_t
            text_tokens.append(np.vstack([words, eos[i : i + 1]]).astype(np.float32))
        m = len(rows)
        sl = slice(start, start + m)
        is_obj = rng.random((m, nv - 1)) < cfg.image_signal
        obj = objects[plan["content"][sl][:, None], rng.integers(0, objects_per_kind, (m, nv - 1))]
        bg = background[rng.integers(0, backgrounds, (m, nv - 1))]
        patches = np.where(is_obj[..., None], obj, bg)
        patches = patches + rng.standard_normal(patches.shape) * noise_v
        image_tokens = np.concatenate([cls[sl][:, None, :], patches], axis=1)
        present = ~plan["no_image"][sl]
        image_tokens[~present] = 0.0
        image_embed = g_v[sl].copy()
        image_embed[~present] = 0.0
        writer.write_shard(
            shard_index,
            ShardData(
                ids=ids[sl],
                labels=[labels[k] for k in plan["y"][sl]],
                splits=plan["split"][sl].tolist(),
                text_tokens=text_tokens,
                image_tokens=image_tokens.astype(np.float32),
                text_embed=g_t[sl].astype(np.float32),
                image_embed=image_embed.astype(np.float32),
                image_present=present,
            ),
        )
    writer.finalize({"extraction": {"source": "study-world", "seed": cfg.seed}})

    slices_file = root / SLICES_FILE
    with atomic_path(slices_file) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "slice"])
        for i in range(n):
            w.writerow(
                [
                    ids[i],
                    slice_name(plan["unrelated"][i], plan["uninformative"][i], plan["no_image"][i]),
                ]
            )
    present = ~plan["no_image"]
    info = {
        "format": "semloc-study-world-1",
        "config": asdict(cfg),
        "shared_strength": s,
        "measured": {
            "similarity_auroc": measured,
            "no_image_rate": float(plan["no_image"].mean()),
            "unrelated_image_rate": float(plan["unrelated"][present].mean())
            if present.any()
            else 0,
            "uninformative_text_rate": float(plan["uninformative"].mean()),
        },
    }
    atomic_write_json(root / WORLD_FILE, info)
    return StudyWorld(
        root=root, store=FeatureStore(root / "store"), slices_file=slices_file, info=info
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m semloc.features.study",
        description="write a feature-level study world: CLIP-like features with controlled "
        "noise rates and a controlled text-picture similarity signal",
    )
    parser.add_argument("out", help="directory for store/, slices.csv and world.json")
    d = StudyConfig()
    parser.add_argument("--posts", type=int, default=d.num_posts)
    parser.add_argument("--classes", type=int, default=d.num_classes)
    parser.add_argument("--unrelated-images", type=float, default=d.unrelated_image_rate)
    parser.add_argument("--uninformative-texts", type=float, default=d.uninformative_text_rate)
    parser.add_argument("--no-images", type=float, default=d.no_image_rate)
    parser.add_argument(
        "--similarity-auroc",
        type=float,
        default=d.similarity_auroc,
        help="ROC AUC of the pooled cosine, related vs unrelated pictures (0.5 to < 1)",
    )
    parser.add_argument("--text-signal", type=float, default=d.text_signal)
    parser.add_argument("--image-signal", type=float, default=d.image_signal)
    parser.add_argument("--seed", type=int, default=d.seed)
    args = parser.parse_args(argv)
    cfg = StudyConfig(
        num_posts=args.posts,
        num_classes=args.classes,
        unrelated_image_rate=args.unrelated_images,
        uninformative_text_rate=args.uninformative_texts,
        no_image_rate=args.no_images,
        similarity_auroc=args.similarity_auroc,
        text_signal=args.text_signal,
        image_signal=args.image_signal,
        seed=args.seed,
    )
    try:
        world = make_study_world(args.out, cfg)
    except SemlocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = world.info["measured"]
    print(
        f"{world.store.root}: {cfg.num_posts} posts; similarity AUROC {m['similarity_auroc']:.3f}, "
        f"unrelated {m['unrelated_image_rate']:.3f}, uninformative {m['uninformative_text_rate']:.3f}, "
        f"no image {m['no_image_rate']:.3f}; slices in {world.slices_file}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
