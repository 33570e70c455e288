"""CLIP's pooled embeddings of a set of posts, as numpy arrays: all the training-free baselines read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semloc.features.store import FeatureStore


@dataclass
class PooledEmbeddings:
    """Rows in the order of `index`.

    text_embed    (N, p) float32
    image_embed   (N, p) float32, zero for posts without an image
    image_present (N,)   bool
    labels        (N,)   int64 store label codes, -1 where unlabelled
    index         (N,)   int64 store positions
    """

    text_embed: np.ndarray
    image_embed: np.ndarray
    image_present: np.ndarray
    labels: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def read_pooled(store: FeatureStore, indices: np.ndarray, chunk: int = 2048) -> PooledEmbeddings:
    """The pooled embeddings of the posts at `indices` (store positions)."""
    indices = np.asarray(indices, dtype=np.int64)
    p = store.dims.embed_dim
    text = np.zeros((len(indices), p), np.float32)
    image = np.zeros((len(indices), p), np.float32)
    present = np.zeros(len(indices), bool)
    for start in range(0, len(indices), chunk):
        rows = slice(start, start + chunk)
        b = store.batch(indices[rows])
        text[rows] = b.text_embed.numpy()
        present[rows] = b.image_present.numpy()
        # whatever a store holds in the slots of a missing image, it is not an image embedding
        image[rows] = np.where(present[rows, None], b.image_embed.numpy(), 0.0)
    return PooledEmbeddings(
        text_embed=text,
        image_embed=image,
        image_present=present,
        labels=store.label_codes[indices].copy(),
        index=indices.copy(),
    )


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def labelled(store: FeatureStore, split: str) -> np.ndarray:
    """Positions of the labelled posts of `split`."""
    idx = store.indices(split)
    return idx[store.label_codes[idx] >= 0]
