"""Batches from a feature store for training and inference, through torch's DataLoader.

The dataset gathers a whole batch at once (`__getitems__`), so a batch costs one vectorised read
per shard instead of one Python call per post, and worker processes (``num_workers``) prefetch
batches while the model computes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from semloc.features.batch import FeatureBatch
from semloc.features.store import FeatureStore


class FeatureDataset(Dataset):
    def __init__(
        self, store: FeatureStore, indices: np.ndarray, label_map: np.ndarray | None = None
    ) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> FeatureBatch:
        return self.__getitems__([i])

    def __getitems__(self, positions: Sequence[int]) -> FeatureBatch:
        return self.store.batch(self.indices[np.asarray(positions, dtype=np.int64)], self.label_map)


class EpochShuffleSampler(Sampler[int]):
    """A seeded permutation per epoch: the same seed gives the same batches, after a resume too."""

    def __init__(self, num_items: int, seed: int) -> None:
        self.num_items, self.seed, self.epoch = num_items, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_items


def _identity(batch: FeatureBatch) -> FeatureBatch:
    return batch


def make_loader(
    store: FeatureStore,
    indices: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    label_map: np.ndarray | None = None,
    sampler: Sampler | None = None,
) -> DataLoader:
    dataset = FeatureDataset(store, indices, label_map)
    if sampler is None and shuffle:
        sampler = EpochShuffleSampler(len(dataset), seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        collate_fn=_identity,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
