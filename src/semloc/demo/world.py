"""The demo world: generated posts (text + image) with known semantic-location labels.

No pretrained vision-language weights can be downloaded offline, so the demo runs the whole
pipeline on a world generated here: procedurally drawn scene pictures, post texts written the way
people post, and one descriptive caption per picture (for contrastive CLIP pretraining).

    cfg = WorldConfig(num_posts=4000, seed=0)
    info = make_world("demo/world", cfg)     # posts.jsonl, captions.jsonl, images/, world.json

How much each modality reveals is set by the config, so the world can be retuned without code
changes. The default design (see `WorldConfig`) makes both modalities necessary:

- noise: unrelated pictures (selfies, pets, memes, another class's scene), uninformative texts
  ("lol", "monday again") and posts without a picture;
- text-confusable pairs (office/school, gym/park): many of their texts use only words both share,
  while their pictures differ (chalkboards and school desks vs monitors and cubicles);
- image-confusable pairs (home/restaurant, shop/station): many of their pictures come from a
  neutral layout both share (a dining area, a busy hall), while their texts differ;
- modality-dominant classes: for a text-dominant class the picture is usually a generic close-up
  any class could have posted; for an image-dominant class the text is usually vague.

Every random choice derives from the seed and the post index, so the same config always writes
byte-identical files, whatever the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semloc.data.records import SPLITS
from semloc.data.timestamps import resolve_timezone
from semloc.demo import _scenes, _texts
from semloc.demo._vocab import CLASSES
from semloc.demo.people import add_people
from semloc.errors import SemlocError
from semloc.io import atomic_write_json, atomic_write_text, sha256_json

log = logging.getLogger(__name__)

# Bump when the same config would produce different files (new objects, wording, ...), so a world
# written by an older generator is not mistaken for the current one.
GENERATOR_VERSION = "2"  # 2: posts carry an author (user) and a time (created_at)

UNRELATED_KINDS: dict[str, float] = {"selfie": 0.3, "pet": 0.2, "meme": 0.2, "other_class": 0.3}
MIN_IMAGE_SIZE = 96  # below this the small objects (cups, phones, clocks) become unrecognisable

# files this module owns inside the output directory
POSTS_FILE = "posts.jsonl"
CAPTIONS_FILE = "captions.jsonl"
WORLD_FILE = "world.json"
PEOPLE_FILE = "people.json"  # the authors' routines and true location shares (ground truth)
IMAGES_DIR = "images"
_PARTIAL_MARKER = ".demo-world-partial"  # present while a world is being (re)written
_IMAGES_TMP = ".images-partial"


@dataclass
class WorldConfig:
    """Everything that decides the demo world's content. Rates are fractions in [0, 1]."""

    num_posts: int = 4000  # posts in the world; classes are balanced to within one post
    seed: int = 0  # every random choice derives from (seed, post index)
    image_size: int = 96  # side of the square PNG pictures, >= 96
    # -- noise
    no_image_rate: float = 0.1  # fraction of posts without a picture
    unrelated_image_rate: float = 0.25  # fraction of posts *with* a picture whose picture is
    # unrelated to the post: a selfie, a pet, a meme or a scene of another class
    uninformative_text_rate: float = 0.25  # fraction of posts whose text says nothing about a place
    empty_text_rate: float = 0.02  # fraction of posts with empty text (taken from the
    # uninformative ones, so at most `uninformative_text_rate`)
    typo_rate: float = 0.03  # per-word chance of a typo (swap, drop, double, neighbour key)
    # -- modality dominance
    text_dominant_classes: tuple[str, ...] = ("shop",)  # classes mostly revealed by their text:
    # their related picture is usually a generic close-up
    image_dominant_classes: tuple[str, ...] = ("school",)  # classes mostly revealed by their
    # picture: their informative text is usually vague
    dominance: float = 0.7  # how "usually" the two lines above are
    generic_image_rate: float = 0.05  # generic close-ups in the other classes too, so a close-up
    # hints at, but does not identify, a text-dominant class
    vague_text_rate: float = 0.05  # likewise for vague texts in the other classes
    # -- confusable pairs
    text_confusable_pairs: tuple[tuple[str, str], ...] = (("office", "school"), ("gym", "park"))
    text_confusion: float = 0.5  # fraction of the pairs' informative texts that only use words
    # both classes share
    image_confusable_pairs: tuple[tuple[str, str], ...] = (
        ("home", "restaurant"),
        ("shop", "station"),
    )
    image_confusion: float = 0.4  # fraction of the pairs' related pictures drawn from the neutral
    # layout both classes share
    # -- splits (stratified by class)
    train_fraction: float = 0.7
    dev_fraction: float = 0.15
    test_fraction: float = 0.15
    # -- people: authors with weekly routines, and post times (semloc.demo.people); drawn from
    # their own random stream, so these never change which posts, texts or pictures exist
    posts_per_user: int = 40  # average posts per author (test posts have their own authors)
    weeks: int = 8  # posts fall in this many weeks from Monday 2026-01-05
    timezone: str = "Europe/Berlin"  # the world's wall clock; times carry its offset
    routine_noise: float = 0.1  # share of each hour's location spread over all locations


