"""PyTorch DDP under `torchrun`: the trainer's only view of distribution.

    torchrun --nproc_per_node 2 -m semloc train STORE --out RUN

gloo on CPU, NCCL on GPU. Each rank reads its own slice of the memory-mapped store (a
DistributedSampler), the training loss is summed over ranks, dev predictions are gathered from every
rank before metrics are computed (so every rank takes the same early-stopping decision), and only
rank 0 writes files.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import DistributedSampler, Sampler


def is_launched() -> bool:
    """True inside a process started by torchrun (it sets WORLD_SIZE and RANK)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


class _RangeDataset(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class DistContext:
    def __init__(self, rank: int, world_size: int, local_rank: int, device: torch.device) -> None:
        self.rank, self.world_size, self.local_rank, self.device = (
            rank,
            world_size,
            local_rank,
            device,
        )

    @classmethod
    def from_env(cls, device_name: str = "auto") -> DistContext:
        rank = int(os.environ["RANK"])
        world = int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if use_cuda else "gloo")
        return cls(rank, world, local, device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def train_sampler(self, num_items: int, seed: int) -> Sampler:
        return DistributedSampler(
            _RangeDataset(num_items),
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )

    def eval_sampler(self, num_items: int) -> Sampler:
        # contiguous, non-padded slices: gathering them in rank order restores the dev order
        return _ContiguousSlice(num_items, self.rank, self.world_size)

    def sum_pair(self, a: float, b: float) -> tuple[float, float]:
        t = torch.tensor([a, b], dtype=torch.float64, device=self.device)
        tdist.all_reduce(t)
        return float(t[0]), float(t[1])

    def gather_predictions(self, preds: Any) -> Any:
        parts: list[Any] = [None] * self.world_size
        tdist.all_gather_object(parts, preds)
        from semloc.train.trainer import Predictions

        keys = set().union(*(p.extras.keys() for p in parts))
        return Predictions(
            logits=np.concatenate([p.logits for p in parts if len(p.index)]),
            labels=np.concatenate([p.labels for p in parts if len(p.index)]),
            index=np.concatenate([p.index for p in parts if len(p.index)]),
            extras={k: np.concatenate([p.extras[k] for p in parts if k in p.extras]) for k in keys},
        )

    def barrier(self) -> None:
        tdist.barrier()

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()


class _ContiguousSlice(Sampler[int]):
    def __init__(self, n: int, rank: int, world: int) -> None:
        per = -(-n // world)
        self.start, self.stop = min(n, rank * per), min(n, (rank + 1) * per)

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start
