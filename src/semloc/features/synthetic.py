"""Random feature stores with a controllable class signal: for tests, benchmarks and smoke runs
that need a store of a given size without running a CLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semloc.features.store import FeatureStore, FeatureStoreWriter, ShardData

VIT_B32_DIMS = {"text_width": 512, "vision_width": 768, "embed_dim": 512, "num_image_tokens": 50}
TINY_DIMS = {"text_width": 24, "vision_width": 40, "embed_dim": 16, "num_image_tokens": 5}


def make_random_store(
    root: str | Path,
    num_posts: int,
    *,
    dims: dict[str, int] | None = None,
    num_classes: int = 4,
    max_text_tokens: int = 12,
    shard_size: int = 256,
    no_image_rate: float = 0.1,
    signal: float = 1.0,
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
    dtype: str = "float16",
    seed: int = 0,
    num_users: int = 0,
) -> FeatureStore:
    """Write a finished store of `num_posts` random posts; class `c` shifts every feature along a
    class direction scaled by `signal`, so models can learn something (0 = pure noise).
    `num_users` > 0 also gives each post a random author and time (from their own random
    stream: the features are the same with or without)."""
    people_rng = np.random.default_rng([seed, 1])
    dims = dict(dims or TINY_DIMS)
    rng = np.random.default_rng(seed)
    header = {
        "backbone": {"name": "synthetic", "weights_sha256": "none"},
        "preprocessing": {"kind": "synthetic", "max_text_tokens": max_text_tokens},
        "dtype": dtype,
        "dims": dims,
    }
    writer = FeatureStoreWriter(root, header)
    dt, dv, p, nv = (
        dims[k] for k in ("text_width", "vision_width", "embed_dim", "num_image_tokens")
    )
    centers = {
        "t": rng.standard_normal((num_classes, dt)),
        "v": rng.standard_normal((num_classes, dv)),
        "p": rng.standard_normal((num_classes, p)),
    }
    labels = [f"class_{c}" for c in range(num_classes)]
    cut = np.cumsum(splits)
    for shard_index, start in enumerate(range(0, num_posts, shard_size)):
        n = min(shard_size, num_posts - start)
        y = rng.integers(0, num_classes, n)
        lengths = rng.integers(1, max_text_tokens + 1, n)
        present = rng.random(n) >= no_image_rate
        u = rng.random(n)
        split = np.where(u < cut[0], "train", np.where(u < cut[1], "dev", "test"))
        text_tokens = [
            (rng.standard_normal((int(k), dt)) + signal * centers["t"][c]).astype(np.float32)
            for k, c in zip(lengths, y, strict=True)
        ]
        image_tokens = rng.standard_normal((n, nv, dv)).astype(np.float32)
        image_tokens += signal * centers["v"][y][:, None, :]
        image_tokens[~present] = 0.0
        text_embed = rng.standard_normal((n, p)) + signal * centers["p"][y]
        image_embed = rng.standard_normal((n, p)) + signal * centers["p"][y]
        image_embed[~present] = 0.0
        writer.write_shard(
            shard_index,
            ShardData(
                ids=[f"post-{start + i:07d}" for i in range(n)],
                labels=[labels[c] for c in y],
                splits=split.tolist(),
                text_tokens=text_tokens,
                image_tokens=image_tokens,
                text_embed=text_embed.astype(np.float32),
                image_embed=image_embed.astype(np.float32),
                image_present=present,
                **_people(people_rng, n, num_users),
            ),
        )
    writer.finalize({"extraction": {"source": "synthetic", "seed": seed, "signal": signal}})
    return FeatureStore(root)


def _people(rng: np.random.Generator, n: int, num_users: int) -> dict[str, list[str] | None]:
    """Random authors and canonical times in four weeks from Monday 2026-01-05 (UTC)."""
    if num_users <= 0:
        return {"users": None, "created_at": None}
    from datetime import UTC, datetime

    users = [f"user-{k:03d}" for k in rng.integers(0, num_users, n)]
    start = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
    times = [
        datetime.fromtimestamp(start + float(t), UTC).isoformat(timespec="seconds")
        for t in rng.integers(0, 28 * 86400, n)
    ]
    return {"users": users, "created_at": times}