def config_to_dict(cfg: WorldConfig) -> dict[str, Any]:
    """JSON-ready dict (tuples as lists), the form stored in world.json."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(data: dict[str, Any]) -> WorldConfig:
    """The inverse of `config_to_dict`, typed and checked by the config module (unknown keys and
    wrong types named); a class list may be one comma-separated string ("shop,station")."""
    from semloc.config import apply_dict

    data = dict(data)
    for key in ("text_dominant_classes", "image_dominant_classes"):
        if isinstance(data.get(key), str):
            data[key] = [c.strip() for c in data[key].split(",") if c.strip()]
    try:
        cfg = apply_dict(WorldConfig(), data)
    except SemlocError as e:
        raise SemlocError(f"demo-world setting: {e}") from None
    return normalise_config(cfg)


def normalise_config(cfg: WorldConfig) -> WorldConfig:
    """Lists (from JSON/YAML or overrides) back to tuples, so equal configs compare equal; a
    class list may also be given as one comma-separated string ("shop,station")."""

    def classes(v: Any) -> Any:
        if isinstance(v, str):
            return tuple(c.strip() for c in v.split(",") if c.strip())
        return tuple(v) if isinstance(v, (list, tuple)) else v

    def pairs(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(classes(p) for p in v)
        return v

    return dataclasses.replace(
        cfg,
        text_dominant_classes=classes(cfg.text_dominant_classes),
        image_dominant_classes=classes(cfg.image_dominant_classes),
        text_confusable_pairs=pairs(cfg.text_confusable_pairs),
        image_confusable_pairs=pairs(cfg.image_confusable_pairs),
    )


def validate_config(cfg: WorldConfig) -> None:
    """Raise SemlocError naming every invalid setting."""
    problems = []
    min_posts = 3 * len(CLASSES)
    if not _is_int(cfg.seed):
        problems.append(f"seed must be an integer, got {cfg.seed!r}")
    if not _is_int(cfg.num_posts) or cfg.num_posts < min_posts:
        problems.append(
            f"num_posts must be an integer >= {min_posts} (3 per class), got {cfg.num_posts!r}"
        )
    if not _is_int(cfg.image_size) or not MIN_IMAGE_SIZE <= cfg.image_size <= 1024:
        problems.append(
            f"image_size must be an integer in [{MIN_IMAGE_SIZE}, 1024], got {cfg.image_size!r}"
        )
    for name in (
        "no_image_rate",
        "unrelated_image_rate",
        "uninformative_text_rate",
        "empty_text_rate",
        "typo_rate",
        "dominance",
        "generic_image_rate",
        "vague_text_rate",
        "text_confusion",
        "image_confusion",
        "train_fraction",
        "dev_fraction",
        "test_fraction",
        "routine_noise",
    ):
        v = getattr(cfg, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
            problems.append(f"{name} must be a number in [0, 1], got {v!r}")
    for name in ("posts_per_user", "weeks"):
        if not _is_int(getattr(cfg, name)) or getattr(cfg, name) < 1:
            problems.append(f"{name} must be an integer >= 1, got {getattr(cfg, name)!r}")
    try:
        resolve_timezone(cfg.timezone)
    except SemlocError:
        problems.append(f"timezone: unknown time zone {cfg.timezone!r} (an IANA name)")
    _raise_if(problems)  # the checks below assume well-typed values
    if cfg.routine_noise <= 0:
        problems.append("routine_noise must be > 0 (every place possible at every hour)")
    if cfg.empty_text_rate > cfg.uninformative_text_rate:
        problems.append(
            "empty_text_rate cannot exceed uninformative_text_rate (empty texts are uninformative)"
        )
    total = cfg.train_fraction + cfg.dev_fraction + cfg.test_fraction
    if abs(total - 1.0) > 1e-6:
        problems.append(f"train/dev/test fractions must sum to 1, got {total:g}")
    if cfg.train_fraction <= 0:
        problems.append("train_fraction must be > 0")
    known = set(CLASSES)
    for name in (
        "text_dominant_classes",
        "image_dominant_classes",
        "text_confusable_pairs",
        "image_confusable_pairs",
    ):
        if not isinstance(getattr(cfg, name), tuple):
            problems.append(f"{name} must be a list, got {getattr(cfg, name)!r}")
    _raise_if(problems)
    for name in ("text_dominant_classes", "image_dominant_classes"):
        bad = [c for c in getattr(cfg, name) if c not in known]
        if bad:
            problems.append(
                f"{name}: unknown class(es) {', '.join(map(repr, bad))} (classes: {', '.join(CLASSES)})"
            )
    both = set(cfg.text_dominant_classes) & set(cfg.image_dominant_classes)
    if both:
        problems.append(
            f"class(es) {', '.join(sorted(both))} cannot be both text- and image-dominant"
        )
    for name in ("text_confusable_pairs", "image_confusable_pairs"):
        seen: set[str] = set()
        for pair in getattr(cfg, name):
            if (
                not isinstance(pair, tuple)
                or len(pair) != 2
                or pair[0] == pair[1]
                or any(c not in known for c in pair)
            ):
                problems.append(
                    f"{name}: {list(pair)!r} is not a pair of two different known classes"
                )
                continue
            dup = seen & set(pair)
            if dup:
                problems.append(f"{name}: class {sorted(dup)[0]!r} is in more than one pair")
            seen |= set(pair)
    _raise_if(problems)


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise SemlocError("invalid demo-world config:\n" + "\n".join(f"  - {p}" for p in problems))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def fingerprint(cfg: WorldConfig) -> str:
    """Identifies the world a config produces (with this generator version)."""
    return sha256_json({"generator": GENERATOR_VERSION, "config": config_to_dict(cfg)})


# ------------------------------------------------------------------------------------------------
# the plan: which post gets which label, split, text mode and picture kind


@dataclass
class _Post:
    index: int
    id: str
    label: str
    split: str = "train"
    text_mode: str = "clear"  # clear | confused | vague | chatter | empty
    # scene | confused | generic | selfie | pet | meme | other_class | none
    image_kind: str = "scene"
    image_class: str | None = None  # the class whose scene is drawn (scene / other_class)
    partner: str | None = None  # the image-confusable partner (confused pictures)
    text: str = ""
    caption: str = ""


def _pick_exact(rng: random.Random, pool: list[int], rate: float) -> set[int]:
    """Exactly round(rate * len(pool)) members: realised rates match the request, not a Bernoulli."""
    return set(rng.sample(pool, round(rate * len(pool))))


def make_plan(cfg: WorldConfig) -> list[_Post]:
    rng = random.Random(f"{cfg.seed}:plan")
    n, k = cfg.num_posts, len(CLASSES)
    width = max(6, len(str(n - 1)))
    order = list(CLASSES)
    rng.shuffle(order)  # which classes get the remainder posts
    labels = [c for i, c in enumerate(order) for _ in range(n // k + (i < n % k))]
    rng.shuffle(labels)
    posts = [_Post(i, f"{i:0{width}d}", lab) for i, lab in enumerate(labels)]

    for c in CLASSES:  # stratified split
        idx = [p.index for p in posts if p.label == c]
        rng.shuffle(idx)
        n_train = max(1, round(len(idx) * cfg.train_fraction))
        n_dev = min(len(idx) - n_train, round(len(idx) * cfg.dev_fraction))
        for j, i in enumerate(idx):
            posts[i].split = "train" if j < n_train else "dev" if j < n_train + n_dev else "test"

    everyone = list(range(n))
    no_image = _pick_exact(rng, everyone, cfg.no_image_rate)
    uninformative = _pick_exact(rng, everyone, cfg.uninformative_text_rate)
    empty = set(
        rng.sample(sorted(uninformative), min(len(uninformative), round(cfg.empty_text_rate * n)))
    )
    with_image = [i for i in everyone if i not in no_image]
    unrelated = _pick_exact(rng, with_image, cfg.unrelated_image_rate)

    text_partner = {a: b for x, y in cfg.text_confusable_pairs for a, b in ((x, y), (y, x))}
    image_partner = {a: b for x, y in cfg.image_confusable_pairs for a, b in ((x, y), (y, x))}
    kinds = list(UNRELATED_KINDS.items())
    for p in posts:
        if p.index in empty:
            p.text_mode = "empty"
        elif p.index in uninformative:
            p.text_mode = "chatter"
        else:
            vague = cfg.dominance if p.label in cfg.image_dominant_classes else cfg.vague_text_rate
            if rng.random() < vague:
                p.text_mode = "vague"
            elif p.label in text_partner and rng.random() < cfg.text_confusion:
                p.text_mode = "confused"
        if p.index in no_image:
            p.image_kind = "none"
        elif p.index in unrelated:
            p.image_kind = _scenes.weighted_choice(rng, kinds)
            if p.image_kind == "other_class":
                p.image_class = rng.choice([c for c in CLASSES if c != p.label])
        else:
            generic = (
                cfg.dominance if p.label in cfg.text_dominant_classes else cfg.generic_image_rate
            )
            if rng.random() < generic:
                p.image_kind = "generic"
            elif p.label in image_partner and rng.random() < cfg.image_confusion:
                p.image_kind = "confused"
                p.image_class, p.partner = p.label, image_partner[p.label]
            else:
                p.image_class = p.label
    return posts


# ------------------------------------------------------------------------------------------------
# rendering (runs in worker processes)


def _render_task(
    task: tuple[int, str, str, str | None, str | None, str, int],
) -> tuple[int, str, str]:
    index, path, kind, cls, partner, seed, size = task
    render_kind = "scene" if kind == "other_class" else kind
    img, caption = _scenes.render(render_kind, cls, partner, seed, size)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return index, caption, hashlib.sha256(data).hexdigest()


def _image_name(p: _Post) -> str:
    return f"{IMAGES_DIR}/{p.id}.png"


def _start_method() -> str:
    """fork where it is safe: spawn re-imports the caller's main module, which breaks scripts
    without a ``__main__`` guard. The children only use PIL and numpy, so locks the parent's
    threads (torch, tokenizers) may hold at fork time are never touched. macOS system libraries
    are not fork-safe, so spawn there."""
    if sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def _render_all(
    plan: list[_Post], cfg: WorldConfig, tmp_dir: Path, progress: bool, workers: int | None
) -> dict[int, str]:
    tasks = [
        (
            p.index,
            str(tmp_dir / f"{p.id}.png"),
            p.image_kind,
            p.image_class,
            p.partner,
            f"{cfg.seed}:image:{p.index}",
            cfg.image_size,
        )
        for p in plan
        if p.image_kind != "none"
    ]
    if workers is None:
        # a pool only pays off once there are a few hundred pictures
        workers = 1 if len(tasks) < 400 else min(8, os.cpu_count() or 1)
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="rendering pictures", unit="img", disable=not progress)
    hashes: dict[int, str] = {}
    try:
        if workers <= 1:
            results = map(_render_task, tasks)
            for index, caption, digest in results:
                plan[index].caption = caption
                hashes[index] = digest
                bar.update()
        else:
            ctx = multiprocessing.get_context(_start_method())
            with ctx.Pool(workers) as pool:
                for index, caption, digest in pool.imap_unordered(
                    _render_task, tasks, chunksize=16
                ):
                    plan[index].caption = caption
                    hashes[index] = digest
                    bar.update()
    finally:
        bar.close()
    return hashes


# ------------------------------------------------------------------------------------------------
# statistics


_TOKEN = re.compile(r"[a-z']+")


def vocabulary(texts: list[str]) -> set[str]:
    """Distinct lower-case alphabetic words (hashtags count by their words, emoji not at all)."""
    words: set[str] = set()
    for t in texts:
        words.update(w.strip("'") for w in _TOKEN.findall(t.lower()))
    words.discard("")
    return words


def _stats(plan: list[_Post]) -> dict[str, Any]:
    posts = plan
    n = len(posts)
    with_image = [p for p in posts if p.image_kind != "none"]
    unrelated_kinds = {"selfie", "pet", "meme", "other_class"}
    unrelated = [p for p in with_image if p.image_kind in unrelated_kinds]
    uninformative = [p for p in posts if p.text_mode in ("chatter", "empty")]
    per_class: dict[str, Any] = {}
    for c in CLASSES:
        mine = [p for p in posts if p.label == c]
        per_class[c] = {
            "posts": len(mine),
            "text_modes": dict(sorted(Counter(p.text_mode for p in mine).items())),
            "image_kinds": dict(sorted(Counter(p.image_kind for p in mine).items())),
        }
    return {
        "posts": n,
        "images": len(with_image),
        "by_split": {s: sum(p.split == s for p in posts) for s in SPLITS},
        "by_class_split": {
            c: {s: sum(p.label == c and p.split == s for p in posts) for s in SPLITS}
            for c in CLASSES
        },
        "realised": {
            # the knobs as asked for, next to what the plan realised
            "no_image_rate": round((n - len(with_image)) / n, 6),
            "unrelated_image_rate": round(len(unrelated) / max(1, len(with_image)), 6),
            "uninformative_text_rate": round(len(uninformative) / n, 6),
            "empty_text_rate": round(sum(p.text_mode == "empty" for p in posts) / n, 6),
        },
        "text_modes": dict(sorted(Counter(p.text_mode for p in posts).items())),
        "image_kinds": dict(sorted(Counter(p.image_kind for p in posts).items())),
        "per_class": per_class,
        "distinct_words": len(vocabulary([p.text for p in posts])),
    }


# ------------------------------------------------------------------------------------------------
# writing


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def read_world_info(out_dir: str | Path) -> dict[str, Any] | None:
    """world.json of a complete world in `out_dir`, or None when there is none."""
    path = Path(out_dir) / WORLD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SemlocError(
            f"{path} exists but cannot be read ({e}); rerun with force to rewrite the world"
        ) from None


def _check_out_dir(out: Path, cfg: WorldConfig, force: bool) -> dict[str, Any] | None:
    """The existing world.json when `out` already holds this exact world; None when it must be
    (re)written; SemlocError when writing would clobber something without `force`."""
    if out.exists() and not out.is_dir():
        raise SemlocError(f"{out} exists and is not a directory")
    if not out.exists():
        return None
    info = read_world_info(out) if not force else None
    if info is not None:
        complete = (
            (out / POSTS_FILE).is_file()
            and (out / CAPTIONS_FILE).is_file()
            and (out / IMAGES_DIR).is_dir()
        )
        if info.get("fingerprint") == fingerprint(cfg) and complete:
            return info
        if complete:
            raise SemlocError(
                f"{out} already holds a demo world made with a different config "
                f"(seed {info.get('config', {}).get('seed')!r}, "
                f"{info.get('counts', {}).get('posts')!r} posts); "
                "pass --force (force=True) to overwrite it, or choose another directory"
            )
    ours = [name for name in (POSTS_FILE, CAPTIONS_FILE, IMAGES_DIR) if (out / name).exists()]
    if ours and info is None and not force and not (out / _PARTIAL_MARKER).exists():
        raise SemlocError(
            f"{out} already contains {', '.join(ours)} but no {WORLD_FILE}: it does not look like a "
            "demo world this tool wrote; pass --force (force=True) to overwrite those entries"
        )
    return None


def make_world(
    out_dir: str | Path,
    cfg: WorldConfig,
    progress: bool = True,
    *,
    force: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write the demo world into `out_dir` and return its world.json content.

    Files: ``posts.jsonl`` (id, text, image when present, label, split, user, created_at),
    ``people.json`` (every author's routine and true location shares), ``images/<id>.png``,
    ``captions.jsonl`` (image, caption, split; one per picture, describing what it shows) and
    ``world.json`` (config, fingerprint, class list, realised counts and rates).

    ``world.json`` is written last and marks the world complete: an interrupted run leaves no
    world.json and is simply redone. Rerunning with the same config on a complete world does
    nothing; a different config is refused unless `force`. `workers` (default: automatic) only
    changes speed, never the files.
    """
    cfg = normalise_config(cfg)
    validate_config(cfg)
    out = Path(out_dir)
    existing = _check_out_dir(out, cfg, force)
    if existing is not None:
        log.info("%s already holds this demo world; nothing to do", out)
        return existing
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / WORLD_FILE).unlink(missing_ok=True)  # from here on the directory is not complete
        (out / _PARTIAL_MARKER).write_text("a demo world is being written here\n", encoding="utf-8")
        tmp_images = out / _IMAGES_TMP
        if tmp_images.exists():
            shutil.rmtree(tmp_images)
        tmp_images.mkdir()
    except OSError as e:
        raise SemlocError(f"cannot write the demo world to {out}: {e.strerror or e}") from None

    plan = make_plan(cfg)
    pairs = [frozenset(p) for p in cfg.text_confusable_pairs]
    for p in plan:
        rng = random.Random(f"{cfg.seed}:text:{p.index}")
        p.text = _texts.make_text(rng, p.label, p.text_mode, cfg.typo_rate, pairs)
    log.info("rendering %d pictures into %s", sum(p.image_kind != "none" for p in plan), out)
    hashes = _render_all(plan, cfg, tmp_images, progress, workers)
    users, times, people = add_people(
        [p.label for p in plan],
        [p.split for p in plan],
        CLASSES,
        seed=cfg.seed,
        posts_per_user=cfg.posts_per_user,
        weeks=cfg.weeks,
        timezone=cfg.timezone,
        noise=cfg.routine_noise,
    )

    posts_rows, caption_rows = [], []
    for p in plan:
        row: dict[str, Any] = {"id": p.id, "text": p.text}
        if p.image_kind != "none":
            row["image"] = _image_name(p)
            caption_rows.append({"image": _image_name(p), "caption": p.caption, "split": p.split})
        row["label"] = p.label
        row["split"] = p.split
        row["user"] = users[p.index]
        row["created_at"] = times[p.index]
        posts_rows.append(row)
    posts_text, captions_text = _jsonl(posts_rows), _jsonl(caption_rows)
    people_info = {"classes": list(CLASSES), "timezone": cfg.timezone, "people": people}

    content = hashlib.sha256()
    content.update(hashlib.sha256(posts_text.encode()).digest())
    content.update(hashlib.sha256(captions_text.encode()).digest())
    for index in sorted(hashes):
        content.update(bytes.fromhex(hashes[index]))
    info = {
        "format": "semloc-demo-world",
        "generator_version": GENERATOR_VERSION,
        "fingerprint": fingerprint(cfg),
        "content_sha256": content.hexdigest(),
        "classes": list(CLASSES),
        "config": config_to_dict(cfg),
        "counts": _stats(plan),
        "people": {
            "users": len(people),
            "test_users": sum(p["split"] == "test" for p in people),
            "roles": dict(sorted(Counter(p["role"] for p in people).items())),
        },
        "files": {
            "posts": POSTS_FILE,
            "captions": CAPTIONS_FILE,
            "images": IMAGES_DIR + "/",
            "people": PEOPLE_FILE,
        },
    }
    try:
        if (out / IMAGES_DIR).exists():
            shutil.rmtree(out / IMAGES_DIR)
        os.replace(tmp_images, out / IMAGES_DIR)
        atomic_write_text(out / POSTS_FILE, posts_text)
        atomic_write_text(out / CAPTIONS_FILE, captions_text)
        atomic_write_json(out / PEOPLE_FILE, people_info)
        atomic_write_json(out / WORLD_FILE, info)
        (out / _PARTIAL_MARKER).unlink(missing_ok=True)
    except OSError as e:
        raise SemlocError(f"cannot write the demo world to {out}: {e.strerror or e}") from None
    log.info(
        "demo world: %d posts, %d pictures, %d distinct words -> %s",
        info["counts"]["posts"],
        info["counts"]["images"],
        info["counts"]["distinct_words"],
        out,
    )
    return info
